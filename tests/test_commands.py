"""Management commands of the app, run through ``call_command`` against the real Redis and database."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from jobs.models import Job
from jobs.transport import connection as jobs_connection
from tests import jobs


def relay_command(*args: str) -> str:
    out = StringIO()
    call_command("jobs_relay", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_jobs_relay_pushes_every_waiting_record_once(redis_server):
    redis_server.stop()
    with transaction.atomic():
        records = [jobs.add.enqueue(i, i) for i in range(5)]
    assert Job.objects.undispatched().count() == 5

    redis_server.start()
    assert relay_command("--batch-size", "2") == "Pushed 5 record(s) to Redis; 0 still waiting.\n"
    queued = jobs_connection.get_queue("default").get_job_ids()
    assert sorted(queued) == sorted(str(record.pk) for record in records)
    assert relay_command() == "Pushed 0 record(s) to Redis; 0 still waiting.\n"
    assert len(jobs_connection.get_queue("default").get_job_ids()) == 5, "pushed twice"


@pytest.mark.django_db(transaction=True)
def test_jobs_relay_reports_an_unreachable_redis_and_keeps_the_records(redis_server):
    redis_server.stop()
    with transaction.atomic():
        jobs.add.enqueue(1, 2)
    with pytest.raises(CommandError, match=r"Redis is unreachable .*1 record\(s\) still waiting"):
        relay_command()
    assert Job.objects.undispatched().count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_jobs_relay_refuses_a_batch_size_that_is_not_a_positive_integer(value):
    with pytest.raises(CommandError, match=r"--batch-size: .* is not a whole number of at least 1"):
        relay_command("--batch-size", value)
