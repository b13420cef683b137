"""Pausing and resuming a queue from the admin dashboard: permission, POST + CSRF, history, a real worker."""

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client

from jobs import pause
from jobs.models import Job, Status
from jobs.transport import connection as jobs_connection
from tests import jobs
from tests.helpers import drain, staff_user

PAGE = "/admin/jobs/dashboard/"


def pause_url(queue):
    return f"{PAGE}queues/{queue}/pause/"


def resume_url(queue):
    return f"{PAGE}queues/{queue}/resume/"


def staff_client(*codenames, username="staff", **client_options):
    user = staff_user(*codenames, username=username)
    client = Client(**client_options)
    client.force_login(user)
    return client, user


@pytest.fixture
def operator(db):
    return staff_client("view_job", "pause_queue", username="operator")


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


def test_pause_and_resume_buttons_change_the_queue_and_are_logged(operator):
    client, user = operator
    page = client.get(PAGE).content.decode()
    assert f'action="{pause_url("low")}"' in page

    response = client.post(pause_url("low"), follow=True)
    assert response.redirect_chain[-1][0] == PAGE
    assert messages_of(response) == ["Queue low is paused: its jobs stay queued until it is resumed."]
    assert pause.paused(["default", "high", "low"]) == {"low"}
    assert f'action="{resume_url("low")}"' in response.content.decode()

    response = client.post(pause_url("low"), follow=True)
    assert messages_of(response) == ["Queue low was already paused."]

    response = client.post(resume_url("low"), follow=True)
    assert messages_of(response) == ["Queue low is resumed."]
    assert pause.paused(["low"]) == set()
    entries = LogEntry.objects.filter(object_id="low").order_by("action_time")
    assert [(e.user_id, e.object_repr, e.change_message) for e in entries] == [
        (user.pk, "queue low", "Paused."),
        (user.pk, "queue low", "Resumed."),
    ]


def test_a_paused_queue_keeps_its_jobs_from_a_real_worker_until_resumed(transactional_db):
    client, _ = staff_client("view_job", "pause_queue")
    client.post(pause_url("default"))
    record = jobs.add.enqueue(2, 3)
    drain()
    record.refresh_from_db()
    assert record.status == Status.QUEUED, "a paused queue's job ran"
    assert jobs_connection.get_queue("default").get_job_ids() == [str(record.pk)]

    client.post(resume_url("default"))
    drain()
    record.refresh_from_db()
    assert (record.status, record.result) == (Status.FINISHED, 5)


def test_staff_without_the_permission_see_no_button_and_are_refused(db):
    client, _ = staff_client("view_job")
    page = client.get(PAGE).content.decode()
    assert "queues/default/pause/" not in page
    assert client.post(pause_url("default")).status_code == 403
    assert pause.paused(["default"]) == set()
    assert not LogEntry.objects.exists()


def test_only_post_with_a_csrf_token_is_accepted(db):
    client, _ = staff_client("view_job", "pause_queue", enforce_csrf_checks=True)
    assert client.get(pause_url("default")).status_code == 405
    assert client.post(pause_url("default")).status_code == 403
    assert pause.paused(["default"]) == set()


def test_an_unknown_queue_is_404_and_changes_nothing(operator):
    client, _ = operator
    assert client.post(pause_url("nowhere")).status_code == 404
    assert not LogEntry.objects.exists()


def test_redis_down_is_reported_and_changes_nothing(operator, redis_server):
    client, _ = operator
    redis_server.stop()
    response = client.post(pause_url("default"), follow=True)
    assert response.status_code == 200
    (message,) = messages_of(response)
    assert message.startswith("Redis did not answer; queue default is unchanged")
    assert not LogEntry.objects.exists()
    assert not Job.objects.exists()
