"""Enqueue is transactional: the record is written in the caller's transaction and pushed on commit."""

import json
import subprocess
import sys
import threading
import zlib

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from jobs.exceptions import ArgumentNotSerializable, InvalidJobDefinition
from jobs.models import Job, Status
from jobs.transport import connection as jobs_connection
from jobs.transport.runner import RUNNER
from jobs.upkeep.relay import relay
from tests import jobs
from tests.helpers import ROOT, worker_env


def queued_ids(queue="default"):
    return jobs_connection.get_queue(queue).get_job_ids()


@pytest.mark.django_db(transaction=True)
def test_push_happens_only_when_the_transaction_commits():
    with transaction.atomic():
        record = jobs.add.enqueue(1, 2)
        assert Job.objects.filter(pk=record.pk).exists()
        assert queued_ids() == []
    assert queued_ids() == [str(record.pk)]


@pytest.mark.django_db(transaction=True)
def test_rolled_back_transaction_leaves_no_job_anywhere(redis):
    with pytest.raises(RuntimeError), transaction.atomic():
        jobs.add.enqueue(1, 2)
        raise RuntimeError("roll back")
    assert Job.objects.count() == 0
    assert queued_ids() == []
    assert not [key for key in redis.keys("rq:job:*")]


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_push_follows_the_commit_of_the_records_own_database():
    with transaction.atomic(using="other"):
        with transaction.atomic(using="default"):
            record = jobs.add.using(using="other").enqueue(1, 2)
        assert queued_ids() == [], "pushed when another database committed"
    assert queued_ids() == [str(record.pk)]
    assert Job.objects.using("other").filter(pk=record.pk).exists()
    assert not Job.objects.using("default").filter(pk=record.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_enqueue_returns_the_record_at_once_inside_atomic():
    with transaction.atomic():
        record = jobs.add.enqueue(1, 2)
        assert record.pk is not None
        assert record.status == Status.QUEUED
        assert Job.objects.get(pk=record.pk).function == "tests.jobs.add"


@pytest.mark.django_db(transaction=True)
def test_payload_in_redis_is_json_naming_the_registered_function(redis):
    record = jobs.add.enqueue(1, 2)
    raw = redis.hget(f"rq:job:{record.pk}", "data")
    func, instance, args, kwargs = json.loads(zlib.decompress(raw))
    assert func == RUNNER
    assert instance is None
    assert args[:4] == [str(record.pk), "tests.jobs.add", [1, 2], {}]
    assert kwargs == {}


@pytest.mark.django_db
def test_enqueue_costs_one_statement(django_assert_num_queries):
    with django_assert_num_queries(1):
        jobs.noop.enqueue()


@pytest.mark.django_db
def test_bulk_enqueue_costs_one_statement_whatever_the_batch_size():
    connection = connections["default"]
    with CaptureQueriesContext(connection) as small:
        jobs.add.enqueue_many([(i, i) for i in range(10)])
    with CaptureQueriesContext(connection) as large:
        jobs.add.enqueue_many([(i, i) for i in range(2000)])
    assert len(small) == len(large) == 1
    assert Job.objects.count() == 2010


@pytest.mark.django_db(transaction=True)
def test_bulk_enqueue_pushes_every_job_in_one_go():
    records = jobs.add.enqueue_many([[1, 2], ([3], {"b": 4}), (5, 6)])
    assert [r.args for r in records] == [[1, 2], [3], [5, 6]]
    assert records[1].kwargs == {"b": 4}
    assert sorted(queued_ids()) == sorted(str(r.pk) for r in records)


@pytest.mark.django_db(transaction=True)
def test_refused_argument_names_the_argument_and_writes_nothing(redis):
    with pytest.raises(ArgumentNotSerializable, match="argument 'b' is of type set"):
        jobs.add.enqueue(1, b={2})
    with pytest.raises(ArgumentNotSerializable, match=r"args\[1\] is of type object"):
        jobs.add.enqueue_many([(1, 2), (1, object())])
    assert Job.objects.count() == 0
    assert queued_ids() == []


@pytest.mark.django_db
def test_unknown_queue_is_refused():
    with pytest.raises(InvalidJobDefinition, match="names queue 'nowhere', which is not in RQ_QUEUES"):
        jobs.add.using(queue="nowhere").enqueue(1, 2)
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_enqueue_many_refuses_malformed_calls():
    with pytest.raises(InvalidJobDefinition, match="list of arguments or an"):
        jobs.add.enqueue_many([1, 2])
    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_delay_and_at_schedule_the_job_in_rqs_scheduled_registry():
    from datetime import timedelta

    from django.utils import timezone

    later = jobs.add.using(delay=timedelta(minutes=5)).enqueue(1, 2)
    at = jobs.add.using(at=timezone.now() + timedelta(hours=1)).enqueue(1, 2)
    assert later.status == at.status == Status.SCHEDULED
    registry = jobs_connection.get_queue("default").scheduled_job_registry
    assert set(registry.get_job_ids()) == {str(later.pk), str(at.pk)}
    assert queued_ids() == []


@pytest.mark.django_db(transaction=True)
def test_redis_down_at_commit_keeps_the_record_for_the_relay(redis_server):
    redis_server.stop()
    with transaction.atomic():
        record = jobs.add.enqueue(1, 2)
    # The commit went through without an exception, and the caller has its record.
    stored = Job.objects.get(pk=record.pk)
    assert stored.status == Status.QUEUED
    assert stored.undispatched_since is not None
    assert not record.is_dispatched

    redis_server.start()
    assert queued_ids() == []
    assert relay() == 1
    assert queued_ids() == [str(record.pk)]
    assert Job.objects.get(pk=record.pk).undispatched_since is None
    assert relay() == 0, "pushed twice"


@pytest.mark.django_db(transaction=True)
def test_unique_key_returns_the_active_job():
    first = jobs.unique_by_name.enqueue("a")
    second = jobs.unique_by_name.enqueue("a")
    other = jobs.unique_by_name.enqueue("b")
    assert second.pk == first.pk
    assert other.pk != first.pk
    assert Job.objects.filter(unique_key="unique:a").count() == 1
    assert queued_ids() == [str(first.pk), str(other.pk)]


@pytest.mark.django_db(transaction=True)
def test_unique_key_is_free_again_once_the_job_is_final():
    first = jobs.unique_by_name.enqueue("a")
    Job.objects.filter(pk=first.pk).update(status=Status.FINISHED)
    assert jobs.unique_by_name.enqueue("a").pk != first.pk


@pytest.mark.django_db(transaction=True)
def test_unique_key_holds_under_concurrent_enqueues():
    barrier = threading.Barrier(8)
    results, errors = [], []

    def enqueue():
        try:
            barrier.wait()
            with transaction.atomic():
                results.append(jobs.unique_by_name.enqueue("race").pk)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=enqueue) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len(results) == 8
    assert len(set(results)) == 1
    assert Job.objects.filter(unique_key="unique:race").count() == 1
    assert len(queued_ids()) == 1


