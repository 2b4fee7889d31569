from django.urls import path

from labsite.lab import views

app_name = "lab"
urlpatterns = [
    path("", views.workbench, name="index"),
    path("api/runs/", views.api_runs, name="api-runs"),
    path("api/runs/<int:run_id>/", views.api_run, name="api-run"),
    path("api/runs/<int:run_id>/events/", views.api_run_events, name="api-run-events"),
    path("api/runs/<int:run_id>/pcap", views.api_run_pcap, name="api-run-pcap"),
    path("api/explain/", views.api_explain, name="api-explain"),
    path("api/builder-yaml/", views.api_builder_yaml, name="api-builder-yaml"),
    path("api/compare/", views.api_compare, name="api-compare"),
]
