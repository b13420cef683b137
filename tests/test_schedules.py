"""Recurring jobs: declarations and their refusals, the sync to the table, one run per tick, catch-up,
runs on demand, the admin and the command. Real database, real Redis, workers drained in the test."""

import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.checks import run_checks
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction
from django.test import Client, override_settings
from django.utils import timezone

import jobs as jobs_api
from jobs import declarations, schedules
from jobs.exceptions import InvalidSchedule, JobsError
from jobs.models import Job, Schedule, Source, Status
from jobs.upkeep.schedules import SchedulingRole, fire, fire_due, holder
from tests import jobs
from tests.helpers import drain, staff_user

LIST = "/admin/jobs/schedule/"
T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


@pytest.fixture
def declared_here():
    """Schedules a test declares in code are forgotten after it, so no other test syncs them."""
    names = []
    yield names
    for name in names:
        declarations.undeclare(name)


def make(name="every-minute", **fields):
    fields.setdefault("function", "tests.jobs.add")
    fields.setdefault("args", [1, 2])
    if "every" not in fields:
        fields.setdefault("cron", "* * * * *")
    schedule = Schedule(name=name, **fields)
    schedule.full_clean()
    schedule.next_tick = fields.get("next_tick") or schedule.first_tick_after(timezone.now())
    schedule.save()
    return schedule


def runs(schedule):
    return list(Job.objects.filter(schedule=schedule).order_by("tick"))


# Declarations and their refusals ------------------------------------------------------------------


def test_a_schedule_declared_in_code_is_checked_where_it_is_declared(declared_here):
    declared_here.append("adds")
    declaration = jobs_api.schedule(
        jobs.add, cron="0 9 * * 1-5", args=[1, 2], name="adds", timezone="Europe/Paris"
    )
    assert (declaration.function, declaration.cron, declaration.args, declaration.source) == (
        "tests.jobs.add",
        "0 9 * * 1-5",
        [1, 2],
        "code",
    )
    every = jobs_api.schedule(jobs.noop, every=30, name="noop-often")
    declared_here.append("noop-often")
    assert every.every == timedelta(seconds=30)


@pytest.mark.parametrize(
    ("call", "field", "message"),
    [
        (lambda: jobs_api.schedule(jobs.add, cron="61 * * * *", args=[1, 2]), "cron", "not a valid cron"),
        (lambda: jobs_api.schedule(jobs.add, cron="nonsense", args=[1, 2]), "cron", "not a valid cron"),
        (
            lambda: jobs_api.schedule(jobs.add, cron="0 9 * * *", args=[1, 2], timezone="Europe/Atlantis"),
            "timezone",
            "not a time zone",
        ),
        (
            lambda: jobs_api.schedule(jobs.add, cron="* * * * *", args=[1]),
            "args",
            "do not fit tests.jobs.add",
        ),
        (lambda: jobs_api.schedule(jobs.add, cron="* * * * *", every=5, args=[1, 2]), "cron", "not both"),
        (lambda: jobs_api.schedule(jobs.add, args=[1, 2]), "cron", "not both or neither"),
        (lambda: jobs_api.schedule(jobs.add, every=0, args=[1, 2]), "every", "at least one second"),
        (
            lambda: jobs_api.schedule(jobs.add, every=5, args=[object()]),
            "args",
            r"args\[0\] is of type object",
        ),
        (lambda: jobs_api.schedule(jobs.add.func, every=5, args=[1, 2]), "function", "decorated with @job"),
    ],
)
def test_a_declaration_that_could_not_run_is_refused_with_a_clear_error(call, field, message):
    with pytest.raises(InvalidSchedule, match=message) as caught:
        call()
    assert caught.value.field == field
    assert declarations._declared == {}


