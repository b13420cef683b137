"""Schedules that are broken, or made broken by hand: one schedule's fault never holds the others back,
and what the admin, settings and ``manage.py check`` take is what a worker can run."""

import json
import sys
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.test import Client, override_settings
from django.utils import timezone

from jobs import registry
from jobs.exceptions import InvalidSchedule
from jobs.models import Job, Schedule
from jobs.ticks import check_cron
from jobs.upkeep import schedules as schedules_module
from jobs.upkeep.schedules import fire_due
from tests import broken_import_jobs  # noqa: F401 (registers its job, as a worker would not)
from tests.helpers import WorkerProcess, staff_user, wait_for
from tests.test_schedules import make

LIST = "/admin/jobs/schedule/"


def every_second(name, **fields):
    return make(name, every=timedelta(seconds=1), cron="", next_tick=timezone.now(), **fields)


@pytest.mark.django_db
def test_a_schedule_whose_module_fails_on_import_holds_back_no_other(monkeypatch, caplog):
    """Its module raises (not ImportError) in the worker: the schedules after it, by name, fired no more."""
    every_second("a-broken", function="tests.broken_import_jobs.never_imported", args=[])
    fine = every_second("b-fine")
    monkeypatch.setenv("JOBS_TEST_BREAK_IMPORT", "1")
    monkeypatch.delitem(sys.modules, "tests.broken_import_jobs")
    monkeypatch.delitem(registry._registry, "tests.broken_import_jobs.never_imported")

    fired = fire_due(now=timezone.now() + timedelta(seconds=1))
    assert {record.schedule_id for record in fired} == {fine.pk}
    assert "Schedule 'a-broken' could not run its ticks" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_with_a_real_worker_a_broken_schedule_holds_back_no_other():
    every_second("a-broken", function="tests.broken_import_jobs.never_imported", args=[])
    fine = every_second("b-fine")
    worker = WorkerProcess(
        "--worker-class", "jobs.worker.SimpleWorker", queues=("default",), JOBS_TEST_BREAK_IMPORT="1"
    )
    try:
        wait_for(
            lambda: Job.objects.filter(schedule=fine, status="finished").exists(),
            timeout=30,
            message=lambda: "a run of b-fine; the worker said:\n" + "".join(worker.lines[-30:]),
        )
    finally:
        worker.stop()


@pytest.mark.django_db
def test_arguments_that_no_longer_decode_hold_back_no_other(caplog):
    """Written by hand into the database, past the admin's checks."""
    broken = every_second("a-broken")
    fine = every_second("b-fine")
    Schedule.objects.filter(pk=broken.pk).update(args=[{"__jobs__": ["decimal", "abc"]}])
    fired = fire_due(now=timezone.now() + timedelta(seconds=1))
    assert {record.schedule_id for record in fired} == {fine.pk}
    assert "Schedule 'a-broken' could not run its ticks" in caplog.text


@pytest.mark.django_db
def test_a_schedule_that_fails_to_fire_holds_back_no_other(monkeypatch, caplog):
    every_second("a-broken")
    fine = every_second("b-fine")
    record = schedules_module._record

    def failing_for_a(schedule, job_function, tick):
        if schedule.name == "a-broken":
            raise RuntimeError("a fault of this schedule's own")
        return record(schedule, job_function, tick)

    monkeypatch.setattr(schedules_module, "_record", failing_for_a)
    fired = fire_due(now=timezone.now() + timedelta(seconds=1))
    assert {record.schedule_id for record in fired} == {fine.pk}
    assert "Schedule 'a-broken' could not fire; the other schedules go on" in caplog.text


HUGE = timedelta(days=3_000_000)
HOSTILE_ARGS = [
    [{"__jobs__": ["nope", 1]}],
    [{"__jobs__": ["datetime", "garbage"]}],
    [{"__jobs__": ["decimal", "abc"]}],
    [{"__jobs__": []}],
    [{"__jobs__": ["model", "auth.user"]}],
    [{"__jobs__": 5}],
]


@pytest.fixture
def editor(db):
    client = Client(raise_request_exception=False)
    client.force_login(staff_user("view_schedule", "change_schedule", "add_schedule", "enable_schedule"))
    return client


def form(**fields):
    return {
        "name": "by-hand",
        "function": "tests.jobs.add",
        "cron": "",
        "every": "",
        "timezone": "",
        "args": "[1, 2]",
        "kwargs": "{}",
        "catch_up": "on",
        "enabled": "on",
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"every": "3000000 00:00:00"}, "every"),  # its ticks overflow the dates Python holds
        ({"cron": "R R * * *"}, "cron"),  # croniter draws R again at every reading
        *(({"cron": "* * * * *", "args": json.dumps(args)}, "args") for args in HOSTILE_ARGS),
    ],
)
def test_the_admin_refuses_what_no_worker_could_run_with_a_form_error(editor, fields, field):
    response = editor.post(f"{LIST}add/", form(**fields))
    assert response.status_code == 200, response.content[:1000]
    assert field in response.context["adminform"].form.errors
    assert not Schedule.objects.exists()


@pytest.mark.parametrize(
    "definition",
    [
        {"every": HUGE},
        {"cron": "R/5 * * * *"},
        *({"cron": "* * * * *", "args": args} for args in HOSTILE_ARGS),
    ],
)
def test_manage_py_check_refuses_what_no_worker_could_run(definition):
    schedules = {"SCHEDULES": {"by-hand": {"function": "tests.jobs.add", "args": [1, 2], **definition}}}
    with override_settings(JOBS=schedules):
        assert "jobs.E080" in {message.id for message in run_checks(databases=[])}


@pytest.mark.parametrize("expression", ["R * * * *", "0 R(8-10) * * *", "r/15 * * * *", "0 9 * * 1,R"])
def test_cron_expressions_with_random_fields_are_refused(expression):
    with pytest.raises(InvalidSchedule, match="R \\(a random value\\)"):
        check_cron(expression)


@pytest.mark.parametrize("expression", ["0 9 * MAR-APR FRI", "@hourly", "0 0 * * SAT,SUN"])
def test_month_and_day_names_with_an_r_are_not_random_fields(expression):
    check_cron(expression)
