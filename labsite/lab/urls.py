from django.urls import path

from labsite.lab import views

app_name = "lab"
urlpatterns = [
    path("", views.index, name="index"),
]
