from django.urls import path, re_path

from . import views

app_name = "jobs"

urlpatterns = [
    path("api/jobs/", views.job_collection, name="job-list"),
    path("api/jobs/<uuid:job_id>/", views.job_detail, name="job-detail"),
    # Any other address under api/ answers a JSON 404 rather than the site's HTML page.
    re_path(r"^api/(?P<path>.*)$", views.not_found),
]
