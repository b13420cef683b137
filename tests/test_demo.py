"""The demo site's endpoints, with a real worker, and the demo launcher itself."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.request

import pytest
import redis
from django.urls import reverse

from jobs.models import Job, Status
from tests.helpers import OWN_SQLITE_DATABASE, ROOT, WorkerProcess, drain, wait_for
from tests.redis_server import free_port


def get_json(client, url):
    response = client.get(url)
    return response.status_code, response.json()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/demo/echo", "msg is required"),
        ("/demo/echo?msg=", "msg is required"),
        ("/demo/echo?msg=" + "x" * 201, "at most 200 characters"),
        ("/demo/echo?msg=hi&ms=abc", "ms must be a whole number"),
        ("/demo/echo?msg=hi&ms=-1", "ms must be from 0 to 60000"),
        ("/demo/delay?msg=hi", "ms is required"),
        ("/demo/delay?msg=hi&ms=1.5", "ms must be a whole number"),
        ("/demo/retry?msg=hi", "fail is required"),
        ("/demo/retry?msg=hi&fail=9", "fail must be from 0 to 4"),
        ("/demo/retry?fail=1", "msg is required"),
        ("/demo/fanout?n=0", "n must be from 1 to 200"),
        ("/demo/fanout?n=201", "n must be from 1 to 200"),
        ("/demo/fanout?ms=x", "ms must be a whole number"),
    ],
)
def test_bad_parameters_get_a_400_with_a_json_error_and_no_job(client, url, message):
    status, body = get_json(client, url)
    assert status == 400
    assert message in body["error"]
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_demo_endpoints_refuse_other_methods(client):
    assert client.post("/demo/echo?msg=hi").status_code == 405
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_unknown_job_status_is_404(client):
    assert client.get("/demo/jobs/00000000-0000-0000-0000-000000000000").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_echo_reports_progress_to_the_status_endpoint(client):
    response = client.get("/demo/echo?msg=hello&ms=2000")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert body["status_url"].endswith(reverse("demo-status", args=[body["id"]]))
    assert response["Location"] == body["status_url"]

    seen = []
    with WorkerProcess("--worker-class", "jobs.worker.SimpleWorker", queues=("default",)):

        def poll():
            _, job = get_json(client, body["status_url"])
            seen.append((job["status"], job["progress"]))
            return job["status"] == "finished" and job

        final = wait_for(poll, timeout=60, interval=0.05)
    assert final["result"] == "hello"
    assert final["progress"] == 100
    assert any(status == "started" and 0 < progress < 100 for status, progress in seen), seen


@pytest.mark.django_db(transaction=True)
def test_delay_runs_later(client):
    _, body = get_json(client, "/demo/delay?msg=later&ms=1500")
    record = Job.objects.get(pk=body["id"])
    assert record.status == Status.SCHEDULED
    drain(queues=("default",))  # burst: nothing is due yet
    record.refresh_from_db()
    assert record.status == Status.SCHEDULED
    with WorkerProcess("--with-scheduler", queues=("default",)):
        wait_for(lambda: get_json(client, body["status_url"])[1]["status"] == "finished", timeout=60)
    record.refresh_from_db()
    assert record.started_at >= record.scheduled_for
    assert record.result == "later"


@pytest.mark.django_db(transaction=True)
def test_retry_fails_n_times_then_succeeds(client):
    _, body = get_json(client, "/demo/retry?msg=flaky&fail=2")
    with WorkerProcess("--with-scheduler", queues=("default",)):
        final = wait_for(
            lambda: (
                (job := get_json(client, body["status_url"])[1])["status"] in ("finished", "failed") and job
            ),
            timeout=90,
        )
    assert final["status"] == "finished"
    assert final["attempts"] == 3
    assert final["result"] == "flaky (after 2 failure(s))"
    record = Job.objects.get(pk=body["id"])
    assert [a.error_message for a in record.failed_attempts.all()] == [
        "planned failure 1 of 2",
        "planned failure 2 of 2",
    ]


@pytest.mark.django_db(transaction=True)
def test_fan_out_callback_waits_for_every_part_then_adds_them_up(client):
    status, body = get_json(client, "/demo/fanout?n=5&ms=0")
    assert status == 202
    assert body["status"] == "deferred"
    _, waiting = get_json(client, body["status_url"])
    assert waiting["dependencies"] == {"total": 5, "pending": 5}
    assert "waiting for 5 of 5" in client.get("/").content.decode()
    drain()
    _, final = get_json(client, body["status_url"])
    assert final["status"] == "finished"
    assert final["result"] == {"parts": 5, "total": 1 + 4 + 9 + 16 + 25}


@pytest.mark.django_db
def test_home_page_lists_the_demos(client):
    response = client.get("/")
    assert response.status_code == 200
    for endpoint in ("/demo/echo", "/demo/delay", "/demo/retry", "/demo/fanout"):
        assert endpoint.encode() in response.content


@pytest.mark.slow
@OWN_SQLITE_DATABASE
def test_demo_launcher_starts_redis_worker_and_site():
    """`python -m jobsite.demo` (the README's demo command) with no Redis configured."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="jobs-demo-test-")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env["DATABASE_URL"] = f"sqlite:///{workdir}/demo.sqlite3"
    process = subprocess.Popen(
        [sys.executable, "-m", "jobsite.demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def fetch(path):
        try:
            with urllib.request.urlopen(base + path, timeout=5) as response:
                return json.loads(response.read()) if "json" in response.headers["Content-Type"] else True
        except OSError:
            return None

    try:
        wait_for(lambda: fetch("/"), timeout=120, interval=0.2, message="the demo site to answer")
        started = fetch("/demo/echo?msg=launched&ms=200")
        assert started["status"] == "queued"
        final = wait_for(
            lambda: (job := fetch(f"/demo/jobs/{started['id']}")) and job["status"] == "finished" and job,
            timeout=120,
            interval=0.2,
            message="the demo's worker to run the job",
        )
        assert final["result"] == "launched"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    match = re.search(r"Started a private Redis at (redis://\S+)", output)
    assert match, output
    # The private Redis is stopped with the demo.
    private = redis.Redis.from_url(match.group(1), socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        private.ping()


@pytest.mark.django_db(transaction=True)
def test_the_demo_schedule_is_shown_on_the_home_page_with_its_last_run(client):
    from django.test import override_settings

    from jobs import schedules
    from jobs.models import Schedule
    from jobs.upkeep.schedules import fire_due
    from jobsite import settings as demo_settings

    with override_settings(JOBS=demo_settings.JOBS):
        schedules.sync()
        schedule = Schedule.objects.get(name="demo-heartbeat")
        assert "none yet" in client.get("/").content.decode()
        [record] = fire_due(now=schedule.next_tick)
        drain()
    page = client.get("/").content.decode()
    assert "demo-heartbeat" in page and "* * * * *" in page
    assert "finished" in page and "alive at" in page
    assert Job.objects.get(pk=record.pk).status == Status.FINISHED
