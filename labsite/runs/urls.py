from django.urls import path

from labsite.runs import views

app_name = "runs"
urlpatterns = [
    path("", views.run_index, name="index"),
    path("<int:run_id>/", views.detail, name="detail"),
]
