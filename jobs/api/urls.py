from django.urls import path

from . import views

app_name = "jobs"

urlpatterns = [
    path("api/jobs/", views.job_collection, name="job-list"),
    path("api/jobs/<uuid:job_id>/", views.job_detail, name="job-detail"),
]
