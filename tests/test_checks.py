import pytest
from django.core.checks import run_checks
from django.test import override_settings


def ids(**settings):
    # No database: Django 6.1's run_checks() otherwise opens every database for the model checks.
    with override_settings(**settings):
        return sorted({message.id for message in run_checks(databases=[]) if message.id.startswith("jobs.")})


def test_demo_settings_pass():
    assert ids() == []


def test_threaded_worker_settings_pass():
    assert ids(RQ={"WORKER_CLASS": "jobs.worker.ThreadedWorker"}, JOBS={"WORKER_CONCURRENCY": 32}) == []


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"JOBS": []}, "jobs.E001"),
        ({"JOBS": {"RELAY_INTERVALL": 5}}, "jobs.W001"),
        ({"JOBS": {"RELAY_INTERVAL": 0}}, "jobs.E002"),
        ({"JOBS": {"BACKOFF_BASE": "2"}}, "jobs.E002"),
        ({"JOBS": {"ROW_LOCK_TIMEOUT": 0}}, "jobs.E002"),
        ({"JOBS": {"ROW_LOCK_TIMEOUT": None}}, "jobs.E002"),
        ({"RQ_QUEUES": {}}, "jobs.E004"),
        ({"JOBS": {"DEFAULT_QUEUE": "nope"}}, "jobs.E005"),
        ({"RQ_QUEUES": {"default": {"URL": "redis://localhost"}}}, "jobs.W002"),
        ({"RQ": {}}, "jobs.W003"),
        ({"RQ": {"WORKER_CLASS": "rq.SimpleWorker"}}, "jobs.W003"),
        ({"RQ": {"WORKER_CLASS": "nowhere.Worker"}}, "jobs.E006"),
        ({"JOBS": {"LEDGER_ASYNC_COMMIT": "yes"}}, "jobs.E060"),
        ({"JOBS": {"WORKER_CONCURRENCY": 0}}, "jobs.E090"),
        ({"JOBS": {"WORKER_CONCURRENCY": "8"}}, "jobs.E090"),
        ({"JOBS": {"WORKER_CONCURRENCY": 2.5}}, "jobs.E090"),
    ],
)
def test_misconfiguration_is_reported(settings, expected):
    assert expected in ids(**settings)


def test_django_rq_must_be_installed():
    from django.conf import settings

    apps = [app for app in settings.INSTALLED_APPS if app != "django_rq"]
    with override_settings(INSTALLED_APPS=apps):
        from jobs.checks import check_queues

        assert "jobs.E003" in {message.id for message in check_queues()}


def test_settings_are_read_lazily_and_follow_override_settings():
    from jobs.conf import jobs_settings

    assert jobs_settings.RELAY_INTERVAL == 5
    with override_settings(JOBS={"RELAY_INTERVAL": 1}):
        assert jobs_settings.RELAY_INTERVAL == 1
    assert jobs_settings.RELAY_INTERVAL == 5
    with pytest.raises(AttributeError, match="JOBS has no setting"):
        jobs_settings.NOPE  # noqa: B018
