import json
import subprocess
import sys

import pytest
from django.contrib.auth.models import Permission, User

from jobs.exceptions import InvalidArguments
from jobs.models import Job, Status
from tests import jobs
from tests.helpers import ROOT, worker_env

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


# Hostile input: every refusal is a JSON 4xx naming the field, and nothing is recorded anywhere.


def nothing_recorded(redis):
    assert Job.objects.count() == 0
    assert not redis.keys("rq:job:*")
    assert not [key for key in redis.keys("rq:queue:*")]


def refusal(response, status, field):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "field"}
    assert body["field"] == field
    return body["error"]


def nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        (
            {"function": "tests.jobs.add", "args": [1, 2], "kwargs": {"self": 1}},
            400,
            "kwargs",
            "unexpected keyword argument 'self'",
        ),
        (
            {"function": "tests.jobs.add", "args": [1], "kwargs": {"a": 1, "b": 2}},
            400,
            "kwargs",
            "multiple values",
        ),
        ({"function": "tests.jobs.add", "args": [1, 2, 3]}, 400, "args", "too many positional"),
        ({"function": "tests.jobs.add", "args": [1]}, 400, "args", "missing a required argument: 'b'"),
        ({"function": "tests.jobs.echo_types", "args": [nested(200)]}, 400, "args", "nested more than 64"),
        ({"function": "tests.jobs.echo_types", "args": ["a\x00b"]}, 400, "args", "'\\x00' at position 1"),
        ({"function": "tests.jobs.echo_types", "kwargs": {"k": {"x\x00": 1}}}, 400, "kwargs", "'\\x00'"),
        ({"function": "tests.jobs.echo_types", "kwargs": {"k\x00": 1}}, 400, "kwargs", "'\\x00'"),
        ({"function": "tests.jobs.echo_types", "args": ["\ud800"]}, 400, "args", "'\\ud800'"),
        ({"function": "tests.jobs.echo_types", "args": ["x" * 300_000]}, 400, "args", "MAX_ARGUMENTS_BYTES"),
        (
            {"function": "tests.jobs.echo_types", "args": [{"__jobs__": ["model", "auth.user", 1]}]},
            400,
            "args",
            "reserved key",
        ),
        (
            {"function": "tests.jobs.add", "args": [1, 2], "queue": "high"},
            400,
            "queue",
            "unknown field 'queue'",
        ),
        ({"function": 1}, 400, "function", '"function" name, a string'),
        ({"function": ""}, 400, "function", '"function" name, a string'),
        ({"function": "x" * 100_000}, 400, "function", "longer than 255"),
        ({"function": "tests.jobs.add", "kwargs": []}, 400, "kwargs", '"kwargs" must be an object'),
        ({"function": "tests.jobs.add", "args": None}, 400, "args", '"args" must be a list'),
        ({"function": "tests.jobs.not_a_job"}, 404, "function", "is not a registered job"),
        ({"function": "a\x00b"}, 404, "function", "is not a registered job"),
        ('{"function": "tests.jobs.echo_types", "args": [1e400]}', 400, "args", "args[0] is inf"),
        ('{"function": "tests.jobs.echo_types", "args": [NaN]}', 400, None, "NaN is not a JSON value"),
        (
            '{"function": "tests.jobs.echo_types", "args": [-Infinity]}',
            400,
            None,
            "-Infinity is not a JSON value",
        ),
        ('{"function": "tests.jobs.echo_types", "args": [' + "9" * 5000 + "]}", 400, None, "must be a JSON"),
        ('{"function": "tests.jobs.echo_types", "args": ["\\ud800"]}', 400, "args", "'\\ud800'"),
        ("[" * 100_000 + "]" * 100_000, 400, None, "nested less deeply"),
        ("[]", 400, None, "must be a JSON object"),
        ("null", 400, None, "must be a JSON object"),
        ('"tests.jobs.add"', 400, None, "must be a JSON object"),
        ("12", 400, None, "must be a JSON object"),
        ("{", 400, None, "must be a JSON object"),
    ],
)
def test_hostile_bodies_are_refused_in_json_naming_the_field(enqueuer, redis, body, status, field, message):
    error_text = refusal(post(enqueuer, body), status, field)
    assert message in error_text
    assert len(error_text) < 1000
    nothing_recorded(redis)


