"""The log-in throttle (``labsite.lab.throttle``) of the site's and the admin's log-in.

Through Django's test client and directly, with the counters in the test Redis
(``redis_prefix`` in conftest.py: Django's Redis cache, as the lab uses it, under this test's
own prefix).
"""

from __future__ import annotations

import re
import time

import pytest
import redis
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from labsite.lab.throttle import (
    LoginAttempt,
    login_failure_record,
    login_refusal,
    login_success_record,
    wait_text,
)
from labsite.redisurls import cache_config, channels_redis_url

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-123"


def log_in(client, username: str, password: str, address: str = "127.0.0.1", *,
           url: str | None = None):
    """POST the log-in form of ``url`` (the site's by default) from ``address``."""
    url = url or reverse("login")
    return client.post(url, {"username": username, "password": password},
                       REMOTE_ADDR=address)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session



def test_thirty_wrong_passwords_then_the_right_one_is_refused_saying_when(client):
    User.objects.create_user("ann", password=PASSWORD)
    statuses = [log_in(client, "ann", "wrong", "10.0.0.1").status_code for _ in range(30)]
    assert statuses == [200] * 5 + [429] * 25
    refused = log_in(client, "ann", PASSWORD, "10.0.0.1")
    assert refused.status_code == 429 and not logged_in(client)
    assert 880 <= int(refused["Retry-After"]) <= 900
    text = refused.content.decode()
    assert re.search(r"Too many failed log-ins for this account from this address\. "
                     r"Try again in 1[45] minutes?( \d+ seconds?)?\.", text), text
    assert "didn't match" not in text


def test_another_user_from_the_same_address_is_not_throttled(client):
    User.objects.create_user("ann", password=PASSWORD)
    User.objects.create_user("bob", password=PASSWORD)
    for _ in range(10):
        log_in(client, "ann", "wrong", "10.0.0.1")
    assert log_in(client, "ann", PASSWORD, "10.0.0.1").status_code == 429
    assert log_in(client, "bob", PASSWORD, "10.0.0.1").status_code == 302
    assert client.session["_auth_user_id"] == str(User.objects.get(username="bob").pk)


def test_the_same_user_elsewhere_is_throttled_only_at_the_username_limit():
    User.objects.create_user("ann", password=PASSWORD)
    # 19 failures from four addresses (each pair locks at 5, the username at 20) ...
    for address, failures in (("10.0.0.1", 5), ("10.0.0.2", 5), ("10.0.0.3", 5),
                              ("10.0.0.4", 4)):
        for _ in range(failures):
            assert log_in(Client(), "ann", "wrong", address).status_code == 200
    assert log_in(Client(), "ann", PASSWORD, "10.0.0.1").status_code == 429  # that pair
    assert log_in(Client(), "ann", PASSWORD, "10.0.0.5").status_code == 302  # elsewhere: in
    # ... the 20th locks the username from everywhere, a success above notwithstanding.
    assert log_in(Client(), "ann", "wrong", "10.0.0.6").status_code == 200
    refused = log_in(Client(), "ann", PASSWORD, "10.0.0.7")
    assert refused.status_code == 429
    assert b"Too many failed log-ins for this account. Try again in" in refused.content


def test_a_success_resets_the_username_and_address_counter(client):
    User.objects.create_user("ann", password=PASSWORD)
    for _ in range(2):
        for _ in range(4):
            assert log_in(client, "ann", "wrong", "10.0.0.1").status_code == 200
        assert log_in(client, "ann", PASSWORD, "10.0.0.1").status_code == 302
        client.logout()


def test_after_the_cooloff_the_login_works(client, settings):
    # The failures still count (a 60 s window: hashing five passwords takes a while), the
    # lock is over after a second.
    settings.LOGIN_FAILURE_WINDOW_SECONDS, settings.LOGIN_COOLOFF_SECONDS = 60, 1
    User.objects.create_user("ann", password=PASSWORD)
    for _ in range(5):
        log_in(client, "ann", "wrong", "10.0.0.1")
    refused = log_in(client, "ann", PASSWORD, "10.0.0.1")
    assert refused.status_code == 429 and b"Try again in 1 second." in refused.content
    time.sleep(1.1)  # Redis keeps expiry times in whole seconds for the cache
    assert log_in(client, "ann", PASSWORD, "10.0.0.1").status_code == 302


def test_the_admin_login_goes_through_the_same_throttle(client):
    User.objects.create_user("boss", password=PASSWORD, is_staff=True)
    admin_login = reverse("admin:login")
    for _ in range(3):  # failures on the site's page and the admin's count together
        assert log_in(client, "boss", "wrong", "10.0.0.1").status_code == 200
    for _ in range(2):
        page = log_in(client, "boss", "wrong", "10.0.0.1", url=admin_login)
        assert page.status_code == 200 and b"staff account" in page.content
    refused = log_in(client, "boss", PASSWORD, "10.0.0.1", url=admin_login)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert b"Too many failed log-ins for this account from this address" in refused.content
    assert not logged_in(client)
    assert log_in(client, "boss", PASSWORD, "10.0.0.2", url=admin_login).status_code == 302


def test_a_right_password_on_a_login_it_may_not_use_is_no_failure(client):
    """A student's right password on the admin's page is refused (not staff), but it is
    not a guess: it must not lock the student out of the site."""
    User.objects.create_user("stu", password=PASSWORD)
    for _ in range(6):
        assert log_in(client, "stu", PASSWORD, url=reverse("admin:login")).status_code == 200
    assert log_in(client, "stu", PASSWORD).status_code == 302


def test_the_counters_are_in_redis_under_the_lab_prefix_and_expire(redis_url, redis_prefix):
    attempt = LoginAttempt.of("Ann", "10.0.0.1")
    for _ in range(5):
        assert login_refusal(attempt) is None
        login_failure_record(attempt)
    refusal = login_refusal(LoginAttempt.of("ANN", "10.0.0.1"))  # every spelling of a name
    assert refusal is not None and refusal.per_address and 895 <= refusal.retry_after <= 900
    assert login_refusal(LoginAttempt.of("ann", "10.0.0.2")) is None
    raw = redis.Redis.from_url(channels_redis_url(redis_url))
    try:
        keys = sorted(key.decode() for key in raw.scan_iter(match=f"{redis_prefix}:*"))
        assert len(keys) == 3, keys  # two counters and the pair's lock
        assert all(key.startswith(f"{redis_prefix}:cache:1:login-throttle:") for key in keys)
        assert all(0 < raw.ttl(key) <= 900 for key in keys)
        login_success_record(attempt)
        assert [key.decode() for key in raw.scan_iter(match=f"{redis_prefix}:*")] == [
            key for key in keys if ":user:" in key]
    finally:
        raw.close()
    assert login_refusal(attempt) is None


def test_an_unreachable_cache_lets_logins_through_and_says_so(client, settings, tmp_path,
                                                              caplog):
    settings.CACHES = cache_config(f"unix://{tmp_path / 'no-redis.sock'}", "nowhere")
    User.objects.create_user("ann", password=PASSWORD)
    assert log_in(client, "ann", "wrong").status_code == 200
    assert log_in(client, "ann", PASSWORD).status_code == 302
    assert "login throttle: cache unreachable" in caplog.text


def test_wait_text():
    assert [wait_text(s) for s in (1, 59, 60, 61, 900, 845)] == [
        "1 second", "59 seconds", "1 minute", "1 minute 1 second", "15 minutes",
        "14 minutes 5 seconds"]
