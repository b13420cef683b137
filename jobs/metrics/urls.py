"""The metrics endpoint's address: ``path("metrics/", include("jobs.metrics.urls"))`` turns it on."""

from django.urls import path

from . import views

app_name = "jobs_metrics"

urlpatterns = [path("", views.metrics, name="metrics")]
