"""A small JSON API over the job records: status, list and enqueue, for users with the model permissions.

Every answer is JSON, refusals included: ``{"error": message, "field": name or null}`` with 400 (a bad
field), 403 (a missing permission), 404, 405, 413 (a body over Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``)
or 415 (a body that is not sent as JSON). Django's CSRF check still guards every POST, and its refusal is
JSON too: the views are exempt from the middleware's HTML answer and run the same check themselves.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt

from ..decorator import MAX_NAME_LENGTH
from ..exceptions import InvalidArguments, JobNotRegistered, JobsError
from ..models import Job, Status
from ..registry import lookup
from .serializers import job_as_dict

MAX_LIMIT = 500
NOT_JSON = 'send the body as JSON, with "Content-Type: application/json"'
#: The fields of an enqueue request's body; any other is refused rather than ignored.
BODY_FIELDS = ("function", "args", "kwargs")

View = Callable[..., HttpResponse]


def error(message: str, status: int = HTTPStatus.BAD_REQUEST, field: str | None = None) -> JsonResponse:
    return JsonResponse({"error": message, "field": field}, status=status)


class _CsrfCheck(CsrfViewMiddleware):
    """Django's own CSRF check, refusing in JSON (as Django REST framework's ``CSRFCheck`` does)."""

    def _reject(self, request: HttpRequest, reason: str) -> HttpResponse:
        return error(f"CSRF verification failed: {reason}", HTTPStatus.FORBIDDEN)


def _csrf_refusal(request: HttpRequest, view: View, args: Any, kwargs: Any) -> HttpResponse | None:
    check = _CsrfCheck(lambda request: HttpResponse())
    check.process_request(request)
    return check.process_view(request, view, args, kwargs)


def api_view(*methods: str) -> Callable[[View], View]:
    """Answer only ``methods``, and answer every refusal in JSON rather than Django's HTML pages."""

    def decorator(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = error(
                    f"method {_short(request.method or '')} is not allowed here; use {' or '.join(methods)}",
                    HTTPStatus.METHOD_NOT_ALLOWED,
                )
                response["Allow"] = ", ".join(methods)
                return response
            try:
                # Django's CSRF check parses a form body (request.POST) before the view looks at it.
                refused = _csrf_refusal(request, view, args, kwargs)
                if refused is not None:
                    return refused
                return view(request, *args, **kwargs)
            except PermissionDenied as exc:
                return error(str(exc) or "you do not have the permission this needs", HTTPStatus.FORBIDDEN)
            except Http404 as exc:
                return error(str(exc) or "not found", HTTPStatus.NOT_FOUND)
            except RequestDataTooBig:
                return error("the body is too large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            except MultiPartParserError:
                return error(NOT_JSON, HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
            except SuspiciousOperation as exc:  # too many fields or files in the query string or a form
                return error(f"the request cannot be read: {exc}")

        return wrapped

    return decorator


def permission(request: HttpRequest, codename: str) -> None:
    if not request.user.has_perm(f"jobs.{codename}"):
        raise PermissionDenied(f"this needs a signed-in user with the permission jobs.{codename}")


@api_view("GET")
def job_detail(request: HttpRequest, job_id: uuid.UUID) -> JsonResponse:
    permission(request, "view_job")
    return JsonResponse(job_as_dict(get_object_or_404(Job, pk=job_id)))


@api_view("GET", "POST")
def job_collection(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        return _enqueue(request)
    return _list(request)


@api_view("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Any other address under the API: a JSON 404, not the site's HTML page."""
    return error("no such address in the jobs API", HTTPStatus.NOT_FOUND)


def _list(request: HttpRequest) -> JsonResponse:
    permission(request, "view_job")
    jobs = Job.objects.all()
    status = request.GET.get("status")
    if status:
        if status not in Status.values:
            return error(
                f"unknown status {_short(status)}; use one of {', '.join(Status.values)}", field="status"
            )
        jobs = jobs.filter(status=status)
    for field in ("queue", "function"):
        value = request.GET.get(field)
        if value:
            if "\x00" in value:
                return error(f"{field} must not hold a NUL character", field=field)
            jobs = jobs.filter(**{field: value})
    try:
        limit = int(request.GET.get("limit", "50"))
    except ValueError:
        return error("limit must be a whole number", field="limit")
    if not 1 <= limit <= MAX_LIMIT:
        return error(f"limit must be from 1 to {MAX_LIMIT}", field="limit")
    return JsonResponse({"jobs": [job_as_dict(record) for record in jobs[:limit]]})


def _enqueue(request: HttpRequest) -> JsonResponse:
    permission(request, "add_job")
    call = _read_call(request)
    if isinstance(call, JsonResponse):
        return call
    name, args, kwargs = call
    try:
        job_function = lookup(name)
    except JobNotRegistered as exc:
        return error(str(exc), HTTPStatus.NOT_FOUND, field="function")
    try:
        record = job_function.enqueue(*args, **kwargs)
    except InvalidArguments as exc:
        return error(str(exc), field=exc.field)
    except JobsError as exc:
        return error(str(exc))
    return JsonResponse(job_as_dict(record), status=HTTPStatus.ACCEPTED)


def _read_call(request: HttpRequest) -> tuple[str, list, dict[str, Any]] | JsonResponse:
    """The function name and arguments an enqueue request's body holds, or the answer that refuses it."""
    if request.content_type != "application/json":
        return error(NOT_JSON, HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
    body = _parse(request.body)
    if isinstance(body, JsonResponse):
        return body
    if not isinstance(body, dict):
        return error('the body must be a JSON object with a "function" name')
    unknown = [name for name in body if name not in BODY_FIELDS]
    if unknown:
        return error(
            f"unknown field {_short(unknown[0])}; the fields are {', '.join(BODY_FIELDS)}",
            field=unknown[0][:MAX_NAME_LENGTH],
        )
    name, args, kwargs = body.get("function"), body.get("args", []), body.get("kwargs", {})
    if not isinstance(name, str) or not name:
        return error('the body must be a JSON object with a "function" name, a string', field="function")
    if len(name) > MAX_NAME_LENGTH:
        return error(f"function is longer than {MAX_NAME_LENGTH} characters", field="function")
    if not isinstance(args, list):
        return error('"args" must be a list', field="args")
    if not isinstance(kwargs, dict):
        return error('"kwargs" must be an object', field="kwargs")
    return name, args, kwargs


def _parse(raw: bytes) -> Any:
    """The body's JSON value, or the 400 answer that says why it is not JSON (UTF-8, RFC 8259)."""
    try:
        return json.loads(raw.decode("utf-8") if raw else "{}", parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        return error(f"the body must be a JSON object in UTF-8: {exc.reason} at byte {exc.start}")
    except RecursionError:
        return error("the body must be a JSON object nested less deeply")
    except ValueError as exc:
        return error(f"the body must be a JSON object: {exc}")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _short(text: str, length: int = 100) -> str:
    """``text`` quoted and cut to ``length`` characters, for messages that echo a request."""
    return repr(text if len(text) <= length else text[:length] + "…")
