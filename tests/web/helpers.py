"""Small helpers the web tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path


def post_json(client, url: str, data):
    """POST ``data`` (a JSON-ready value, or text sent as is) as an application/json body."""
    return client.post(url, data if isinstance(data, str) else json.dumps(data),
                       content_type="application/json")


def descendant_pids(pid: int) -> set[int]:
    """Every live descendant of process ``pid``, read from /proc (no extra dependency)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def wait_for(predicate, *, timeout: float, what: str, every: float = 0.05):
    """``predicate()``'s first truthy value, polled every ``every`` seconds; an
    AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def api_call(base_url: str, method: str, path: str, *, cookie: str, data=None):
    """``method`` ``path`` at a real server (daphne) as the user of session ``cookie``, with
    a CSRF token as the lab's pages send it; returns (status, JSON body, headers)."""
    import secrets
    import urllib.error
    import urllib.request

    token = secrets.token_hex(16)  # 32 characters: a CSRF secret Django accepts
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(
        base_url + path, data=body, method=method,
        headers={"Content-Type": "application/json", "X-CSRFToken": token,
                 "Cookie": f"{cookie}; csrftoken={token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"{}"), answer.headers
    except urllib.error.HTTPError as refused:
        with refused:  # closed even when the body is not JSON (a 500 page)
            return refused.code, json.loads(refused.read() or b"{}"), refused.headers


def api_request(base_url: str, method: str, path: str, *, token: str = "", data=None,
                headers: dict | None = None, raw: bytes | None = None):
    """``method`` ``path`` at a real server with ``Authorization: Bearer token`` and a JSON
    body (``data``) or ``raw`` bytes; returns (status, body, headers): the body parsed when
    the answer is JSON, else its bytes."""
    import urllib.error
    import urllib.request

    sent = {"Content-Type": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    body = raw if raw is not None else (None if data is None else json.dumps(data).encode())
    request = urllib.request.Request(base_url + path, data=body, method=method, headers=sent)
    try:
        answer = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as refused:
        answer = refused
    with answer:
        content = answer.read()
        status, answered = answer.status if hasattr(answer, "status") else answer.code, \
            answer.headers
    if answered.get("Content-Type", "").startswith("application/json"):
        return status, json.loads(content or b"{}"), answered
    return status, content, answered


def axe(page, where: str) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now. The script is
    handed over through DevTools (``evaluate``), which the page's CSP does not govern,
    so nothing inline is added to the page."""
    import axe_playwright_python

    if not page.evaluate("typeof window.axe === 'object'"):
        source = (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text()
        page.evaluate(source)
    result = page.evaluate("""async () => {
      const r = await window.axe.run(document, { resultTypes: ["violations"] });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact,
        nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
    }""")
    found = [f"{where}: {v['id']} ({v['impact']}) on {v['nodes']}" for v in result]
    print(f"\naxe, {where}: {found or 'no violation'}")
    return [text for text, v in zip(found, result, strict=True)
            if v["impact"] in ("serious", "critical")]