def test_a_body_that_is_not_utf8_or_not_sent_as_json_is_refused(enqueuer, redis):
    raw = b'{"function": "tests.jobs.echo_types", "args": ["\xff"]}'
    assert "UTF-8" in refusal(enqueuer.post(LIST, raw, content_type="application/json"), 400, None)
    surrogate = b'{"function": "tests.jobs.echo_types", "args": ["\xed\xa0\x80"]}'
    assert "UTF-8" in refusal(enqueuer.post(LIST, surrogate, content_type="application/json"), 400, None)
    text = json.dumps({"function": "tests.jobs.add", "args": [1, 2]})
    assert "Content-Type" in refusal(enqueuer.post(LIST, text, content_type="text/plain"), 415, None)
    form = enqueuer.post(LIST, {"function": "tests.jobs.add"})
    refusal(form, 415, None)
    nothing_recorded(redis)


def test_a_body_over_djangos_upload_bound_is_413(enqueuer, redis, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    refusal(post(enqueuer, {"function": "tests.jobs.echo_types", "args": ["x" * 2000]}), 413, None)
    nothing_recorded(redis)


def test_the_size_bound_is_a_setting(enqueuer, redis, settings):
    settings.JOBS = {"MAX_ARGUMENTS_BYTES": 100}
    assert "100 bytes" in refusal(
        post(enqueuer, {"function": "tests.jobs.echo_types", "args": ["x" * 100]}), 400, "args"
    )
    nothing_recorded(redis)
    assert post(enqueuer, {"function": "tests.jobs.echo_types", "args": ["x" * 80]}).status_code == 202
    settings.JOBS = {"MAX_ARGUMENTS_BYTES": None}
    assert post(enqueuer, {"function": "tests.jobs.echo_types", "args": ["x" * 300_000]}).status_code == 202


@pytest.mark.parametrize(
    ("function", "args", "kwargs"),
    [
        (jobs.add, [1, 2], {"self": 1}),
        (jobs.add, [1, 2, 3], {}),
        (jobs.echo_types, [nested(100)], {}),
        (jobs.echo_types, ["a\x00"], {}),
        (jobs.echo_types, [], {"k": {"\x00": 1}}),
        (jobs.echo_types, ["x" * 300_000], {}),
    ],
)
def test_python_enqueue_refuses_the_same_values_with_the_same_message(
    enqueuer, redis, function, args, kwargs
):
    with pytest.raises(InvalidArguments) as raised:
        function.enqueue(*args, **kwargs)
    response = post(enqueuer, {"function": function.name, "args": args, "kwargs": kwargs})
    assert refusal(response, 400, raised.value.field) == str(raised.value)
    nothing_recorded(redis)


def test_a_function_a_request_names_is_looked_up_never_imported(enqueuer, redis):
    assert "tests.import_marker" not in sys.modules
    refusal(post(enqueuer, {"function": "tests.import_marker.marked"}), 404, "function")
    assert "tests.import_marker" not in sys.modules, "the request imported the module it named"
    nothing_recorded(redis)


def test_the_apps_own_jobs_cannot_be_named_by_a_request(enqueuer, redis):
    """The cache's refresh job imports the function it is given: a request naming it is refused as if it
    were not registered, and a schedule cannot name it either."""
    from jobs import registry
    from jobs.cache.refresh import refresh_entry

    body = {"function": refresh_entry.name, "args": ["tests.import_marker.marked", [], {}]}
    assert "is not a registered job" in refusal(post(enqueuer, body), 404, "function")
    nothing_recorded(redis)
    assert "tests.import_marker" not in sys.modules
    assert refresh_entry.name not in registry.names()
    assert registry.resolve(refresh_entry.name) is refresh_entry  # a worker still runs the cache's own


def test_every_other_answer_of_the_api_is_json(client, viewer):
    unknown = "00000000-0000-0000-0000-000000000000"
    assert "No Job matches" in refusal(viewer.get(f"{LIST}{unknown}/"), 404, None)
    refusal(viewer.get(f"{LIST}not-a-uuid/"), 404, None)
    refusal(viewer.get("/jobs/api/nothing-here/"), 404, None)
    for method in ("put", "patch", "delete", "options"):
        response = getattr(viewer, method)(LIST)
        assert "not allowed" in refusal(response, 405, None)
        assert response["Allow"] == "GET, POST"
    assert refusal(viewer.post(f"{LIST}{unknown}/"), 405, None)
    assert "jobs.add_job" in refusal(post(viewer, {"function": "tests.jobs.add"}), 403, None)
    client.logout()
    assert "jobs.view_job" in refusal(client.get(LIST), 403, None)
    assert refusal(viewer.get(LIST + "?queue=a%00b"), 403, None)


def test_list_filters_refuse_nul_characters(viewer):
    assert "NUL" in refusal(viewer.get(LIST + "?queue=a%00b"), 400, "queue")
    assert "NUL" in refusal(viewer.get(LIST + "?function=a%00b"), 400, "function")
    refusal(viewer.get(LIST + "?limit=" + "9" * 5000), 400, "limit")


def test_the_web_process_finds_installed_apps_jobs_without_importing_what_requests_name():
    code = (
        "import sys, django; django.setup()\n"
        "from jobs.registry import lookup\n"
        "from jobs.exceptions import JobNotRegistered\n"
        "assert 'jobsite.jobs' not in sys.modules\n"
        "assert lookup('jobsite.jobs.echo').name == 'jobsite.jobs.echo'\n"
        "try:\n"
        "    lookup('tests.import_marker.marked')\n"
        "except JobNotRegistered:\n"
        "    pass\n"
        "assert 'tests.import_marker' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=worker_env())


def test_a_post_without_the_csrf_token_is_refused_in_json_and_records_nothing(redis, db):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user_with("add_job"))
    response = post(browser, {"function": "tests.jobs.add", "args": [1, 2]})
    assert "CSRF" in refusal(response, 403, None)
    nothing_recorded(redis)
    # With a token in the cookie and the same in the header, as a page's script sends it, it goes through.
    token = "k" * 32
    browser.cookies["csrftoken"] = token
    response = browser.post(
        LIST,
        json.dumps({"function": "tests.jobs.add", "args": [1, 2]}),
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 202, response.content


def _csrf_browser():
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user_with("add_job", "view_job"))
    browser.cookies["csrftoken"] = "k" * 32
    return browser


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        ("x=" + "y" * 3_000_000, "application/x-www-form-urlencoded", 413, "too large"),
        (
            "&".join(f"a{n}=1" for n in range(1200)),
            "application/x-www-form-urlencoded",
            400,
            "DATA_UPLOAD_MAX_NUMBER_FIELDS",
        ),
        (b"abc", "multipart/form-data", 415, "JSON"),
        (b"--x\r\nnot a part", "multipart/form-data; boundary=x", 415, "JSON"),
    ],
    ids=[
        "form-over-the-bound",
        "form-with-too-many-fields",
        "multipart-without-boundary",
        "broken-multipart",
    ],
)
def test_a_body_django_cannot_parse_is_refused_in_json_and_records_nothing(
    redis, db, body, content_type, status, message
):
    # Django's CSRF check parses a form body before the view looks at it.
    browser = _csrf_browser()
    response = browser.post(LIST, body, content_type=content_type, headers={"X-CSRFToken": "k" * 32})
    assert message in refusal(response, status, None)
    nothing_recorded(redis)


