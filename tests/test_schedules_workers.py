"""Recurring jobs with real worker processes: three workers fire an every-second schedule once per tick,
the death of the worker that holds the scheduling role does not stop the ticks, and a schedule disabled
in the admin stops."""

import json
import os
import signal
import time
import uuid
from datetime import timedelta
from itertools import pairwise

import pytest
from django.test import Client
from django.utils import timezone

from jobs.models import Job, Schedule, Status
from jobs.transport import connection as jobs_connection
from jobs.upkeep.schedules import holder
from tests import fault_jobs
from tests.helpers import WorkerProcess, staff_user, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

#: The window the every-second schedule is counted over, in seconds.
WINDOW = 6
#: Ticks go on within this many seconds of the death of the worker that held the scheduling role.
TAKEOVER = 10
#: The killed holder may die with a run of its own: started (the reaper retries it once it is found
#: abandoned, as the schedule's job has a second attempt), or recorded and not yet pushed (the
#: reconciler pushes it again); in seconds here, not the defaults' minute.
RECOVERY = {"ABANDONED_AFTER": 8, "RELAY_GRACE": 2, "RECONCILE_INTERVAL": 2}


def ticks_of(schedule):
    return list(Job.objects.filter(schedule=schedule).order_by("tick").values_list("tick", flat=True))


@pytest.mark.parametrize("worker_class", ["jobs.worker.Worker", "jobs.worker.ThreadedWorker"])
def test_three_workers_fire_each_tick_once_and_outlive_the_role_holder(worker_class):
    tag = uuid.uuid4().hex[:8]
    redis = jobs_connection.get_connection("default")
    names = [f"sched-{tag}-{n}" for n in range(3)]
    workers = {
        name: WorkerProcess(
            "--worker-class",
            worker_class,
            "--name",
            name,
            queues=("default",),
            JOBS_TEST_JOBS=json.dumps(RECOVERY),
        )
        for name in names
    }
    try:
        wait_for(lambda: len(redis.smembers("rq:workers")) == 3, timeout=60, message="three workers")
        schedule = Schedule(
            # count_run_for(tag, 0): count_run with a second attempt, for a run the killed holder held.
            name="each-second",
            function="tests.fault_jobs.count_run_for",
            args=[tag, 0],
            every=timedelta(seconds=1),
        )
        schedule.full_clean()
        schedule.next_tick = schedule.first_tick_after(timezone.now())
        schedule.save()
        wait_for(lambda: ticks_of(schedule), timeout=15, message="the first tick")

        start = timezone.now()
        time.sleep(WINDOW)  # the window measured, not a wait for a condition
        end = timezone.now()
        wait_for(
            lambda: Schedule.objects.get(pk=schedule.pk).last_tick >= end - timedelta(seconds=1),
            timeout=10,
            message="the window's last tick",
        )
        in_window = [tick for tick in ticks_of(schedule) if start < tick <= end]
        assert WINDOW - 1 <= len(in_window) <= WINDOW + 1, in_window

        # SIGKILL the worker that holds the scheduling role: another takes it, and no tick is lost.
        dead = holder()
        assert dead in workers
        os.killpg(workers[dead].pid, signal.SIGKILL)
        workers[dead].process.wait(timeout=10)
        killed_at = timezone.now()
        wait_for(
            lambda: Job.objects.filter(schedule=schedule, enqueued_at__gt=killed_at).exists(),
            timeout=TAKEOVER,
            message="a tick fired after the holder's death",
        )
        assert holder() not in (None, dead)

        # Disabled in the admin, it stops.
        client = Client()
        client.force_login(staff_user("view_schedule", "enable_schedule"))
        response = client.post(
            "/admin/jobs/schedule/", {"action": "disable_selected", "_selected_action": [schedule.pk]}
        )
        assert response.status_code == 302
        disabled_at = timezone.now()
        time.sleep(3)  # three passes of the role's holder, that must fire nothing
        assert not Job.objects.filter(schedule=schedule, enqueued_at__gt=disabled_at).exists()

        ticks = ticks_of(schedule)
        runs = Job.objects.filter(schedule=schedule)
        wait_for(
            lambda: runs.filter(status=Status.FINISHED).count() == len(ticks),
            timeout=60,
            message=lambda: f"every run to finish: {sorted(runs.values_list('status', 'attempts'))}",
        )
    finally:
        for worker in workers.values():
            worker.stop()
    # One job per tick, every tick from the first to the last (the holder's death included), each run
    # once; a run the holder died in may have run again on its retry (at least once).
    assert len(set(ticks)) == len(ticks)
    assert [later - earlier for earlier, later in pairwise(ticks)] == [timedelta(seconds=1)] * (
        len(ticks) - 1
    )
    retries = sum(attempts - 1 for attempts in runs.values_list("attempts", flat=True))
    assert len(ticks) <= fault_jobs.runs_of(tag) <= len(ticks) + retries
