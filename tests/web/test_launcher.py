"""`python -m labsite.launcher` (what `make run` runs) really starts the lab and stops it."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from labsite.procutil import free_port
from tests.web.helpers import descendant_pids

pytestmark = pytest.mark.stack
REPO = Path(__file__).resolve().parents[2]




def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_launcher_starts_everything_and_stops_cleanly_on_ctrl_c(tmp_path):
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if key not in {"REDIS_URL", "DATABASE_URL", "DATABASE_NAME", "REDIS_PREFIX"}}
    env.update(PORT=str(port), RSSLAB_VAR=str(tmp_path), PYTHONUNBUFFERED="1",
               WORKER_CONCURRENCY="1")
    log_path = tmp_path / "launcher.log"
    with open(log_path, "wb") as log:
        launcher = subprocess.Popen([sys.executable, "-m", "labsite.launcher"], cwd=REPO,
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 90
        while url not in log_path.read_text(errors="replace"):
            assert launcher.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
        output = log_path.read_text(errors="replace")
        password = re.search(r"demo student: username 'student' password '([^']+)'", output)
        assert password, output
        # Students are not staff: the page to change it is theirs, not the admin.
        assert output.count('change it with "Change password", /accounts/password/') == 2

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        login = opener.open(url + "accounts/login/").read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
        form = urllib.parse.urlencode({"username": "student", "password": password.group(1),
                                       "csrfmiddlewaretoken": token}).encode()
        lab = opener.open(urllib.request.Request(url + "accounts/login/", data=form,
                                                 headers={"Referer": url}))
        # The lab page, offering the examples the beat process stored as it started.
        assert lab.url == url + "lab/" and "nat-microsoft" in lab.read().decode()
        plotly = opener.open(url + "static/vendor/plotly.min.js")
        assert plotly.status == 200 and int(plotly.headers["Content-Length"]) > 1_000_000

        children = descendant_pids(launcher.pid)
        assert len(children) >= 4, output  # redis-server, celery beat and worker, daphne
        assert output.count("[rsslab] beat started (pid ") == 1, output  # exactly one
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=40) == 0, log_path.read_text(errors="replace")
        time.sleep(0.2)
        assert not [pid for pid in children if _alive(pid)], "orphans left behind"
        assert "[rsslab] stopped" in log_path.read_text(errors="replace")
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
