"""Top-level URLs: the lab page, its run API and the runs list (``labsite.runs``), the
lab's scenario tools (``labsite.lab``), exercises (``labsite.exercises``), the REST API
(``labsite.api``, with ``/healthz``), accounts (the throttled log-in of
``labsite.lab.views``, log-out, changing one's own password) and the admin.

Python code and templates reverse these by name; the page's JavaScript reads them from the
``lab-urls`` block its template renders (``templates/lab/workbench.html``).
"""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from labsite.api.views import HealthView
from labsite.lab.views import LoginView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="runs:workbench"), name="home"),
    # /lab/ (the page), /lab/api/runs/…, /lab/api/compare/, /runs/…
    path("", include("labsite.runs.urls")),
    # /lab/api/explain/, /lab/api/builder-yaml/
    path("lab/", include("labsite.lab.urls")),
    # /exercises/… (students' and instructors' exercise pages, their JSON endpoints)
    path("exercises/", include("labsite.exercises.urls")),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Students are not staff: this is where everyone changes their password (the admin's
    # own page keeps Django's templates, hence the template names of our own).
    path("accounts/password/", auth_views.PasswordChangeView.as_view(
        template_name="registration/change_password.html"), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(
        template_name="registration/password_changed.html"), name="password_change_done"),
    path("admin/", admin.site.urls),
    # The REST API (/api/v1/…, its schema and docs) and the API token page.
    path("api/", include("labsite.api.urls")),
    path("healthz", HealthView.as_view(), name="healthz"),
]
