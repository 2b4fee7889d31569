"""What ``django.request`` logs (``labsite.logfilters``): an expected 4xx one line, a 500
its traceback. The 500 and a bare PermissionDenied come from views of this module, served
through ``ROOT_URLCONF`` pointed here; the admin's 403 is the real one."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import path

from labsite.urls import urlpatterns as site_urlpatterns

pytestmark = pytest.mark.django_db


def forbidden(request):
    raise PermissionDenied("not for you")


def broken(request):
    raise RuntimeError("a real bug")


# The site's own URLs too: the error pages extend base.html, which reverses them.
urlpatterns = [path("forbidden/", forbidden), path("broken/", broken), *site_urlpatterns]


def request_records(caplog):
    return [r for r in caplog.records if r.name == "django.request"]


def test_a_staff_user_on_an_admin_page_they_may_not_see_is_one_line(caplog):
    """An instructor is staff without the user permissions: the admin answers 403."""
    client = Client()
    client.force_login(User.objects.create_user("inst", is_staff=True))
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get("/admin/auth/user/").status_code == 403
    [record] = request_records(caplog)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == "Forbidden (Permission denied): /admin/auth/user/"
    assert "Traceback" not in caplog.text and len(caplog.text.strip().splitlines()) == 1


def test_a_permission_denied_is_one_line_and_a_500_keeps_its_traceback(caplog, settings):
    settings.ROOT_URLCONF = __name__
    client = Client(raise_request_exception=False)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get("/forbidden/").status_code == 403
    [forbidden_record] = request_records(caplog)
    assert forbidden_record.exc_info is None and "Traceback" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get("/broken/").status_code == 500
    [error] = request_records(caplog)
    assert error.levelno == logging.ERROR and error.exc_info is not None
    assert "Traceback" in caplog.text and "RuntimeError: a real bug" in caplog.text
