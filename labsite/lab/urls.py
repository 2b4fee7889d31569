"""The lab's own endpoints, under ``/lab/`` (the page and the run API there are
``labsite.runs``'s: see ``labsite.urls``)."""

from django.urls import path

from labsite.lab import views

app_name = "lab"
urlpatterns = [
    path("api/explain/", views.api_explain, name="api-explain"),
    path("explain/", views.explain_page, name="explain"),
    path("api/builder-yaml/", views.api_builder_yaml, name="api-builder-yaml"),
]
