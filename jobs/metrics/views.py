"""The metrics endpoint: Prometheus' text format (or OpenMetrics, when the scraper asks for it).

Refused with 401 unless the request carries ``Authorization: Bearer <JOBS['METRICS_TOKEN']>`` (compared
in constant time) or comes from a signed-in staff user with the ``jobs.view_job`` permission, who may
see the admin dashboard; a signed-in user without them gets 403.
"""

from __future__ import annotations

from http import HTTPStatus

from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client.exposition import choose_encoder

from ..conf import jobs_settings
from . import collector

BEARER = "Bearer "


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    token = _bearer_token(request)
    if token is not None:
        if not _token_matches(token):
            return _refused("the bearer token is not JOBS['METRICS_TOKEN']", HTTPStatus.UNAUTHORIZED)
    elif not request.user.is_authenticated:
        return _refused(
            "sign in as staff, or send Authorization: Bearer <JOBS['METRICS_TOKEN']>", HTTPStatus.UNAUTHORIZED
        )
    elif not (request.user.is_staff and request.user.has_perm("jobs.view_job")):
        return _refused("this needs a staff user with the permission jobs.view_job", HTTPStatus.FORBIDDEN)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(collector.registry()), content_type=content_type)


def _bearer_token(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith(BEARER):
        return None
    return header[len(BEARER) :].strip()


def _token_matches(token: str) -> bool:
    expected = jobs_settings.METRICS_TOKEN
    return bool(expected) and constant_time_compare(token, expected)


def _refused(message: str, status: HTTPStatus) -> HttpResponse:
    response = HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    if status == HTTPStatus.UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="jobs metrics"'
    return response