ENQUEUE_WHEN_TOLD = """
import os, time
from django.db import transaction
from tests import jobs
while not os.path.exists(os.environ["GO_FILE"]):
    time.sleep(0.005)
with transaction.atomic():
    print(jobs.unique_by_name.enqueue("process-race").pk)
"""


@pytest.mark.django_db(transaction=True)
def test_unique_key_holds_when_many_processes_enqueue_at_once(tmp_path):
    go = tmp_path / "go"
    command = [sys.executable, str(ROOT / "manage.py"), "shell", "-c", ENQUEUE_WHEN_TOLD]
    processes = [
        subprocess.Popen(
            command, env=worker_env(GO_FILE=str(go)), cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    go.touch()
    outputs = [process.communicate(timeout=120)[0].split()[-1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 6
    assert len(set(outputs)) == 1, outputs
    assert Job.objects.filter(unique_key="unique:process-race").count() == 1
    assert queued_ids() == outputs[:1]


@pytest.mark.django_db(transaction=True)
def test_redis_that_never_answers_does_not_hang_the_commit(settings):
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the backlog, nothing is ever answered
    port = silent.getsockname()[1]
    settings.RQ_QUEUES = {
        name: {**config, "URL": f"redis://127.0.0.1:{port}/0"} for name, config in settings.RQ_QUEUES.items()
    }
    settings.JOBS = {"REDIS_SOCKET_TIMEOUT": 0.5, "REDIS_CONNECT_TIMEOUT": 0.5}
    outcome = {}

    def enqueue():
        try:
            with transaction.atomic():
                outcome["record"] = jobs.add.enqueue(1, 2)
        finally:
            connections.close_all()

    thread = threading.Thread(target=enqueue, daemon=True)
    thread.start()
    thread.join(timeout=60)
    silent.close()
    assert not thread.is_alive(), "the commit hook hung on a Redis that does not answer"
    assert Job.objects.get(pk=outcome["record"].pk).undispatched_since is not None
