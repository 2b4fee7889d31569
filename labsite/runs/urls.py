"""The runs app's pages and API, mounted at the site's root (``labsite.urls``): the lab
page and its run API under ``/lab/`` (the paths the page always had), the runs list
under ``/runs/``. Reverse them by name (``runs:workbench``, ``runs:api-run`` …)."""

from django.urls import path

from labsite.runs import views

app_name = "runs"
urlpatterns = [
    path("lab/", views.workbench, name="workbench"),
    path("lab/api/runs/", views.api_runs, name="api-runs"),
    path("lab/api/runs/<int:run_id>/", views.api_run, name="api-run"),
    path("lab/api/runs/<int:run_id>/delete/", views.api_run_delete, name="api-run-delete"),
    path("lab/api/runs/<int:run_id>/events/", views.api_run_events, name="api-run-events"),
    path("lab/api/runs/<int:run_id>/pcap", views.api_run_pcap, name="api-run-pcap"),
    path("lab/api/runs/<int:run_id>/report.html", views.api_run_report, name="api-run-report"),
    path("lab/api/compare/", views.api_compare, name="api-compare"),
    path("runs/", views.run_index, name="index"),
    path("runs/<int:run_id>/", views.detail, name="detail"),
    path("runs/<int:run_id>/delete/", views.run_delete_page, name="delete"),
]
