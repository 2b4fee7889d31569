"""The log-in forms of the site and of the admin, both throttled by ``labsite.lab.throttle``.

Django's ``AuthenticationForm`` checks the password in ``clean``; these forms ask the
throttle first (a locked key refuses even the right password, without trying it), then
record the outcome: a wrong password counts, a right one resets the username + address
counter. A right password for an account that may not log in here (inactive, or not staff
on the admin) is not a failed guess and is not counted.
"""

from __future__ import annotations

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from labsite.lab.throttle import (
    LoginAttempt,
    LoginRefusal,
    login_failure_record,
    login_refusal,
    login_success_record,
)


def client_address(request) -> str | None:
    """The address the log-in came from, as the ASGI server reports it (behind a proxy,
    the proxy's own unless daphne runs with ``--proxy-headers``: README)."""
    return request.META.get("REMOTE_ADDR") if request is not None else None


class ThrottledLoginMixin:
    """Throttles an ``AuthenticationForm`` subclass; ``refusal`` is set when refused."""

    refusal: LoginRefusal | None = None

    def clean(self):
        username = self.cleaned_data.get("username")
        if username is None or not self.cleaned_data.get("password"):
            return super().clean()
        attempt = LoginAttempt.of(username, client_address(self.request))
        self.refusal = login_refusal(attempt)
        if self.refusal is not None:
            raise ValidationError(self.refusal.message, code="throttled")
        try:
            cleaned = super().clean()
        except ValidationError:
            if self.user_cache is None:  # the password was wrong (or no such user)
                login_failure_record(attempt)
            raise
        login_success_record(attempt)
        return cleaned


class LoginForm(ThrottledLoginMixin, AuthenticationForm):
    """The site's log-in (``accounts/login/``; its template shows :attr:`refusal`)."""


class AdminLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    """The admin's log-in (``labsite.lab.adminsite.LabAdminSite``)."""
