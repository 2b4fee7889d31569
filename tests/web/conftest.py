"""Fixtures for the web tests: a real Redis, real Celery workers, a real daphne, Chromium.

Nothing of our own stack is mocked. How the pieces find each other:

- Redis: ``REDIS_URL`` from the environment if set (e.g. ``redis://127.0.0.1:6379/14``),
  else a private embedded server. Either way every key this session writes is under the
  prefix ``rsslab-test-<pid>`` (channel layer and Celery broker), so a lab or another test
  session on the same Redis is never touched; at the end only keys under that prefix are
  deleted — never FLUSHDB/FLUSHALL.
- Database: pytest-django creates the test database (a SQLite *file*, see settings, or
  ``test_<name>`` on PostgreSQL); the subprocesses get its name in ``DATABASE_NAME``, so
  the worker, daphne and the test read and write the same rows.
- The test process itself is pointed at the same Redis and prefix by ``stack_env``
  (settings were read before any fixture could run); Django's cache (the log-in
  throttle's counters) and the fair-use counts by ``redis_prefix``, for every test,
  under a prefix of the test's own (``rsslab-test-<pid>:t<n>``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from channels.layers import channel_layers
from django.conf import settings

from labsite.embedded_redis import EmbeddedRedis
from labsite.procutil import free_port, spawn, stop, wait_for_port
from labsite.redisurls import (
    cache_config,
    celery_broker_url,
    celery_transport_options,
    channel_layers_config,
    channels_redis_url,
)
from tests.conftest import CHROMIUM

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
TEST_PREFIX = f"rsslab-test-{os.getpid()}"
# Short heartbeats so a killed worker is detected within seconds, not the default 30 s.
HEARTBEAT_SECONDS = "0.3"
STALE_SECONDS = "2"
# The exercise secret of every process of a test session (labsite.exercises.secret).
EXERCISE_SECRET = "rsslab-test-exercise-secret"


@pytest.fixture(scope="session")
def redis_url():
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        client = redis.Redis.from_url(channels_redis_url(url))
        keys = list(client.scan_iter(match=f"{TEST_PREFIX}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        return
    with EmbeddedRedis(persist=False) as server:
        yield server.url


_test_numbers = itertools.count()


@pytest.fixture(scope="session")
def stack_env(redis_url, django_db_setup):
    """Point this process at the test Redis and return the environment for subprocesses."""
    from labsite.celery import app

    settings.REDIS_URL = redis_url
    settings.REDIS_PREFIX = TEST_PREFIX
    settings.CHANNEL_LAYERS = channel_layers_config(redis_url, TEST_PREFIX)
    settings.RUN_HEARTBEAT_SECONDS = float(HEARTBEAT_SECONDS)
    settings.RUN_STALE_SECONDS = float(STALE_SECONDS)
    settings.EXERCISE_SECRET = EXERCISE_SECRET
    channel_layers.backends.clear()
    app.conf.broker_url = celery_broker_url(redis_url)
    app.conf.broker_transport_options = celery_transport_options(
        TEST_PREFIX, visibility_timeout=3600)
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "labsite.settings",
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": TEST_PREFIX,
        "DATABASE_NAME": str(settings.DATABASES["default"]["NAME"]),
        # The session's key (the settings make one up under pytest; see labsite/settings.py):
        # the subprocesses must sign and read sessions with the same one.
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "RUN_HEARTBEAT_SECONDS": HEARTBEAT_SECONDS,
        "RUN_STALE_SECONDS": STALE_SECONDS,
        "PYTHONUNBUFFERED": "1",
        # A fixed exercise secret, so students' variant seeds are known to the tests.
        "EXERCISE_SECRET": EXERCISE_SECRET,
    })
    return env


@pytest.fixture(autouse=True)
def redis_prefix(redis_url, request):
    """This test's own Redis key prefix (returned), for what the lab keeps in Redis per
    user — Django's cache (the log-in throttle's counters) and the fair-use counts —
    because user ids repeat from one rolled-back test to the next. The test process stays
    pointed at the test Redis, never the Redis the settings name (perhaps a lab's).

    Afterwards only keys under that prefix are deleted, never FLUSHDB — which is what the
    cache's own ``clear()`` does on Redis: tests must not call it."""
    saved_prefix = settings.REDIS_PREFIX
    prefix = f"{TEST_PREFIX}:t{next(_test_numbers)}"
    # The URL stays pointed at the test Redis afterwards (as stack_env leaves it).
    settings.REDIS_URL, settings.REDIS_PREFIX = redis_url, prefix
    # through pytest-django's fixture, whose setting_changed signal resets the caches
    request.getfixturevalue("settings").CACHES = cache_config(redis_url, prefix)
    yield prefix
    settings.REDIS_PREFIX = saved_prefix
    client = redis.Redis.from_url(channels_redis_url(redis_url))
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class CeleryProcess:
    """A ``celery -A labsite`` subprocess whose output goes to ``log_path``."""

    def __init__(self, env: dict, log_path: Path, args: list[str]):
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = spawn([sys.executable, "-m", "celery", "-A", "labsite", *args], env=env,
                          cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        stop(self.proc, timeout=10)
        self._log.close()


class Worker(CeleryProcess):
    """A ``celery worker -P solo`` subprocess; ``name`` is its node name for ``ping``."""

    def __init__(self, env: dict, log_path: Path, index: int):
        self.name = f"test-{os.getpid()}-{index}@{socket.gethostname()}"
        super().__init__(env, log_path, [
            "worker", "-P", "solo", "-c", "1", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-l", "info", "-n", self.name])

    def wait_ready(self, timeout: float = 30.0) -> Worker:
        from labsite.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}):\n{self.log()}")
            if app.control.ping(destination=[self.name], timeout=0.5):
                return self
        raise TimeoutError(f"worker {self.name} not ready in {timeout} s:\n{self.log()}")


@pytest.fixture
def start_worker(stack_env, tmp_path):
    """Factory: ``start_worker()`` starts a worker and waits until it answers a ping."""
    workers = []

    def start(**extra_env) -> Worker:
        worker = Worker({**stack_env, **extra_env}, tmp_path / f"worker{len(workers)}.log",
                        len(workers))
        workers.append(worker)
        return worker.wait_ready()

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def worker(start_worker):
    return start_worker()


class Beat(CeleryProcess):
    """The lab's ``celery beat`` (``labsite.beat``) as a subprocess, its schedule file in
    ``tmp``: it stores the examples as it starts and reaps lost runs every
    ``RUN_REAP_SECONDS`` (the real 15 s: ``stack_env`` does not shorten it)."""

    def __init__(self, env: dict, tmp: Path):
        super().__init__(env, tmp / "beat.log", [
            "beat", "--loglevel", "info",
            "--schedule", str(tmp / "celerybeat-schedule")])

    def wait_started(self, timeout: float = 30.0) -> Beat:
        """Until beat has stored the examples (its start-up hook has run)."""
        from labsite.lab.models import Scenario

        deadline = time.monotonic() + timeout
        while not Scenario.objects.exclude(example="").exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"beat exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"beat stored no examples in {timeout} s:\n{self.log()}")
            time.sleep(0.1)
        return self


@pytest.fixture
def beat(stack_env, tmp_path):
    """The lab's one beat process, started (examples stored) for this test. Nothing else
    reaps lost runs: a stack test that needs a killed worker's run retried uses it (and a
    ``django_db(transaction=True)`` mark, so the test sees what beat wrote)."""
    started = Beat(stack_env, tmp_path)
    try:
        yield started.wait_started()
    finally:
        started.stop()


@pytest.fixture
def examples(db):
    """The example scenarios stored, as the beat process stores them when it starts."""
    from labsite.lab.services import examples_load

    examples_load()


@pytest.fixture(scope="session")
def daphne_url(stack_env, tmp_path_factory):
    """A daphne serving ``labsite.asgi`` on a free port; yields ``http://127.0.0.1:<port>``."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("daphne") / "daphne.log"
    with open(log_path, "wb") as log:
        proc = spawn([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                      "labsite.asgi:application"], env=stack_env, cwd=REPO,
                     stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port("127.0.0.1", port, timeout=30, procs=[proc])
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(proc, timeout=10)


# --- a minimal WebSocket client (RFC 6455), enough to read what a browser would read ------

class WsRejected(Exception):
    """The server refused the WebSocket handshake (``status`` is the HTTP status)."""

    def __init__(self, status: int):
        super().__init__(f"websocket handshake refused with HTTP {status}")
        self.status = status


class WsClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.close_code: int | None = None

    @classmethod
    async def connect(cls, base_url: str, path: str, *, cookie: str = "",
                      origin: str | None = None, send_origin: bool = True) -> WsClient:
        host, port = base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port), limit=2**24)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"]
        if send_origin:
            lines.append(f"Origin: {origin or base_url}")
        if cookie:
            lines.append(f"Cookie: {cookie}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        status = int(status_line.split()[1]) if status_line else 0
        if status != 101:
            writer.close()
            raise WsRejected(status)
        return cls(reader, writer)

    async def recv(self, timeout: float = 10.0) -> dict | None:
        """The next JSON message, or None once the server closed the socket."""
        return await asyncio.wait_for(self._recv(), timeout)

    async def _recv(self) -> dict | None:
        message = b""
        while True:
            head = await self.reader.readexactly(2)
            fin, opcode, length = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(length)
            if opcode == 8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                return None
            if opcode == 9:
                self._send_frame(10, payload)
                continue
            if opcode in (0, 1):
                message += payload
                if fin:
                    return json.loads(message)

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError):
            self._send_frame(8, struct.pack("!H", 1000))
            await self.writer.drain()
        self.writer.close()


@pytest.fixture
def ws_client():
    return WsClient


def session_cookie_for(user) -> str:
    """A ``Cookie:`` header value logging ``user`` in (the session lives in the test DB)."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


@pytest.fixture
def login_cookie():
    return session_cookie_for


# --- Chromium through Playwright's sync API ----------------------------------------------

# Every page of every context records Content-Security-Policy violations (the lab sends a
# strict policy, labsite/middleware.py): the event listener runs before any page script,
# keeps them in window.__cspViolations and reports each one to Python at once, so a
# violation on a page the test has since navigated away from is not lost.
CSP_RECORDER = """
(() => {
  window.__cspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    const where = `${e.sourceFile || e.documentURI}:${e.lineNumber}:${e.columnNumber}`;
    const text = `${e.effectiveDirective} refused ${e.blockedURI || "inline"} at ${where}`
      + (e.sample ? ` (${JSON.stringify(e.sample)})` : "");
    window.__cspViolations.push(text);
    if (window.__rsslabCspViolation) { window.__rsslabCspViolation(text); }
  }, true);
})();
"""


#: Marks the lab's guided tour as seen (static/lab/tour.js keeps that in localStorage).
TOUR_SEEN = "try { window.localStorage.setItem('rsslab.tour', 'done'); } catch (e) {}"


def _wait_for_function_without_eval(page):
    """``page.wait_for_function`` that works under a policy without ``'unsafe-eval'``.

    Playwright's own polls its predicate with ``eval`` inside the page; only a check made
    during the DevTools call is exempt from the CSP, every later one is refused (and counts
    as a violation). This one polls with ``page.evaluate`` (a DevTools call each time) and
    returns the predicate's value instead of a handle.
    """
    from playwright.sync_api import Error, TimeoutError

    def wait_for_function(expression, *, arg=None, timeout=None, polling=None):
        limit = 30_000 if timeout is None else timeout
        deadline = time.monotonic() + limit / 1000 if limit else float("inf")
        interval = polling if isinstance(polling, int | float) else 50
        while True:
            try:
                result = page.evaluate(expression, arg)
            except Error as exc:  # a navigation replaced the document: ask the new one
                if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                    raise
                result = None
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"wait_for_function: {expression!r} still false after "
                                   f"{limit} ms")
            page.wait_for_timeout(interval)

    return wait_for_function


def _watch_csp(context) -> None:
    """Record in ``context.csp_violations`` every CSP violation of its pages, both the
    ``securitypolicyviolation`` events and console messages about the policy."""
    found = context.csp_violations = []
    context.csp_checked = False
    context.expose_binding("__rsslabCspViolation",
                           lambda source, text: found.append(f"{source['page'].url}: {text}"))
    context.add_init_script(CSP_RECORDER)

    def on_console(message):
        if "Content Security Policy" in message.text:
            found.append(f"console: {message.text}")

    def on_page(new_page):
        new_page.on("console", on_console)
        new_page.wait_for_function = _wait_for_function_without_eval(new_page)

    context.on("page", on_page)


def _csp_violations(context) -> list[str]:
    """Every violation ``context`` recorded, after letting its open pages deliver theirs."""
    for open_page in context.pages:
        with contextlib.suppress(Exception):  # a crashed or closing page has nothing to add
            for text in open_page.evaluate(
                    "new Promise(r => setTimeout(() => r(window.__cspViolations || []), 50))"):
                entry = f"{open_page.url}: {text}"
                if entry not in context.csp_violations:
                    context.csp_violations.append(entry)
    context.csp_checked = True
    return context.csp_violations


def _csp_failure(violations: list[str]) -> str:
    return ("the page broke the Content-Security-Policy (labsite/middleware.py):\n  "
            + "\n  ".join(violations))


@pytest.fixture
def browser(daphne_url):
    """Chromium for one test.

    Playwright's sync API marks an event loop as running in this thread while it is
    started, and Django then refuses ORM calls here. So it lives for one test only, and a
    test prepares its rows in fixtures listed *before* ``page`` (set up first).

    Every context it opens (``browser.new_context``, also in a test's own fixture) records
    CSP violations; the test fails if any page had one (see ``page``).
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (what .ci/run does), "
                    "or deselect these tests with -m 'not browser'")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS,
                                              headless=True)
        contexts = []
        new_context = chromium.new_context

        def watched_new_context(*args, **kwargs):
            context = new_context(*args, **kwargs)
            _watch_csp(context)
            contexts.append(context)
            return context

        chromium.new_context = watched_new_context
        yield chromium
        chromium.close()
    unchecked = [text for context in contexts if not context.csp_checked
                 for text in context.csp_violations]
    assert not unchecked, _csp_failure(unchecked)


def _forget_daphne_submit_counts(stack_env) -> None:
    """Delete the fair-use submit counts daphne keeps under the session's prefix: user ids
    repeat from one flushed test to the next, so browser tests that each run a few
    scenarios as "the" student would otherwise share one 10-per-minute window and a
    later test's run be refused (429) — only the keys these tests made are deleted."""
    client = redis.Redis.from_url(channels_redis_url(stack_env["REDIS_URL"]))
    try:
        keys = list(client.scan_iter(match=f"{stack_env['REDIS_PREFIX']}:fairuse:submit:*",
                                     count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def page(browser, daphne_url, stack_env):
    """A fresh browser page that records console errors and every request it makes; the
    test fails at teardown if any page of its context violated the CSP."""
    _forget_daphne_submit_counts(stack_env)
    context = browser.new_context(base_url=daphne_url)
    # The lab page offers its guided tour on a first visit; tests that are not about it
    # start as a returning visitor (tests/web/test_lab_truth.py opens it on a fresh one).
    context.add_init_script(TOUR_SEEN)
    page = context.new_page()
    page.console_errors = []
    page.requests = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.on("request", lambda r: page.requests.append(r.url))
    yield page
    try:
        violations = _csp_violations(context)
    finally:
        context.close()
    assert not violations, _csp_failure(violations)


@pytest.fixture
def student(client):
    """A student logged in on the Django test ``client`` (browser tests make their own)."""
    from django.contrib.auth.models import User

    user = User.objects.create_user("stu", password="pw-for-tests-123")
    client.force_login(user)
    return user
