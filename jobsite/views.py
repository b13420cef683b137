"""Demo endpoints: each starts a job and answers 202 with its id and status URL."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus

from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from jobs.api.serializers import job_as_dict
from jobs.models import Job, Schedule

from . import jobs, tasks

MAX_MS = 60_000
MAX_MSG = 200


class BadParameter(ValueError):
    pass


def _param_msg(request: HttpRequest) -> str:
    msg = request.GET.get("msg")
    if msg is None or msg == "":
        raise BadParameter("msg is required")
    if len(msg) > MAX_MSG:
        raise BadParameter(f"msg must be at most {MAX_MSG} characters")
    return msg


def _param_int(request: HttpRequest, name: str, default: int | None, low: int, high: int) -> int:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        if default is None:
            raise BadParameter(f"{name} is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise BadParameter(f"{name} must be from {low} to {high}")
    return value


def _accepted(request: HttpRequest, record: Job) -> JsonResponse:
    status_url = request.build_absolute_uri(reverse("demo-status", args=[record.pk]))
    return JsonResponse(
        {"id": str(record.pk), "status": record.status, "status_url": status_url},
        status=HTTPStatus.ACCEPTED,
        headers={"Location": status_url},
    )


def _demo_view(build):
    @require_GET
    def view(request: HttpRequest) -> JsonResponse:
        try:
            record = build(request)
        except BadParameter as exc:
            return JsonResponse({"error": str(exc)}, status=HTTPStatus.BAD_REQUEST)
        return _accepted(request, record)

    view.__name__ = build.__name__
    return view


@_demo_view
def echo(request: HttpRequest) -> Job:
    return jobs.echo.enqueue(_param_msg(request), ms=_param_int(request, "ms", 1000, 0, MAX_MS))


@_demo_view
def delay(request: HttpRequest) -> Job:
    msg = _param_msg(request)
    ms = _param_int(request, "ms", None, 0, 24 * 3600 * 1000)
    return jobs.echo.using(delay=timedelta(milliseconds=ms)).enqueue(msg, ms=0)


@_demo_view
def retry(request: HttpRequest) -> Job:
    msg = _param_msg(request)
    fail = _param_int(request, "fail", None, 0, jobs.flaky.options.attempts - 1)
    return jobs.flaky.enqueue(msg, fail)


@_demo_view
def fanout(request: HttpRequest) -> Job:
    """``n`` parts at once, then one callback that adds up their results: the callback's record waits
    ("deferred, waiting for 7 of 20") until the last part has finished."""
    n = _param_int(request, "n", 20, 1, 200)
    ms = _param_int(request, "ms", 1500, 0, MAX_MS)
    with transaction.atomic():
        parts = jobs.fan_out_part.enqueue_many([(part, ms) for part in range(1, n + 1)])
        return jobs.fan_in_total.using(depends_on=parts).enqueue()


@_demo_view
def task(request: HttpRequest) -> Job:
    msg = _param_msg(request)
    priority = _param_int(request, "priority", 0, -100, 100)
    result = tasks.shout.using(priority=priority).enqueue(msg)
    # A task's result id is its record's id: the status URL is the same as a job's.
    return Job.objects.get(pk=result.id)


@require_GET
def status(request: HttpRequest, job_id: str) -> JsonResponse:
    return JsonResponse(job_as_dict(get_object_or_404(Job, pk=job_id)))


@require_GET
def home(request: HttpRequest):
    last = Job.objects.filter(schedule=OuterRef("pk")).order_by("-enqueued_at")
    schedules = Schedule.objects.annotate(
        last_run_at=Subquery(last.values("enqueued_at")[:1]),
        last_run_status=Subquery(last.values("status")[:1]),
        last_run_result=Subquery(last.values("result")[:1]),
    )
    return render(request, "demo/home.html", {"recent": Job.objects.all()[:20], "schedules": schedules})
