"""Enqueue is transactional: the record is written in the caller's transaction and pushed on commit."""

import json
import sys
import threading

import pytest
from django.contrib.auth.models import User
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from jobs import job
from jobs.exceptions import ArgumentNotSerializable, InvalidArguments, InvalidJobDefinition
from jobs.models import Job, Status
from jobs.transport import connection as jobs_connection
from jobs.transport.runner import RUNNER
from jobs.upkeep.relay import relay
from tests import jobs, spawner
from tests.helpers import ROOT, run_worker, worker_env


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


# Several databases: the record's own database's transaction decides, whatever happens to another one.


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_a_job_recorded_on_default_runs_when_another_database_rolls_back():
    with pytest.raises(RuntimeError), transaction.atomic(using="other"):
        User.objects.using("other").create(username="rolled-back")
        record = jobs.add.enqueue(1, 2)
        assert queued_ids() == [str(record.pk)], "default is in autocommit: the record is committed already"
        raise RuntimeError("roll back other")
    assert not User.objects.using("other").exists()
    run_worker(queues=("default",))
    record.refresh_from_db()
    assert (record.status, record.result) == (Status.FINISHED, 3)


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_a_job_waits_for_its_own_databases_commit_not_anothers(redis):
    with transaction.atomic(using="default"):
        with transaction.atomic(using="other"):
            record = jobs.add.enqueue(1, 2)
        assert queued_ids() == [], "pushed when another database committed"
    assert queued_ids() == [str(record.pk)]

    Job.objects.all().delete()
    redis.flushall()
    with pytest.raises(RuntimeError), transaction.atomic(using="default"):
        with transaction.atomic(using="other"):
            User.objects.using("other").create(username="committed")
            jobs.add.enqueue(1, 2)
        raise RuntimeError("roll back default")
    assert User.objects.using("other").filter(username="committed").exists()
    assert Job.objects.count() == 0
    assert queued_ids() == []
    assert not redis.keys("rq:job:*")


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_an_explicit_alias_follows_that_databases_transaction_alone(redis):
    with pytest.raises(RuntimeError), transaction.atomic(using="default"):
        record = jobs.add.using(using="other").enqueue(1, 2)
        raise RuntimeError("roll back default")
    assert queued_ids() == [str(record.pk)]
    assert Job.objects.using("other").filter(pk=record.pk).exists()

    with pytest.raises(RuntimeError), transaction.atomic(using="other"):
        gone = jobs.add.using(using="other").enqueue(3, 4)
        raise RuntimeError("roll back other")
    assert not Job.objects.using("other").filter(pk=gone.pk).exists()
    assert queued_ids() == [str(record.pk)]
    assert not redis.exists(f"rq:job:{gone.pk}")


# Arguments the job cannot take are refused where they are given.


@pytest.mark.django_db
def test_arguments_are_checked_against_the_functions_signature():
    with pytest.raises(InvalidArguments, match="unexpected keyword argument 'self'") as raised:
        jobs.add.enqueue(1, 2, self=3)
    assert raised.value.field == "kwargs"
    with pytest.raises(InvalidArguments, match="missing a required argument: 'b'"):
        jobs.add.enqueue(1)
    with pytest.raises(InvalidArguments, match="too many positional arguments") as raised:
        jobs.add.enqueue_many([(1, 2), (1, 2, 3)])
    assert raised.value.field == "args"
    assert jobs.echo_types.enqueue(1, self=2, x=[3]).kwargs == {"self": 2, "x": [3]}
    assert Job.objects.count() == 1


def test_a_job_name_longer_than_its_column_is_refused_at_definition():
    with pytest.raises(InvalidJobDefinition, match="1 to 255 characters"):
        job(name="x" * 256)(jobs.add.func)


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
    raw = redis.hget(f"rq:job:{record.pk}", "data")  # short: not compressed (tests/test_rq_compat.py)
    func, instance, args, kwargs = json.loads(raw)
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
from tests import jobs, spawner
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
        spawner.popen(command, env=worker_env(GO_FILE=str(go)), cwd=str(ROOT), new_session=False)
        for _ in range(6)
    ]
    go.touch()
    assert [process.wait(timeout=120) for process in processes] == [0] * 6
    outputs = [process.stdout.read().split()[-1] for process in processes]
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
