"""Redis hung, not down: after the first enqueue that times out, requests that enqueue skip Redis for
``ENQUEUE_RETRY_AFTER`` seconds, and every record runs once when Redis resumes."""

import os
import signal
import time
import uuid

import pytest
from django.http import HttpRequest, JsonResponse
from django.test import override_settings
from django.urls import path

from jobs import dispatch
from jobs.conf import jobs_settings
from jobs.models import Job, Status
from tests import fault_jobs
from tests.helpers import run_worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def enqueue_view(request: HttpRequest) -> JsonResponse:
    record = fault_jobs.count_run.enqueue(request.GET["name"])
    return JsonResponse({"id": str(record.pk)}, status=202)


urlpatterns = [path("enqueue", enqueue_view)]


@override_settings(ROOT_URLCONF=__name__)
def test_requests_skip_a_hung_redis_after_the_first_and_every_record_runs_once(client, redis_server):
    tag = uuid.uuid4().hex[:8]
    names = [f"{tag}-{n}" for n in range(51)]
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        first = time.monotonic()
        assert client.get("/enqueue", {"name": names[0]}).status_code == 202
        first = time.monotonic() - first
        assert first >= jobs_settings.REDIS_SOCKET_TIMEOUT * 0.9, "the first push did not wait for Redis"
        # It waits one socket timeout, not one per retry of a redis-py default (10 of them in 8.2).
        assert first < jobs_settings.REDIS_SOCKET_TIMEOUT * 1.5 + 1, f"the first push took {first:.1f} s"
        latencies = []
        for name in names[1:]:
            started = time.monotonic()
            assert client.get("/enqueue", {"name": name}).status_code == 202
            latencies.append(time.monotonic() - started)
        # A request that touched the hung Redis would wait out the socket timeout (5 s); one that skips
        # it takes its INSERT's time, a second at worst on this machine under the whole suite's load.
        assert max(latencies) < jobs_settings.REDIS_SOCKET_TIMEOUT / 2, latencies
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
        dispatch.breaker.close()
    assert Job.objects.undispatched().count() == len(names)
    wait_for(lambda: redis_server.client().ping(), timeout=10)
    run_worker("--worker-class", "jobs.worker.SimpleWorker", queues=("default",))
    statuses = Job.objects.filter(function=fault_jobs.count_run.name).values_list("status", flat=True)
    assert list(statuses) and set(statuses) == {Status.FINISHED}
    assert [fault_jobs.runs_of(name) for name in names] == [1] * len(names)
