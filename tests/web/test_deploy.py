"""Deployment defaults: a secret key is required, ``check --deploy`` is clean under the
environment docker-compose.yml gives the web service, ``make run`` keeps a key of its own
in ``var/``, and every HTML page carries a strict Content-Security-Policy."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from labsite.secretkey import (
    SecretKeyError,
    export_secret_key,
    read_or_create_secret_key,
)

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
TEMPLATES = REPO / "templates"
# What the settings read; a subprocess here starts from the caller's environment without it.
STACK_PREFIXES = ("DJANGO_", "DATABASE_", "REDIS_", "RSSLAB_", "RUN_", "LAB_")
A_KEY = "k3y-for-the-deploy-check-" + "x7Qp2Lm9" * 6


def _clean_env(**extra) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(STACK_PREFIXES)}
    env.update(DJANGO_SETTINGS_MODULE="labsite.settings", PYTHONUNBUFFERED="1", **extra)
    return env


def _interpolate(value, provided: dict[str, str]) -> str:
    """Compose's variable substitution with nothing set but ``provided``: ``${X:-default}``
    gives the default, ``${X:?message}`` and ``${X}`` need X in ``provided``."""
    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        if name in provided:
            return provided[name]
        if op in (":-", "-"):
            return arg
        raise AssertionError(f"docker-compose.yml needs {name} ({arg or 'no default'})")

    return re.sub(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}", substitute,
                  str(value))


def compose_web_environment(provided: dict[str, str]) -> dict[str, str]:
    """The web service's environment in docker-compose.yml, defaults substituted."""
    web = yaml.safe_load(COMPOSE.read_text())["services"]["web"]
    environment = web["environment"]
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {name: _interpolate(value, provided) for name, value in environment.items()}


def _django(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


# --- the secret key ------------------------------------------------------------------------

def test_check_deploy_is_clean_under_the_compose_environment(tmp_path):
    compose_env = compose_web_environment({"DJANGO_SECRET_KEY": A_KEY})
    assert compose_env["DJANGO_BEHIND_TLS_PROXY"] == "1"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env=_clean_env(RSSLAB_VAR=str(tmp_path), **compose_env))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout


