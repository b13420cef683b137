from django.contrib import admin
from django.urls import include, path

from . import cache_demo, views

urlpatterns = [
    path("", views.home, name="demo-home"),
    path("demo/echo", views.echo, name="demo-echo"),
    path("demo/delay", views.delay, name="demo-delay"),
    path("demo/retry", views.retry, name="demo-retry"),
    path("demo/fanout", views.fanout, name="demo-fanout"),
    path("demo/task", views.task, name="demo-task"),
    path("demo/jobs/<uuid:job_id>", views.status, name="demo-status"),
    path("demo/slow", cache_demo.slow, name="demo-slow"),
    path("jobs/", include("jobs.api.urls")),
    # Prometheus metrics of the jobs, queues, workers and cache (staff, or JOBS["METRICS_TOKEN"]).
    path("jobs/metrics/", include("jobs.metrics.urls")),
    path("django-rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
]
