"""Jobs of a queue that ``RQ_QUEUES`` no longer names (an operator removed or renamed it after they were
enqueued): they wait in the database until it is configured again, and nothing that meets them (the
admin's actions, a release after ``depends_on``, the relay, the reconciler) fails, or holds back the
jobs of the other queues."""

import logging

import pytest
from django.test import Client

from jobs.models import Job, Status
from jobs.transport import connection
from jobs.upkeep import relay as relay_module
from jobs.upkeep.reconcile import reconcile
from jobs.upkeep.relay import relay
from tests import jobs
from tests.helpers import drain, staff_user

LIST = "/admin/jobs/job/"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator():
    client = Client(raise_request_exception=False)
    client.force_login(staff_user("view_job", "cancel_job", "delete_job"))
    return client


@pytest.fixture(autouse=True)
def unsaid(monkeypatch):
    monkeypatch.setattr(relay_module, "_said", set())


def waiting_in(queue, **fields):
    return Job.objects.create(function="tests.jobs.add", args=[1, 2], queue=queue, **fields)


def configure(settings, queue):
    settings.RQ_QUEUES = {**settings.RQ_QUEUES, queue: settings.RQ_QUEUES["default"]}


def test_cancelling_and_deleting_them_in_the_admin_works(operator, redis):
    cancelled, deleted = waiting_in("gone"), waiting_in("gone")
    response = operator.post(f"{LIST}{cancelled.pk}/cancel/")
    assert response.status_code == 302
    assert Job.objects.get(pk=cancelled.pk).status == Status.CANCELLED
    response = operator.post(
        LIST, {"action": "delete_selected", "_selected_action": [deleted.pk], "post": "yes"}
    )
    assert response.status_code == 302
    assert not Job.objects.filter(pk=deleted.pk).exists()


def test_a_job_released_into_a_queue_no_longer_configured_waits_for_it(settings, redis, caplog):
    configure(settings, "later")
    dependency = jobs.add.enqueue(1, 2)
    dependent = jobs.sum_of_dependencies.using(depends_on=dependency, queue="later").enqueue()
    settings.RQ_QUEUES = {name: config for name, config in settings.RQ_QUEUES.items() if name != "later"}

    with caplog.at_level(logging.ERROR, logger="jobs"):
        drain()  # the dependency's end releases the dependent: its push finds no queue
    dependency.refresh_from_db()
    dependent.refresh_from_db()
    assert dependency.status == Status.FINISHED
    assert dependent.status == Status.QUEUED
    assert dependent.undispatched_since is not None
    assert "queue(s) later, which RQ_QUEUES does not name" in caplog.text

    assert relay() == 0  # still not configured: it waits
    configure(settings, "later")
    assert relay() == 1
    drain(queues=("later",))
    dependent.refresh_from_db()
    assert (dependent.status, dependent.result) == (Status.FINISHED, 3)


def test_the_relay_pushes_the_other_queues_jobs_and_says_once_which_queues_are_missing(redis, caplog):
    stranded = [waiting_in("gone", undispatched_since="2026-01-01T00:00:00Z") for _ in range(3)]
    good = jobs.add.enqueue(2, 2)
    Job.objects.filter(pk=good.pk).update(undispatched_since="2026-01-02T00:00:00Z")

    with caplog.at_level(logging.ERROR, logger="jobs"):
        assert relay(limit=2) == 1  # the stranded ones, older, do not fill the relay's batch
        assert relay(limit=2) == 0
    assert caplog.text.count("Jobs of queue(s) gone wait in the database") == 1
    drain()
    assert Job.objects.get(pk=good.pk).status == Status.FINISHED
    assert all(Job.objects.get(pk=record.pk).status == Status.QUEUED for record in stranded)


def test_the_reconciler_passes_over_them_and_still_pushes_the_others(settings, redis):
    settings.JOBS = {**settings.JOBS, "RELAY_GRACE": 0}
    waiting_in("gone")
    lost = jobs.add.enqueue(3, 3)
    redis.delete(f"rq:job:{lost.pk}", "rq:queue:default")  # Redis lost it

    assert reconcile() == 1
    drain()
    assert Job.objects.get(pk=lost.pk).status == Status.FINISHED
    assert not connection.configured("gone")