def test_check_deploy_flags_plain_http_settings(tmp_path):
    """The check above is not clean by accident: without the proxy switch it warns."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env=_clean_env(RSSLAB_VAR=str(tmp_path), DJANGO_SECRET_KEY=A_KEY))
    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in result.stderr + result.stdout


@pytest.mark.parametrize("extra", [{}, {"DJANGO_DEBUG": "0"}, {"DJANGO_SECRET_KEY": " "}],
                         ids=["unset", "debug-off", "blank-key"])
def test_settings_refuse_to_load_without_a_key(extra, tmp_path):
    result = _django("from django.conf import settings; print(settings.SECRET_KEY)",
                     _clean_env(RSSLAB_VAR=str(tmp_path), **extra))
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: DJANGO_SECRET_KEY "
                           "is not set: export"), result.stderr
    assert not (tmp_path / "secret_key").exists()


def test_debug_without_a_key_uses_the_make_run_key_file(tmp_path):
    env = _clean_env(RSSLAB_VAR=str(tmp_path), DJANGO_DEBUG="1")
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    first, second = _django(code, env), _django(code, env)
    assert first.returncode == 0, first.stderr
    key = first.stdout.strip()
    assert key == second.stdout.strip() == (tmp_path / "secret_key").read_text().strip()
    assert len(key) >= 50


def test_the_key_file_is_created_once_private_and_reused(tmp_path):
    path = tmp_path / "var" / "secret_key"
    key = read_or_create_secret_key(path)
    assert len(key) >= 50 and len(set(key)) >= 5
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    mtime = path.stat().st_mtime_ns
    assert read_or_create_secret_key(path) == key
    assert path.stat().st_mtime_ns == mtime
    assert read_or_create_secret_key(tmp_path / "other") != key
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]  # no temporary left


def test_processes_starting_at_once_agree_on_one_key(tmp_path):
    path = tmp_path / "secret_key"
    keys, start = [], threading.Barrier(8)

    def one():
        start.wait()
        keys.append(read_or_create_secret_key(path))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret_key"]


def test_a_damaged_key_file_is_refused(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("short\n")
    with pytest.raises(SecretKeyError, match="delete it"):
        read_or_create_secret_key(path)


def test_the_launcher_exports_the_var_key_unless_one_is_set(tmp_path, monkeypatch):
    monkeypatch.setenv("RSSLAB_VAR", str(tmp_path))
    environ: dict[str, str] = {}
    key = export_secret_key(environ)
    assert environ == {"DJANGO_SECRET_KEY": key}
    assert (tmp_path / "secret_key").read_text().strip() == key
    assert export_secret_key({}) == key  # the next start reuses it
    given = {"DJANGO_SECRET_KEY": A_KEY}
    (tmp_path / "secret_key").unlink()
    assert export_secret_key(given) == A_KEY and given == {"DJANGO_SECRET_KEY": A_KEY}
    assert not (tmp_path / "secret_key").exists()


def test_the_launcher_sets_the_key_before_django_starts():
    source = (REPO / "labsite" / "launcher.py").read_text()
    main = source[source.index("def main("):]
    assert "export_secret_key()" in main
    assert main.index("export_secret_key()") < main.index("_prepare_database()")


# --- Content-Security-Policy ---------------------------------------------------------------

def _directives(header: str) -> dict[str, list[str]]:
    return {name: sources for name, *sources in (part.split() for part in header.split(";"))}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/accounts/login/", "/no-such-page/"])
def test_html_pages_carry_a_strict_policy(client, path):
    response = client.get(path)
    assert response["Content-Type"].startswith("text/html")
    header = response["Content-Security-Policy"]
    assert "unsafe-inline" not in header and "unsafe-eval" not in header
    assert _directives(header) == {
        "default-src": ["'self'"], "script-src": ["'self'"], "style-src": ["'self'"],
        "img-src": ["'self'", "data:"], "connect-src": ["'self'", "ws://testserver"],
        "object-src": ["'none'"], "base-uri": ["'self'"], "form-action": ["'self'"],
        "frame-ancestors": ["'none'"]}


@pytest.mark.django_db
def test_the_websocket_source_follows_the_scheme(client):
    header = client.get("/accounts/login/", secure=True)["Content-Security-Policy"]
    assert _directives(header)["connect-src"] == ["'self'", "wss://testserver"]


@pytest.mark.django_db
def test_djangos_debug_error_pages_are_left_alone(client, settings):
    settings.DEBUG = True  # its technical pages are inline CSS and JavaScript
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and "Content-Security-Policy" not in response
    assert "Content-Security-Policy" in client.get("/accounts/login/")


@pytest.mark.django_db
def test_json_answers_carry_no_policy(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("csp", password="pw-csp-1234"))
    response = client.get("/lab/api/runs/")
    assert not response["Content-Type"].startswith("text/html")
    assert "Content-Security-Policy" not in response


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")),
                         ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_templates_have_no_inline_script_or_style(template):
    text = re.sub(r"\{#.*?#\}", "", template.read_text())  # not template comments
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), "inline <script>"
    assert not re.search(r"<style\b", text), "inline <style>"
    assert not re.search(r"\sstyle\s*=", text), "style attribute"
    assert not re.search(r"\son[a-z]+\s*=", text), "inline event handler"
    assert "javascript:" not in text


def test_the_workbench_gives_plotly_the_elements_it_would_inline():
    """Plotly.js creates a <style> for its rules unless an element with the id it looks up
    exists (see templates/lab/workbench.html); its ids are checked against the installed
    bundle, so a Plotly upgrade that changes them fails here, not only in the browser."""
    from labsite.staticfinders import plotly_bundle_path

    bundle = plotly_bundle_path().read_text(errors="replace")
    workbench = (TEMPLATES / "lab" / "workbench.html").read_text()
    assert '"plotly.js-style-"' in bundle
    assert 'id="plotly.js-style-global"' in workbench
    style_ids = set(re.findall(
        r'getElementById\("([^"]+)"\)\)\{var (\w+)=document\.createElement\("style"\)', bundle))
    assert style_ids, "Plotly no longer injects <style> elements this way: recheck the CSP"
    for style_id, _ in style_ids:
        assert f'id="{style_id}"' in workbench, style_id


def test_a_missing_chromium_stops_the_run_before_any_test_with_the_install_command():
    import subprocess
    import sys

    env = {**os.environ, "RSSLAB_CHROMIUM": "/nonexistent/chromium"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/web/test_views.py", "tests/web/test_browser.py"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 4, result.stdout[-1500:]
    assert "apt-get install -y chromium" in result.stdout + result.stderr
    assert " passed" not in result.stdout  # stopped before running the other tests


def test_manage_py_uses_the_key_make_run_keeps_and_never_makes_one(tmp_path):
    """`manage.py api_token create …` beside `make run` finds var/secret_key; where no
    such file exists, manage.py is refused like the settings are (no key is made)."""
    command = [sys.executable, "manage.py", "check"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO,
                             env=_clean_env(RSSLAB_VAR=str(tmp_path)))
    assert refused.returncode != 0 and "DJANGO_SECRET_KEY is not set" in refused.stderr
    assert not (tmp_path / "secret_key").exists()
    (tmp_path / "secret_key").write_text(A_KEY + "\n")
    used = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=_clean_env(RSSLAB_VAR=str(tmp_path)))
    assert used.returncode == 0, used.stdout + used.stderr
