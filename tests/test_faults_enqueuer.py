"""The process that enqueues dies between its commit and its push (a web worker killed by its server's
timeout or by the OOM killer at that moment): a real ``manage.py shell`` process SIGKILLs itself at the
commit, before ``enqueue()``'s push runs. The record waits, in no queue and not marked undispatched, and
a worker's reconciler pushes it; it runs once."""

import json
import signal
import subprocess
import sys
import uuid

import pytest

from jobs.models import Job, Status
from jobs.transport import connection as jobs_connection
from tests import fault_jobs
from tests.helpers import ROOT, WorkerProcess, wait_for, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

#: Enqueues in a transaction and dies at its commit: ``on_commit`` callbacks run in the order they were
#: registered, and this one comes before the push that ``enqueue()`` registers.
ENQUEUE_AND_DIE = """
import os, signal
from django.db import transaction
from tests import fault_jobs

with transaction.atomic():
    transaction.on_commit(lambda: os.kill(os.getpid(), signal.SIGKILL))
    print(fault_jobs.count_run.enqueue({tag!r}).pk, flush=True)
"""


def test_a_job_whose_enqueuer_died_between_its_commit_and_its_push_is_pushed_by_the_reconciler():
    tag = uuid.uuid4().hex[:8]
    enqueuer = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", ENQUEUE_AND_DIE.format(tag=tag)],
        env=worker_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert enqueuer.returncode == -signal.SIGKILL, enqueuer.stderr
    record = Job.objects.get(pk=enqueuer.stdout.split()[-1])  # after what the shell says of itself
    assert (record.status, record.undispatched_since) == (Status.QUEUED, None)  # committed, not pushed
    redis = jobs_connection.get_connection("default")
    assert not redis.exists(f"rq:job:{record.pk}")

    recovery = {"RELAY_GRACE": 1, "RECONCILE_INTERVAL": 1}
    with WorkerProcess(
        "--worker-class", "jobs.worker.ThreadedWorker", JOBS_TEST_JOBS=json.dumps(recovery)
    ) as worker:
        wait_for(
            lambda: Job.objects.get(pk=record.pk).status == Status.FINISHED,
            timeout=30,
            message=lambda: f"the reconciler to push the record: {''.join(worker.lines)}",
        )
    assert fault_jobs.runs_of(tag) == 1
