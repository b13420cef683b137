"""django-rq's own pages (``django_rq.urls``, which the demo includes) need only a staff user, not the
``jobs`` permissions. What they do to RQ's jobs cannot make the ledger lie: a job requeued there that the
ledger holds failed does not run, and jobs emptied or deleted there while their records wait are pushed
again by the reconciler."""

import pytest
from django.test import Client
from django_rq.settings import get_queues_list

from jobs.models import Status
from jobs.upkeep.reconcile import reconcile
from tests import jobs
from tests.helpers import drain, staff_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff():
    client = Client(raise_request_exception=False)
    client.force_login(staff_user())  # staff, without any permission of the jobs app
    return client


@pytest.fixture
def reconciling(settings):
    settings.JOBS = {**settings.JOBS, "RELAY_GRACE": 0}


def page(name, *parts):
    index = [queue["name"] for queue in get_queues_list()].index(name)
    return f"/django-rq/queues/{index}/" + "".join(f"{part}/" for part in parts)


def test_its_pages_show_the_jobs_of_the_ledger(staff, redis):
    failed = jobs.boom.enqueue()
    drain()
    waiting = jobs.add.enqueue(1, 2)
    for address in (
        page("default"),
        page("default", "failed"),
        page("default", str(failed.pk)),
        page("default", str(waiting.pk)),
    ):
        response = staff.get(address)
        assert response.status_code == 200, (address, response.content[:500])
    assert str(failed.pk) in staff.get(page("default", "failed")).content.decode()


def test_a_failed_job_requeued_there_does_not_run_while_the_ledger_says_failed(staff, redis):
    record = jobs.boom.enqueue()
    drain()
    record.refresh_from_db()
    assert (record.status, record.attempts) == (Status.FAILED, 1)

    response = staff.post(page("default", str(record.pk), "requeue"))
    assert response.status_code == 302
    assert str(record.pk) in [job_id.decode() for job_id in redis.lrange("rq:queue:default", 0, -1)]
    drain()
    record.refresh_from_db()
    assert (record.status, record.attempts) == (Status.FAILED, 1)  # not claimed: not run again


@pytest.mark.parametrize("action", ["empty the queue", "delete the job"])
def test_waiting_jobs_emptied_or_deleted_there_are_pushed_again(staff, redis, reconciling, action):
    record = jobs.add.enqueue(1, 2)
    if action == "empty the queue":
        address = page("default", "empty")
    else:
        address = page("default", str(record.pk), "delete")
    assert staff.post(address).status_code == 302
    assert not redis.exists(f"rq:job:{record.pk}")

    assert reconcile() == 1
    drain()
    record.refresh_from_db()
    assert (record.status, record.result) == (Status.FINISHED, 3)
