"""The admin site, with its log-in throttled like the site's (``labsite.lab.throttle``).

Installed as Django's default admin site (``INSTALLED_APPS`` lists
:class:`LabAdminConfig` instead of ``django.contrib.admin``), so ``admin.site`` and every
``@admin.register`` keep working unchanged. Without it the admin's own log-in view would
be a way round the throttle.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


class LabAdminSite(admin.AdminSite):
    @property
    def login_form(self):
        # Imported here: this module loads while the app registry is still being built,
        # and the forms import the User model.
        from labsite.lab.forms import AdminLoginForm

        return AdminLoginForm

    def login(self, request, extra_context=None):
        from labsite.lab.views import refused_login_status

        return refused_login_status(super().login(request, extra_context))


class LabAdminConfig(AdminConfig):
    default_site = "labsite.lab.adminsite.LabAdminSite"
