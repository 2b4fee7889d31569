"""``/api/v1/…`` (the REST API and its schema and docs) and ``/api/tokens/`` (the page where
a logged-in user makes and revokes personal tokens). ``/healthz`` is mounted at the site's
root (``labsite.urls``)."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView

from labsite.api import pages, views

app_name = "api"
urlpatterns = [
    path("v1/schema/", SpectacularAPIView.as_view(permission_classes=[
        views.AllowAnyone], authentication_classes=[]), name="schema"),
    path("v1/docs/", views.SwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("v1/redoc/", views.RedocView.as_view(url_name="api:schema"), name="redoc"),
    path("v1/hash", views.HashView.as_view(), name="hash"),
    path("v1/scenarios", views.ScenarioListView.as_view(), name="scenarios"),
    path("v1/scenarios/validate", views.ScenarioValidateView.as_view(),
         name="scenario-validate"),
    path("v1/scenarios/<int:scenario_id>", views.ScenarioDetailView.as_view(),
         name="scenario"),
    path("v1/runs", views.RunListView.as_view(), name="runs"),
    path("v1/runs/<int:run_id>", views.RunDetailView.as_view(), name="run"),
    path("v1/runs/<int:run_id>/cancel", views.RunCancelView.as_view(), name="run-cancel"),
    path("v1/runs/<int:run_id>/rows", views.RunRowsView.as_view(), name="run-rows"),
    path("v1/runs/<int:run_id>/pcap", views.RunPcapView.as_view(), name="run-pcap"),
    path("v1/runs/<int:run_id>/report.html", views.RunReportView.as_view(),
         name="run-report"),
    path("v1/runs/<int:run_id>/junit", views.RunJUnitView.as_view(), name="run-junit"),
    path("v1/batches", views.BatchListView.as_view(), name="batches"),
    path("v1/batches/<int:batch_id>", views.BatchDetailView.as_view(), name="batch"),
    path("v1/batches/<int:batch_id>/junit", views.BatchJUnitView.as_view(),
         name="batch-junit"),
    path("v1/exercises", views.ExerciseListView.as_view(), name="exercises"),
    path("v1/exercises/<slug:slug>", views.ExerciseDetailView.as_view(), name="exercise"),
    path("v1/exercises/<slug:slug>/start", views.ExerciseStartView.as_view(),
         name="exercise-start"),
    path("v1/exercises/<slug:slug>/attempts", views.ExerciseAttemptsView.as_view(),
         name="exercise-attempts"),
    path("v1/exercises/<slug:slug>/attempts/<int:attempt_id>",
         views.ExerciseAttemptView.as_view(), name="exercise-attempt"),
    path("v1/exercises/<slug:slug>/hints", views.ExerciseHintView.as_view(),
         name="exercise-hints"),
    path("v1/exercises/<slug:slug>/gradebook", views.GradebookView.as_view(),
         name="exercise-gradebook"),
    path("v1/exercises/<slug:slug>/gradebook.csv", views.GradebookCsvView.as_view(),
         name="exercise-gradebook-csv"),
    # Anything else under v1/ (a negative id, a typo): the API's JSON 404, not a page.
    re_path(r"^v1/", views.not_found, name="not-found"),
    path("tokens/", pages.tokens_page, name="tokens"),
    path("tokens/<int:token_id>/revoke/", pages.token_revoke_page, name="token-revoke"),
]
