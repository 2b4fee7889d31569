"""Exercise URLs, under ``/exercises/`` (namespace ``exercises``). JSON endpoints' names
start with ``api-`` (``labsite.lab.api.csrf_failure`` answers them in JSON).
tests/web/test_exercises_permissions.py walks every route here: a new one without a row
in its table fails that test."""

from django.urls import path

from labsite.exercises import views

app_name = "exercises"
urlpatterns = [
    path("", views.index, name="index"),
    path("manage/", views.manage, name="manage"),
    path("manage/upload/", views.upload, name="upload"),
    path("manage/roster/", views.roster, name="roster"),
    path("manage/students/<int:user_id>/password/", views.password_reset,
         name="password-reset"),
    path("manage/<slug:slug>/publish/", views.publish, name="publish"),
    path("manage/<slug:slug>/preview/", views.preview, name="preview"),
    path("manage/<slug:slug>/gradebook/", views.gradebook, name="gradebook"),
    path("manage/<slug:slug>/gradebook.csv", views.gradebook_csv, name="gradebook-csv"),
    path("manage/<slug:slug>/regrade/", views.regrade, name="regrade"),
    path("manage/<slug:slug>/students/<int:user_id>/", views.student, name="student"),
    path("manage/<slug:slug>/students/<int:user_id>/reset/", views.reset, name="reset"),
    path("<slug:slug>/", views.detail, name="detail"),
    path("<slug:slug>/start/", views.start, name="start"),
    path("<slug:slug>/hints/<str:question>/<int:index>/", views.hint, name="hint"),
    path("<slug:slug>/api/attempts/", views.api_submit, name="api-submit"),
    path("<slug:slug>/api/attempts/<int:attempt_id>/", views.api_attempt, name="api-attempt"),
    path("<slug:slug>/api/scenario/", views.api_scenario, name="api-scenario"),
]
