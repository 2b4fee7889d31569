"""One process down no longer stops the lab: the launcher supervises its children.

First the supervisor's policy on real short-lived processes (back-off doubling, reset after
a stable run, giving up after 5 deaths in the window, reaping what a dead child left), then
the real launcher (``make run``) with daphne and the worker killed while a student's run is
in flight, then the embedded Redis and beat.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import redis
from celery import Celery

from labsite.procutil import Child, GaveUp, Supervisor, free_port, spawn
from labsite.redisurls import celery_broker_url, celery_transport_options, channels_redis_url
from tests.web.helpers import descendant_pids, wait_for

pytestmark = pytest.mark.stack
REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"




def _supervise_until_gave_up(supervisor: Supervisor, *, timeout: float) -> GaveUp:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            supervisor.poll()
        except GaveUp as gave_up:
            return gave_up
        time.sleep(0.005)
    raise AssertionError(f"the supervisor did not give up within {timeout} s")


# --- the policy, on real processes -------------------------------------------------------

def test_backoff_doubles_up_to_its_cap_and_five_quick_deaths_give_up():
    lines, starts = [], []

    def start():
        starts.append(time.monotonic())
        return spawn([PY, "-c", "import sys; sys.exit(3)"])

    supervisor = Supervisor(say=lines.append, backoff_initial=0.1, backoff_max=0.4,
                            stable_after=30, max_deaths=5, window=60)
    supervisor.add(Child("crasher", start))
    gave_up = _supervise_until_gave_up(supervisor, timeout=20)

    assert str(gave_up) == "crasher died 5 times within 60 s (last: exit status 3)"
    delays = [0.1, 0.2, 0.4, 0.4]  # doubling, capped; the 5th death gives up instead
    assert [line for line in lines if "died" in line] == [
        f"crasher died (exit status 3); restarting in {delay:g} s" for delay in delays]
    assert len(starts) == 5 and lines[0].startswith("crasher started (pid ")
    assert sum(line.startswith("crasher restarted (pid ") for line in lines) == 4
    for before, after, delay in zip(starts, starts[1:], delays):
        assert after - before >= delay  # each restart waited at least its back-off
    supervisor.stop_all()


def test_a_signal_is_named_and_rare_deaths_are_restarted_for_ever():
    """Deaths spread wider than the window never add up to giving up, and a child that
    stayed up ``stable_after`` starts again from the first back-off."""
    lines = []
    supervisor = Supervisor(say=lines.append, backoff_initial=0.05, backoff_max=5,
                            stable_after=0.2, max_deaths=3, window=0.5)
    supervisor.add(Child("segv", lambda: spawn([
        PY, "-c", "import os, signal, time; time.sleep(0.3); "
                  "os.kill(os.getpid(), signal.SIGSEGV)"])))
    deadline = time.monotonic() + 20
    while sum("died" in line for line in lines) < 6:  # 6 deaths, at least 0.3 s apart
        assert time.monotonic() < deadline, lines
        supervisor.poll()  # never raises GaveUp: at most 2 deaths fall in any 0.5 s
        time.sleep(0.005)
    supervisor.stop_all()
    assert [line for line in lines if "died" in line] == [
        "segv died (signal SIGSEGV); restarting in 0.05 s"] * 6


def test_a_child_that_cannot_be_started_again_gives_up_at_once(tmp_path):
    programs = iter([[PY, "-c", "import sys; sys.exit(0)"], [str(tmp_path / "gone")]])
    supervisor = Supervisor(say=lambda line: None, backoff_initial=0.01)
    supervisor.add(Child("vanished", lambda: spawn(next(programs))))
    gave_up = _supervise_until_gave_up(supervisor, timeout=10)
    assert str(gave_up).startswith("vanished could not be restarted: [Errno 2]")


def test_a_dead_childs_leftovers_are_reaped_and_stop_all_goes_in_reverse(tmp_path):
    """What a dead child left in its session (as a killed Celery worker leaves its pool
    processes, which would hold on to a task) is killed before the restart; stopping
    goes last-started first (the launcher: daphne, the worker, Redis)."""
    grandchild_file, stops = tmp_path / "grandchild.pid", tmp_path / "stops.txt"
    leaver = (f"import subprocess, sys; p = subprocess.Popen(['sleep', '60']); "
              f"open({str(grandchild_file)!r}, 'w').write(str(p.pid)); sys.exit(1)")

    def stays(name: str) -> Child:  # notes when it got SIGTERM, then exits
        return Child(name, lambda: spawn([PY, "-c", (
            f"import signal, sys, time\n"
            f"def bye(*_):\n    open({str(stops)!r}, 'a').write('{name} '); sys.exit(0)\n"
            f"signal.signal(signal.SIGTERM, bye)\n"
            f"open({str(stops)!r}, 'a').write('{name}-up ')\n"
            f"time.sleep(60)")]))

    lines = []
    supervisor = Supervisor(say=lines.append, backoff_initial=30)
    first = supervisor.add(stays("first"))
    leaving = supervisor.add(Child("leaver", lambda: spawn([PY, "-c", leaver])))
    last = supervisor.add(stays("last"))
    deadline = time.monotonic() + 10
    while not any("leaver died" in line for line in lines):
        assert time.monotonic() < deadline, lines
        supervisor.poll()
        time.sleep(0.01)
    grandchild = int(grandchild_file.read_text())
    time.sleep(0.1)
    assert not _alive(grandchild), "the dead child's own child was left running"
    assert lines[-1] == "leaver died (exit status 1); restarting in 30 s"
    assert supervisor.procs() == [first.proc, last.proc]  # the leaver awaits its restart

    wait_for(lambda: stops.exists() and len(stops.read_text().split()) == 2, timeout=10,
           what="both children to start")
    supervisor.stop_all()
    assert stops.read_text().split()[2:] == ["last", "first"]
    assert first.proc.returncode == last.proc.returncode == 0
    assert leaving.proc.returncode == 1  # stopping did not restart it


# --- the real launcher -------------------------------------------------------------------

class Lab:
    """A running ``python -m labsite.launcher``, its log and a logged-in student."""

    def __init__(self, tmp: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = tmp / "launcher.log"
        env = {k: v for k, v in os.environ.items()
               if k not in {"DATABASE_URL", "DATABASE_NAME", "REDIS_PREFIX"}}
        # With REDIS_URL set (CI), our own key prefix on it; otherwise the embedded server.
        self.external_redis = env.get("REDIS_URL") or None
        self.prefix = f"rsslab-sup-{os.getpid()}" if self.external_redis else "rsslab"
        if self.external_redis:
            env["REDIS_PREFIX"] = self.prefix
        env.update(PORT=str(self.port), RSSLAB_VAR=str(tmp), PYTHONUNBUFFERED="1",
                   WORKER_CONCURRENCY="1",
                   # a killed worker's run is found lost after 2 s instead of 30 s
                   RUN_HEARTBEAT_SECONDS="0.3", RUN_STALE_SECONDS="2")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([PY, "-m", "labsite.launcher"], cwd=REPO, env=env,
                                         stdout=log, stderr=subprocess.STDOUT)

    def wait_started(self) -> None:
        """Until the launcher printed the URL; then log in as the demo student."""
        self.wait_log(self.url, timeout=90)
        self.redis_url = self.external_redis or re.search(
            r"embedded Redis on (\S+)", self.log()).group(1)
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self._login()

    # the log and the children it names
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, *, timeout: float, after: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log()[after:]:
            assert self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.log()}"
            time.sleep(0.05)

    def pid(self, name: str) -> int:
        """The current pid of child ``name``, from the launcher's "started"/"restarted"."""
        found = re.findall(rf"\[rsslab\] {name} (?:re)?started \(pid (\d+)\)", self.log())
        return int(found[-1])

    # HTTP as the lab page does it
    def _login(self) -> None:
        password = re.search(r"demo student: username 'student' password '([^']+)'",
                             self.log()).group(1)
        page = self.opener.open(self.url + "accounts/login/").read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"username": "student", "password": password,
                                       "csrfmiddlewaretoken": token}).encode()
        lab = self.opener.open(urllib.request.Request(self.url + "accounts/login/", data=form,
                                                      headers={"Referer": self.url}))
        assert lab.url == self.url + "lab/"
        self.csrf = next(c.value for c in self.jar if c.name == "csrftoken")

    def get_json(self, path: str) -> dict:
        with self.opener.open(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def post_run(self, **fields) -> int:
        body = json.dumps(fields).encode()
        request = urllib.request.Request(
            self.url + "lab/api/runs/", data=body, method="POST",
            headers={"Content-Type": "application/json", "X-CSRFToken": self.csrf,
                     "Referer": self.url})
        with self.opener.open(request, timeout=20) as response:
            assert response.status == 201
            return json.loads(response.read())["run"]

    def answers(self) -> bool:
        """The lab page answers a logged-in student."""
        try:
            with self.opener.open(self.url + "lab/", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def worker_answers(self) -> bool:
        app = Celery("probe", broker=celery_broker_url(self.redis_url), set_as_current=False)
        app.conf.broker_transport_options = celery_transport_options(
            self.prefix, visibility_timeout=3600, socket_connect_timeout=1)
        app.conf.broker_connection_retry_on_startup = False
        try:
            with app.connection_for_write() as connection:
                replies = app.control.ping(timeout=1, connection=connection)
        except Exception:  # noqa: BLE001  (Redis restarting: not yet)
            return False
        finally:
            app.close()
        return any(name.startswith(f"rsslab-{self.proc.pid}@") for reply in replies
                   for name in reply)

    def kill(self, name: str, *, within: float = 10) -> int:
        """SIGKILL child ``name``; return the new pid once the launcher restarted it."""
        old, mark = self.pid(name), len(self.log())
        os.kill(old, signal.SIGKILL)
        self.wait_log(f"[rsslab] {name} died (signal SIGKILL); restarting in 0.5 s",
                      timeout=within, after=mark)
        self.wait_log(f"[rsslab] {name} restarted (pid ", timeout=within, after=mark)
        return self.pid(name)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=40)




@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    started = Lab(tmp_path_factory.mktemp("supervised-lab"))
    try:
        started.wait_started()
        yield started
    finally:
        if started.proc.poll() is None:  # its children follow it (parent-death signal)
            started.proc.kill()
            started.proc.wait()
        if started.external_redis:  # only the keys this lab wrote, never a flush
            client = redis.Redis.from_url(channels_redis_url(started.external_redis))
            keys = list(client.scan_iter(match=f"{started.prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()


def _generated(count: int) -> dict:
    return {"policy": "nat", "traffic": {"kind": "generated", "count": count,
                                         "client_prefixes": ["198.51.100.0/24"]}}


def test_daphne_and_worker_killed_mid_run_come_back_and_the_run_ends_once(lab):
    # 400 flows × 10 ms: about 4 s of work, so the worker dies in the middle of it.
    run = lab.post_run(source="builder", builder=_generated(400), mode="trace", delay_ms=10)
    status_path = f"lab/api/runs/{run}/"
    wait_for(lambda: lab.get_json(status_path)["event_count"] > 200, timeout=30,
           what="the run to report events")

    started = time.monotonic()
    lab.kill("daphne")
    wait_for(lab.answers, timeout=10 - (time.monotonic() - started),
           what="the lab to answer after daphne was killed")

    assert lab.get_json(status_path)["status"] == "running"  # the worker never noticed
    started = time.monotonic()
    worker = lab.kill("worker")
    wait_for(lab.answers, timeout=10, what="the lab to answer after the worker was killed")
    wait_for(lab.worker_answers, timeout=10 - (time.monotonic() - started),
           what="the restarted worker to answer a ping")
    assert _alive(worker)

    # The run the dead worker held is retried (or failed with the reason), exactly once:
    # the launcher's beat process finds it within 15 s of its heartbeat going stale.
    def finished():
        state = lab.get_json(status_path)  # only reads, as the page does
        return state if state["status"] in ("succeeded", "failed") else None

    final = wait_for(finished, timeout=40, what=f"run {run} to finish")
    assert final["status"] == "succeeded" or final["error"], final
    seqs, after = [], -1
    while True:  # every stored event, page by page, as the lab page replays them
        page = lab.get_json(f"lab/api/runs/{run}/events/?after={after}")
        seqs += [event["seq"] for event in page["events"]]
        if page["complete"] or page["next_after"] is None:
            break
        after = page["next_after"]
    assert seqs == list(range(len(seqs))) and final["event_count"] == len(seqs)  # once each
    if final["status"] == "succeeded":
        assert final["report"]["summary"]["flows"] == 400
    print(f"\nrun {run} after the kills: {final['status']} {final['error']!r}; launcher said:\n"
          + "\n".join(line for line in lab.log().splitlines() if line.startswith("[rsslab]")))
    time.sleep(1)
    assert lab.get_json(status_path) == final  # and it stays finished
    # Nothing in the launcher's log says it gave up or stopped.
    assert "stopping the lab" not in lab.log() and lab.proc.poll() is None


def test_killed_embedded_redis_comes_back_on_the_same_socket(lab):
    if lab.external_redis:
        pytest.skip(f"REDIS_URL is set ({lab.external_redis}): the launcher starts no Redis "
                    "of its own, so there is none to kill (the lab's own processes were)")
    started = time.monotonic()
    lab.kill("redis")
    wait_for(lab.answers, timeout=10, what="the lab to answer after Redis was killed")
    wait_for(lab.worker_answers, timeout=10 - (time.monotonic() - started),
           what="the worker to answer a ping through the restarted Redis")
    # The whole path works again: daphne queues through Redis, the worker runs it.
    run = lab.post_run(source="builder", builder=_generated(20), mode="trace")
    final = wait_for(lambda: (state := lab.get_json(f"lab/api/runs/{run}/"))["status"]
                   in ("succeeded", "failed") and state, timeout=20,
                   what="a run queued after the Redis restart to finish")
    assert final["status"] == "succeeded", final


def test_killed_beat_comes_back(lab):
    beat = lab.kill("beat")
    assert _alive(beat) and "stopping the lab" not in lab.log()


def test_ctrl_c_after_restarts_still_stops_everything(lab):
    children = descendant_pids(lab.proc.pid)
    assert {lab.pid("daphne"), lab.pid("worker"), lab.pid("beat")} <= children
    assert lab.stop() == 0, lab.log()
    time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)], "orphans left behind"
    tail = lab.log().split("Ctrl-C stops it", 1)[1]
    assert tail.rstrip().endswith("[rsslab] stopped")
