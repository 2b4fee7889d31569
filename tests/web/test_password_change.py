"""Changing one's own password (students are not staff: no admin for them) through
Django's test client, with CSRF checks on where a form is posted."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-123"
NEW_PASSWORD = "quiet-Harbour-7421"


def form_token(page) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"',
                     page.content.decode()).group(1)


def log_in(client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_a_student_changes_their_password_on_the_page():
    User.objects.create_user("stu", password=PASSWORD)
    client = Client(enforce_csrf_checks=True)
    login_page = client.get(reverse("login"))
    assert client.post(reverse("login"), {"username": "stu", "password": PASSWORD,
                                          "csrfmiddlewaretoken": form_token(login_page)}
                       ).status_code == 302
    page = client.get(reverse("password_change"))
    assert page.status_code == 200
    html = page.content.decode()
    assert f'href="{reverse("password_change")}"' in html  # the header's link
    assert 'name="old_password"' in html and 'name="new_password2"' in html
    done = client.post(reverse("password_change"), {
        "old_password": PASSWORD, "new_password1": NEW_PASSWORD,
        "new_password2": NEW_PASSWORD, "csrfmiddlewaretoken": form_token(page)})
    assert done.status_code == 302 and done["Location"] == reverse("password_change_done")
    assert b"Password changed" in client.get(done["Location"]).content
    assert logged_in(client)  # the session survives its own password change

    fresh = Client()
    assert log_in(fresh, "stu", PASSWORD).status_code == 200 and not logged_in(fresh)
    assert log_in(fresh, "stu", NEW_PASSWORD).status_code == 302 and logged_in(fresh)


def test_a_wrong_old_password_is_a_form_error_not_a_500(client):
    user = User.objects.create_user("stu", password=PASSWORD)
    client.force_login(user)
    page = client.post(reverse("password_change"), {
        "old_password": "not-it", "new_password1": NEW_PASSWORD,
        "new_password2": NEW_PASSWORD})
    assert page.status_code == 200
    assert b"Your old password was entered incorrectly" in page.content
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_the_settings_password_validators_apply(client):
    user = User.objects.create_user("stu", password=PASSWORD)
    client.force_login(user)
    page = client.post(reverse("password_change"), {
        "old_password": PASSWORD, "new_password1": "12345678", "new_password2": "12345678"})
    assert page.status_code == 200
    assert b"too common" in page.content and b"entirely numeric" in page.content
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_the_password_page_needs_a_login(client):
    response = client.get(reverse("password_change"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


