from django.urls import path

from labsite.runs import views

app_name = "runs"
urlpatterns = [
    path("start/<slug:slug>/", views.start, name="start"),
    path("<int:run_id>/", views.detail, name="detail"),
    path("<int:run_id>/data.json", views.data, name="data"),
]