def test_job_decorator_declares_a_schedule_named_after_the_job(declared_here):
    from jobs import job

    def nightly():
        return "ok"

    nightly.__module__, nightly.__qualname__ = "tests.jobs", "nightly_for_test"
    registered = job(schedule="0 3 * * *")(nightly)
    declared_here.append(registered.name)
    assert declarations._declared[registered.name].cron == "0 3 * * *"
    with pytest.raises(InvalidSchedule, match="not a valid cron"):
        job(name="tests.jobs.bad_schedule", schedule="0 25 * * *")(nightly)


def ids(**settings):
    with override_settings(**settings):
        return sorted({message.id for message in run_checks(databases=[]) if message.id.startswith("jobs.")})


def entry(**fields):
    return {"JOBS": {"SCHEDULES": {"nightly": {"function": "tests.jobs.add", "args": [1, 2], **fields}}}}


def test_settings_schedules_are_checked():
    assert ids(**entry(cron="0 3 * * *")) == []
    assert ids(**entry(every=60)) == []
    for bad in (
        entry(cron="0 3 * *  * * * *"),
        entry(cron="0 3 * * *", timezone="Nowhere/Nothing"),
        entry(cron="0 3 * * *", function="tests.jobs.not_a_job"),
        entry(cron="0 3 * * *", function="os.system"),
        entry(cron="0 3 * * *", args=[1]),
        entry(cron="0 3 * * *", when="now"),
        entry(),
        {"JOBS": {"SCHEDULES": ["nightly"]}},
        {"JOBS": {"SCHEDULE_GRACE": 0}},
    ):
        assert ids(**bad) in (["jobs.E080"], ["jobs.E002"]), bad
    with override_settings(**entry(cron="0 3 * * *", function="tests.jobs.not_a_job")):
        message = next(m for m in run_checks(databases=[]) if m.id == "jobs.E080")
    assert "JOBS['SCHEDULES']['nightly']" in message.msg
    assert "'tests.jobs.not_a_job' is not a registered job" in message.msg


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "* * * * * * * *"}, "cron"),
        ({"cron": "0 9 * * *", "timezone": "Paris"}, "timezone"),
        ({"function": "tests.jobs.nope"}, "function"),
        ({"function": "subprocess.run"}, "function"),
        ({"args": [1, 2, 3]}, "args"),
        ({"args": {"a": 1}}, "args"),
        ({"kwargs": {"c": 1}}, "kwargs"),
        ({"cron": "", "every": None}, "cron"),
        ({"every": timedelta(milliseconds=10), "cron": ""}, "every"),
    ],
)
def test_model_validation_refuses_what_could_not_run(fields, field):
    values = {"name": "x", "function": "tests.jobs.add", "args": [1, 2], "cron": "* * * * *", **fields}
    with pytest.raises(ValidationError) as caught:
        Schedule(**values).full_clean()
    assert field in caught.value.message_dict


