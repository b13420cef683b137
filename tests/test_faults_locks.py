"""The upkeep's Redis locks outlive a worker killed during a pass only briefly: the relay's for two
relay intervals, the reconciler's for one of its intervals (the reaper's: ``test_faults_abandoned.py``).
A pass that never releases its lock stands for the killed worker's."""

import time
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone
from redis.lock import Lock

from jobs import transitions
from jobs.models import Job
from jobs.transport import connection as jobs_connection
from jobs.upkeep.reconcile import reconcile
from jobs.upkeep.relay import relay
from tests import jobs
from tests.helpers import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]

RECOVERY = {"ABANDONED_AFTER": 4, "RELAY_GRACE": 1, "RECONCILE_INTERVAL": 2}


def test_a_reconciler_lock_left_by_a_killed_worker_holds_the_next_passes_back_one_interval(
    redis, settings, monkeypatch
):
    settings.JOBS = {**settings.JOBS, **RECOVERY}
    record = jobs.add.enqueue(1, 2)
    Job.objects.filter(pk=record.pk).update(enqueued_at=F("enqueued_at") - timedelta(minutes=1))
    # A pass whose worker was killed during it: it never releases its lock.
    with monkeypatch.context() as killed:
        killed.setattr(Lock, "release", lambda lock: None)
        assert reconcile() == 0
    held_at = time.monotonic()
    queue = jobs_connection.get_queue("default")
    redis.delete(queue.job_class.key_for(str(record.pk)), queue.key)  # then Redis lost the job
    wait_for(lambda: reconcile() == 1, timeout=20, message="a pass once the lock lapsed")
    assert time.monotonic() - held_at < 2 * settings.JOBS["RECONCILE_INTERVAL"]
    assert queue.get_job_ids() == [str(record.pk)]


def test_a_relay_lock_left_by_a_killed_worker_holds_the_next_relays_back_two_intervals(
    redis, settings, monkeypatch
):
    settings.JOBS = {**settings.JOBS, "RELAY_INTERVAL": 1}
    first, second = (jobs.add.enqueue(n, 1) for n in range(2))
    redis.delete(jobs_connection.get_queue("default").key)
    transitions.mark_undispatched([first], timezone.now())  # left to the relay: Redis was down
    # A pass whose worker was killed during it: it pushed, and never released its lock.
    with monkeypatch.context() as killed:
        killed.setattr(Lock, "release", lambda lock: None)
        assert relay() == 1
    held_at = time.monotonic()
    transitions.mark_undispatched([second], timezone.now())  # another one, left to the relay since
    wait_for(lambda: relay() == 1, timeout=20, message="a relay once the lock lapsed")
    assert time.monotonic() - held_at < 3 * settings.JOBS["RELAY_INTERVAL"]
    assert jobs_connection.get_queue("default").get_job_ids() == [str(first.pk), str(second.pk)]
