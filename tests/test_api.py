import json

import pytest
from django.contrib.auth.models import Permission, User

from jobs.models import Job, Status
from tests import jobs

LIST = "/jobs/api/jobs/"


def user_with(*codenames):
    user = User.objects.create_user("u", password="pw")
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="jobs", codename__in=codenames)
    )
    return user


@pytest.fixture
def viewer(client, db):
    client.force_login(user_with("view_job"))
    return client


def test_anonymous_users_get_nothing(client, db):
    record = jobs.add.enqueue(1, 2)
    assert client.get(LIST).status_code == 403
    assert client.get(f"{LIST}{record.pk}/").status_code == 403
    assert (
        client.post(LIST, {"function": "tests.jobs.add"}, content_type="application/json").status_code == 403
    )


def test_status_and_list(viewer):
    record = jobs.add.enqueue(1, 2)
    jobs.boom.enqueue()
    detail = viewer.get(f"{LIST}{record.pk}/").json()
    assert detail["id"] == str(record.pk)
    assert detail["status"] == "queued"
    assert detail["function"] == "tests.jobs.add"
    assert len(viewer.get(LIST).json()["jobs"]) == 2
    assert [j["function"] for j in viewer.get(LIST + "?function=tests.jobs.boom").json()["jobs"]] == [
        "tests.jobs.boom"
    ]
    Job.objects.filter(pk=record.pk).update(status=Status.FAILED)
    assert [j["id"] for j in viewer.get(LIST + "?status=failed").json()["jobs"]] == [str(record.pk)]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?limit=x", "limit must be a whole number"),
        ("?limit=0", "limit must be from 1"),
        ("?status=odd", "unknown"),
    ],
)
def test_bad_list_parameters_are_400(viewer, query, message):
    response = viewer.get(LIST + query)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_unknown_job_is_404(viewer):
    assert viewer.get(f"{LIST}00000000-0000-0000-0000-000000000000/").status_code == 404


@pytest.fixture
def enqueuer(client, db):
    client.force_login(user_with("add_job"))
    return client


def post(client, body):
    return client.post(
        LIST, json.dumps(body) if not isinstance(body, str) else body, content_type="application/json"
    )


def test_enqueue_through_the_api(enqueuer):
    response = post(enqueuer, {"function": "tests.jobs.add", "args": [1], "kwargs": {"b": 2}})
    assert response.status_code == 202
    record = Job.objects.get(pk=response.json()["id"])
    assert (record.args, record.kwargs) == ([1], {"b": 2})


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("not json", 400, "must be a JSON object"),
        ([], 400, 'with a "function" name'),
        ({"function": "tests.jobs.add", "args": {}}, 400, '"args" must be a list'),
        ({"function": "tests.jobs.not_a_job"}, 404, "is not a registered job"),
        ({"function": "os.system", "args": ["true"]}, 404, "is not a registered job"),
    ],
)
def test_enqueue_refusals(enqueuer, body, status, message):
    response = post(enqueuer, body)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert Job.objects.count() == 0