# Sync ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_sync_writes_code_and_settings_declarations_and_keeps_the_admin_s_choices(declared_here):
    declared_here.append("adds")
    jobs_api.schedule(jobs.add, cron="0 9 * * *", args=[1, 2], name="adds")
    admin_made = make("made-in-admin")
    settings = entry(every=3600, kwargs={})
    with override_settings(**settings):
        outcome = schedules.sync()
        assert sorted(outcome.created) == ["adds", "nightly"]
        adds = Schedule.objects.get(name="adds")
        assert (adds.source, adds.cron, adds.enabled) == (Source.CODE, "0 9 * * *", True)
        assert adds.next_tick > timezone.now()
        assert Schedule.objects.get(name="nightly").source == Source.SETTINGS
        # Disabled by a person: a sync leaves it disabled.
        Schedule.objects.filter(name="adds").update(enabled=False)
        assert schedules.sync().updated == []
        assert Schedule.objects.get(name="adds").enabled is False
    # A changed declaration is written; one no longer declared is deleted; admin schedules stay.
    jobs_api.schedule(jobs.add, cron="30 9 * * *", args=[1, 2], name="adds")
    outcome = schedules.sync()
    assert (outcome.updated, outcome.deleted) == (["adds"], ["nightly"])
    adds = Schedule.objects.get(name="adds")
    assert (adds.cron, adds.enabled) == ("30 9 * * *", False)
    assert Schedule.objects.filter(pk=admin_made.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_migrate_syncs_the_declared_schedules():
    with override_settings(**entry(cron="0 3 * * *")):
        call_command("migrate", "jobs", verbosity=0)
        assert Schedule.objects.get(name="nightly").source == Source.SETTINGS


# One run per tick ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_each_due_tick_is_fired_once():
    schedule = make(every=timedelta(minutes=1), cron="", next_tick=T0)
    fired = fire_due(now=T0 + timedelta(seconds=5))
    assert [(r.tick, r.function, r.args, r.status) for r in fired] == [
        (T0, "tests.jobs.add", [1, 2], Status.QUEUED)
    ]
    assert fire_due(now=T0 + timedelta(seconds=6)) == []
    schedule.refresh_from_db()
    assert (schedule.last_tick, schedule.next_tick) == (T0, T0 + timedelta(minutes=1))
    assert fire_due(now=T0 + timedelta(minutes=1)) != []
    assert [r.tick for r in runs(schedule)] == [T0, T0 + timedelta(minutes=1)]


@pytest.mark.django_db
def test_the_last_tick_of_a_cron_with_years_fires_and_the_schedule_then_rests(caplog):
    # croniter reads a sixth field as the seconds and a seventh as the year: midnight every day of 2026.
    last = datetime(2026, 12, 31, tzinfo=UTC)
    schedule = make(cron="0 0 * * * 0 2026", next_tick=last - timedelta(days=1))
    assert len(fire_due(now=last - timedelta(days=1) + timedelta(seconds=5))) == 1
    fired = fire_due(now=last + timedelta(seconds=5))
    assert [r.tick for r in fired] == [last]  # the last tick is fired, not dropped
    schedule.refresh_from_db()
    assert (schedule.last_tick, schedule.next_tick, schedule.enabled) == (last, None, True)
    assert fire_due(now=last + timedelta(days=400)) == []  # never due again
    assert "fired its last tick" in caplog.text


@pytest.mark.django_db
def test_a_declared_schedule_whose_years_have_passed_syncs_beside_the_others(declared_here, caplog):
    declared_here += ["ended", "fine"]
    jobs_api.schedule(jobs.add, cron="0 0 * * * 0 2025", args=[1, 2], name="ended")
    jobs_api.schedule(jobs.add, cron="0 9 * * *", args=[1, 2], name="fine")
    schedules.sync()
    assert Schedule.objects.get(name="ended").next_tick is None
    assert Schedule.objects.get(name="fine").next_tick is not None
    assert "'ended' has no tick after now" in caplog.text
    call_command("migrate", "jobs", verbosity=0)  # syncs again, without an error


@pytest.mark.django_db
def test_two_firers_with_the_same_view_make_one_run():
    make(every=timedelta(minutes=1), cron="", next_tick=T0)
    first, second = Schedule.objects.get(), Schedule.objects.get()
    now = T0 + timedelta(seconds=1)
    assert len(fire(first, now)) == 1
    assert fire(second, now) == []  # its conditional UPDATE finds the tick taken
    assert Job.objects.count() == 1


@pytest.mark.django_db
def test_the_database_refuses_a_second_run_of_a_tick():
    schedule = make(every=timedelta(minutes=1), cron="", next_tick=T0)
    fire_due(now=T0)
    with pytest.raises(IntegrityError), transaction.atomic():
        schedules.enqueue_run(schedule, jobs.add, T0)


@pytest.mark.django_db
def test_ticks_a_little_late_each_get_their_run():
    schedule = make(every=timedelta(seconds=1), cron="", next_tick=T0)
    fire_due(now=T0 + timedelta(seconds=4.5))
    assert [r.tick for r in runs(schedule)] == [T0 + timedelta(seconds=n) for n in range(5)]


@pytest.mark.django_db
def test_missed_ticks_run_once_on_catch_up(caplog):
    schedule = make(every=timedelta(minutes=10), cron="", next_tick=T0)
    fired = fire_due(now=T0 + timedelta(hours=4, minutes=55))
    assert [r.tick for r in fired] == [T0]  # thirty missed ticks, one run, with the first one's time
    schedule.refresh_from_db()
    assert schedule.next_tick == T0 + timedelta(hours=5)
    # Missed ticks and one on time: the catch-up run, and the on-time tick's own.
    Schedule.objects.filter(pk=schedule.pk).update(next_tick=T0 + timedelta(hours=5), last_tick=None)
    fired = fire_due(now=T0 + timedelta(hours=8, seconds=3))
    assert [r.tick for r in fired] == [T0 + timedelta(hours=5), T0 + timedelta(hours=8)]


@pytest.mark.django_db
def test_missed_ticks_are_skipped_with_a_warning_without_catch_up(caplog):
    schedule = make(every=timedelta(minutes=10), cron="", next_tick=T0, catch_up=False)
    with caplog.at_level(logging.WARNING, logger="jobs"):
        assert fire_due(now=T0 + timedelta(hours=4, minutes=55)) == []
    assert "skipped its ticks from 2026-05-04T08:00:00+00:00" in caplog.text
    schedule.refresh_from_db()
    assert schedule.next_tick == T0 + timedelta(hours=5)
    Schedule.objects.filter(pk=schedule.pk).update(next_tick=T0 + timedelta(hours=4, minutes=10))
    # A tick within the grace still runs.
    assert [r.tick for r in fire_due(now=T0 + timedelta(hours=5, minutes=10, seconds=2))] == [
        T0 + timedelta(hours=5, minutes=10)
    ]


@pytest.mark.django_db(transaction=True)
def test_a_run_is_an_ordinary_job_that_a_worker_runs(redis):
    # A tick due now, and the next one months away: a drain that crossed the next minute would fire it too.
    schedule = make(every=timedelta(days=365), cron="", next_tick=timezone.now() - timedelta(seconds=1))
    # The worker's own maintenance fires the tick, then takes its job.
    drain()
    [record] = runs(schedule)
    assert (record.status, record.result) == (Status.FINISHED, 3)


@pytest.mark.django_db
def test_a_tick_whose_function_is_gone_is_logged_and_the_schedule_goes_on(caplog):
    schedule = make(every=timedelta(minutes=1), cron="", next_tick=T0)
    Schedule.objects.filter(pk=schedule.pk).update(function="tests.jobs.no_such_job")
    with caplog.at_level(logging.ERROR, logger="jobs"):
        assert fire_due(now=T0) == []
    assert "could not run its ticks 2026-05-04T08:00:00+00:00" in caplog.text
    schedule.refresh_from_db()
    assert schedule.next_tick == T0 + timedelta(minutes=1)


@pytest.mark.django_db
def test_the_scheduling_role_is_held_by_one_worker_at_a_time(redis):
    first, second = SchedulingRole("w1"), SchedulingRole("w2")
    assert first.hold() and not second.hold()
    assert first.hold()  # renewed
    assert holder() == "w1"
    first.release()
    assert second.hold() and holder() == "w2"
    redis.delete("jobs:schedules:role")  # its TTL ran out
    assert first.hold() and not second.hold()


# Run now -------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_run_now_records_a_run_without_a_tick_and_refuses_a_second_while_it_waits(redis):
    schedule = make()
    record = schedules.run_now(schedule)
    assert (record.schedule_id, record.tick, record.args) == (schedule.pk, None, [1, 2])
    with pytest.raises(JobsError, match="still waiting"):
        schedules.run_now(schedule)
    drain()
    assert Job.objects.get(pk=record.pk).status == Status.FINISHED
    assert schedules.run_now(schedule).pk != record.pk


# The admin -----------------------------------------------------------------------------------------


@pytest.fixture
def operator(db):
    client = Client()
    client.force_login(
        staff_user(
            "view_schedule", "change_schedule", "add_schedule", "enable_schedule", "run_schedule", "view_job"
        )
    )
    return client


def test_the_list_shows_the_next_tick_and_the_last_run_with_its_outcome(operator):
    schedule = make(every=timedelta(minutes=1), cron="", next_tick=T0)
    fire_due(now=T0)
    Job.objects.filter(schedule=schedule).update(status=Status.FAILED)
    page = operator.get(LIST).content.decode()
    assert "every-minute" in page and "every 0:01:00" in page
    assert "jobs-status-failed" in page
    assert f"/admin/jobs/job/{Job.objects.get().pk}/change/" in page


def test_enable_disable_and_run_now_need_their_permission_and_are_logged(operator, redis):
    schedule = make()
    response = operator.post(
        LIST, {"action": "disable_selected", "_selected_action": [schedule.pk]}, follow=True
    )
    assert "Disabled 1 schedule." in response.content.decode()
    schedule.refresh_from_db()
    assert schedule.enabled is False
    # Disabled, it stops: its ticks are not fired, however late it is.
    assert fire_due(now=timezone.now() + timedelta(hours=1)) == []
    operator.post(LIST, {"action": "enable_selected", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    # Enabled again, it goes on from now: the ticks of the disabled hour are not caught up.
    assert schedule.enabled and schedule.next_tick > timezone.now()
    operator.post(LIST, {"action": "run_selected", "_selected_action": [schedule.pk]})
    [record] = runs(schedule)
    assert record.tick is None
    messages = list(LogEntry.objects.order_by("action_time").values_list("change_message", flat=True))
    assert messages == ["Disabled.", "Enabled.", f"Ran now: job {record.pk}."]

    viewer = Client()
    viewer.force_login(staff_user("view_schedule", "change_schedule", username="viewer"))
    page = viewer.get(LIST).content.decode()
    assert "run_selected" not in page and "disable_selected" not in page
    viewer.post(LIST, {"action": "disable_selected", "_selected_action": [schedule.pk]})
    assert Schedule.objects.get().enabled is True


def test_actions_are_post_only_with_csrf(db):
    schedule = make()
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user("view_schedule", "enable_schedule"))
    response = client.post(LIST, {"action": "disable_selected", "_selected_action": [schedule.pk]})
    assert response.status_code == 403
    assert Schedule.objects.get().enabled is True


def test_a_schedule_is_added_in_the_admin_and_refused_when_it_could_not_run(operator):
    form = {
        "name": "weekday",
        "function": "tests.jobs.add",
        "cron": "0 9 * * 1-5",
        "every": "",
        "timezone": "Europe/Paris",
        "args": "[1, 2]",
        "kwargs": "{}",
        "catch_up": "on",
        "enabled": "on",
    }
    for bad, field in (
        ((("cron", "0 9 * *"),), "cron"),
        ((("timezone", "Paris"),), "timezone"),
        (
            (("args", "[1]"),),
            "args",
        ),
    ):
        response = operator.post(f"{LIST}add/", {**form, **dict(bad)})
        assert response.status_code == 200, bad
        assert field in response.context["adminform"].form.errors, bad
    response = operator.post(f"{LIST}add/", {**form, "function": "os.system"})
    assert "function" in response.context["adminform"].form.errors
    assert not Schedule.objects.exists()
    response = operator.post(f"{LIST}add/", form)
    assert response.status_code == 302
    schedule = Schedule.objects.get()
    assert schedule.source == Source.ADMIN
    assert schedule.next_tick.astimezone(datetime.now().astimezone().tzinfo) > timezone.now()
    assert schedule.next_tick.minute == 0


def test_a_declared_schedule_s_page_is_read_only_but_for_enabled(operator, declared_here):
    declared_here.append("adds")
    jobs_api.schedule(jobs.add, cron="0 9 * * *", args=[1, 2], name="adds")
    schedules.sync()
    pk = Schedule.objects.get().pk
    page = operator.get(f"{LIST}{pk}/change/").content.decode()
    assert 'name="cron"' not in page and 'name="enabled"' in page
    # Deleted, it would come back at the next sync: it can be disabled, not deleted.
    superuser = Client()
    superuser.force_login(get_user_model().objects.create_superuser("root", password="pw"))
    assert superuser.get(f"{LIST}{pk}/delete/").status_code == 403
    made = make("made-in-admin")
    assert superuser.get(f"{LIST}{made.pk}/delete/").status_code == 200


# The command ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_command_lists_ticks_and_runs(capsys, redis):
    schedule = make(every=timedelta(seconds=1), cron="", next_tick=timezone.now() - timedelta(seconds=1))
    call_command("jobs_schedule", "tick")
    assert "Fired " in capsys.readouterr().out
    call_command("jobs_schedule", "list")
    out = capsys.readouterr().out
    assert "every-minute: tests.jobs.add every 0:00:01, enabled, from admin" in out
    assert "queued" in out and "Scheduling role: free" in out
    call_command("jobs_schedule", "run", "every-minute")
    assert Job.objects.filter(schedule=schedule, tick__isnull=True).count() == 1
    with pytest.raises(CommandError, match="No schedule is named 'nope'"):
        call_command("jobs_schedule", "run", "nope")
    with pytest.raises(CommandError, match="still waiting"):
        call_command("jobs_schedule", "run", "every-minute")


@pytest.mark.django_db
def test_a_schedule_saved_without_a_next_tick_gets_one():
    schedule = Schedule.objects.create(name="bare", function="tests.jobs.noop", cron="0 9 * * *")
    assert schedule.next_tick > timezone.now()
    assert (schedule.next_tick.hour, schedule.next_tick.minute) == (9, 0)  # settings.TIME_ZONE is UTC


def test_the_runs_link_lists_the_schedule_s_runs_only(operator):
    schedule = make(every=timedelta(minutes=1), cron="", next_tick=T0)
    other = make("other", every=timedelta(minutes=1), cron="", next_tick=T0)
    fire_due(now=T0 + timedelta(minutes=1))
    page = operator.get(f"{LIST}{schedule.pk}/change/").content.decode()
    link = f"/admin/jobs/job/?schedule__id__exact={schedule.pk}"
    assert link in page
    listed = operator.get(link)
    assert listed.status_code == 200
    shown = {job.pk for job in listed.context["cl"].result_list}
    assert shown == set(Job.objects.filter(schedule=schedule).values_list("pk", flat=True))
    assert len(shown) == 2 and not shown & set(other.runs.values_list("pk", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_worker_syncs_the_declared_schedules_when_it_starts(redis):
    with override_settings(**entry(every=3600)):
        drain()
        assert Schedule.objects.get(name="nightly").source == Source.SETTINGS
    # A declaration that cannot run is logged by the worker, which still starts and works.
    record = jobs.add.enqueue(2, 3)
    with override_settings(**entry(cron="0 3 * * *", function="tests.jobs.not_a_job")):
        drain()
    assert Job.objects.get(pk=record.pk).status == Status.FINISHED


@pytest.mark.django_db(transaction=True)
def test_migrating_back_before_the_schedules_does_not_sync():
    with override_settings(**entry(cron="0 3 * * *")):
        call_command("migrate", "jobs", "0003", verbosity=0)
        call_command("migrate", "jobs", verbosity=0)
        assert Schedule.objects.filter(name="nightly").exists()
