"""A small JSON API over the job records: status, list and enqueue, for users with the model permissions."""

from __future__ import annotations

import json
import uuid
from http import HTTPStatus

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET, require_http_methods

from ..exceptions import JobNotRegistered, JobsError
from ..models import Job, Status
from ..registry import resolve
from .serializers import job_as_dict

MAX_LIMIT = 500


def error(message: str, status: int = HTTPStatus.BAD_REQUEST) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@require_GET
@permission_required("jobs.view_job", raise_exception=True)
def job_detail(request: HttpRequest, job_id: uuid.UUID) -> JsonResponse:
    return JsonResponse(job_as_dict(get_object_or_404(Job, pk=job_id)))


@require_http_methods(["GET", "POST"])
def job_collection(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        return _enqueue(request)
    return _list(request)


@permission_required("jobs.view_job", raise_exception=True)
def _list(request: HttpRequest) -> JsonResponse:
    jobs = Job.objects.all()
    status = request.GET.get("status")
    if status:
        if status not in Status.values:
            return error(f"unknown status {status!r}; use one of {', '.join(Status.values)}")
        jobs = jobs.filter(status=status)
    for field in ("queue", "function"):
        if request.GET.get(field):
            jobs = jobs.filter(**{field: request.GET[field]})
    try:
        limit = int(request.GET.get("limit", "50"))
    except ValueError:
        return error("limit must be a whole number")
    if not 1 <= limit <= MAX_LIMIT:
        return error(f"limit must be from 1 to {MAX_LIMIT}")
    return JsonResponse({"jobs": [job_as_dict(record) for record in jobs[:limit]]})


@permission_required("jobs.add_job", raise_exception=True)
def _enqueue(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return error("the body must be a JSON object")
    if not isinstance(body, dict) or not isinstance(body.get("function"), str):
        return error('the body must be a JSON object with a "function" name')
    args, kwargs = body.get("args", []), body.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return error('"args" must be a list and "kwargs" an object')
    try:
        record = resolve(body["function"]).enqueue(*args, **kwargs)
    except JobNotRegistered as exc:
        return error(str(exc), HTTPStatus.NOT_FOUND)
    except JobsError as exc:
        return error(str(exc))
    return JsonResponse(job_as_dict(record), status=HTTPStatus.ACCEPTED)
