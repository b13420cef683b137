"""The admin while Redis hangs (SIGSTOP): a person's action and the dashboard wait out one socket timeout
at most, then leave Redis alone for ``ENQUEUE_RETRY_AFTER``, as the enqueue does; nothing is lost."""

import os
import signal
import time
from contextlib import contextmanager

import pytest

from jobs import dispatch
from jobs.admin import job_admin
from jobs.conf import jobs_settings
from jobs.models import Job, Status
from jobs.upkeep.relay import relay
from tests.helpers import staff_user, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LIST = "/admin/jobs/job/"
DATA = "/admin/jobs/dashboard/data/"


@contextmanager
def hung(redis_server):
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
        dispatch.breaker.close()
        wait_for(lambda: redis_server.client().ping(), timeout=10)


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_retry_all_matching_waits_for_a_hung_redis_once_not_twice_a_batch(client, redis_server, monkeypatch):
    """Each batch used to wait out two socket timeouts (RQ's old job, then the push): 10 s a batch."""
    client.force_login(staff_user("view_job", "retry_job"))
    failed = [
        Job.objects.create(function="tests.jobs.add", args=[n, n], queue="default", status=Status.FAILED)
        for n in range(7)
    ]
    monkeypatch.setattr(job_admin, "RETRY_BATCH", 2)  # four batches
    with hung(redis_server):
        response, seconds = timed(lambda: client.post(f"{LIST}retry-failed/"))
    assert response.status_code == 302
    timeout = jobs_settings.REDIS_SOCKET_TIMEOUT
    assert seconds < 1.5 * timeout + 1, f"{seconds:.1f} s for four batches"
    records = Job.objects.filter(pk__in=[record.pk for record in failed])
    assert {record.status for record in records} == {Status.QUEUED}
    assert all(record.undispatched_since is not None for record in records)
    assert relay() == len(failed)  # nothing lost: pushed once Redis answers


def test_the_dashboard_waits_for_a_hung_redis_once_then_shows_the_ledger_at_once(client, redis_server):
    """Its three live reads each waited out a socket timeout, on every refresh: 15 s an answer."""
    client.force_login(staff_user("view_job"))
    Job.objects.create(function="tests.jobs.add", args=[1, 1], queue="default", status=Status.FAILED)
    timeout = jobs_settings.REDIS_SOCKET_TIMEOUT
    with hung(redis_server):
        first, first_seconds = timed(lambda: client.get(DATA))
        again, again_seconds = timed(lambda: client.get(DATA))
    assert first.status_code == again.status_code == 200
    assert first_seconds < 1.5 * timeout + 1, f"the first answer took {first_seconds:.1f} s"
    assert again_seconds < timeout / 2, f"the next answer took {again_seconds:.1f} s"
    data = again.json()
    default = next(queue for queue in data["queues"] if queue["name"] == "default")
    assert default["ledger"]["failed"] == 1  # the ledger's figures are there
    assert default["redis"] is None and default["error"]
    assert data["workers"]["error"]


def test_a_worker_record_that_does_not_parse_leaves_its_figure_out_not_the_page(client, redis):
    client.force_login(staff_user("view_job"))
    redis.sadd("rq:workers", "rq:worker:odd")
    redis.hset("rq:worker:odd", mapping={"queues": "default", "last_heartbeat": "not-a-date"})
    response = client.get(DATA)
    assert response.status_code == 200
    assert response.json()["workers"]["error"]


def test_a_pause_redis_took_late_is_told_as_maybe_and_recorded_with_who_asked(client, redis_server):
    """The SET was sent on the site's open connection: Redis runs it once it answers again. The person
    was told "unchanged" and nothing was recorded, and then the queue was paused all the same."""
    from django.contrib.admin.models import LogEntry

    from jobs import pause

    person = staff_user("view_job", "pause_queue")
    client.force_login(person)
    pause.paused(["low"])  # the site's connection is open, as a live site's is
    with hung(redis_server):
        response = client.post("/admin/jobs/dashboard/queues/low/pause/", follow=True)
    (said,) = [str(message) for message in response.context["messages"]]
    assert said == (
        "Redis did not answer in time; queue low may be paused once it does: see the queue's state below."
    )
    wait_for(lambda: pause.paused(["low"]) == {"low"}, timeout=10)
    (entry,) = LogEntry.objects.filter(object_id="low")
    assert (entry.user, entry.change_message) == (person, "Asked to pause; Redis did not answer in time.")


def test_a_resume_from_the_command_that_redis_took_late_says_it_may_yet_happen(redis_server):
    from django.core.management import CommandError, call_command

    from jobs import pause

    pause.pause("low")
    with hung(redis_server), pytest.raises(CommandError, match="queue 'low' may be resumed once it does"):
        call_command("jobs_queue", "resume", "low")
    wait_for(lambda: pause.paused(["low"]) == set(), timeout=10)