def test_too_many_query_parameters_are_refused_in_json(viewer):
    query = "&".join(f"a{n}=1" for n in range(1200))
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in refusal(viewer.get(f"{LIST}?{query}"), 400, None)
    record = jobs.add.enqueue(1, 2)
    assert viewer.get(f"{LIST}{record.pk}/?{query}").json()["id"] == str(record.pk)  # none read


def test_a_result_is_answered_as_plain_json(viewer):
    """The record keeps some values in markers of its own (a float JSON writes with an exponent, a
    datetime, a Decimal, a model instance); the API answers them as JSON numbers and text."""
    user = User.objects.get()
    records = [jobs.given.enqueue(value) for value in (1e16, [2.5e20, 0.5], user)]
    Job.objects.filter(pk=records[2].pk).update(
        status=Status.FINISHED, result={"__jobs__": ["decimal", "1.10"]}
    )
    Job.objects.filter(pk__in=[r.pk for r in records[:2]]).update(status=Status.FINISHED)
    Job.objects.filter(pk=records[0].pk).update(result={"__jobs__": ["float", "1e+16"]})
    Job.objects.filter(pk=records[1].pk).update(result=[{"__jobs__": ["float", "2.5e+20"]}, 0.5])
    answers = [viewer.get(f"{LIST}{record.pk}/").json()["result"] for record in records]
    assert answers == [1e16, [2.5e20, 0.5], "1.10"]
    listed = {job["id"]: job["result"] for job in viewer.get(LIST + "?status=finished").json()["jobs"]}
    assert listed == {str(record.pk): answer for record, answer in zip(records, answers, strict=True)}
