"""The admin's "retry all matching" works in bounded batches, however many jobs match."""

import pytest

from jobs.admin import job_admin, operations
from jobs.models import Job, Status
from tests.helpers import staff_user

LIST = "/admin/jobs/job/"


@pytest.fixture
def operator(client, db):
    client.force_login(staff_user("view_job", "retry_job"))
    return client


def failed(queue):
    return Job.objects.create(
        function="tests.jobs.add", queue=queue, status=Status.FAILED, args=[1, 2], attempts=1
    )


def test_retry_all_matching_retries_every_match_a_bounded_batch_at_a_time(operator, monkeypatch):
    matching = {failed("high").pk for _ in range(8)}
    other = failed("low")
    batches = []
    real_retry = operations.retry

    def counting_retry(queryset, user=None, selection=None):
        batches.append(queryset.count())
        return real_retry(queryset, user=user, selection=selection)

    monkeypatch.setattr(job_admin, "RETRY_BATCH", 3, raising=False)
    monkeypatch.setattr(operations, "retry", counting_retry)
    response = operator.post(f"{LIST}retry-failed/?queue__exact=high")

    assert response.status_code == 302
    assert batches == [3, 3, 2]
    assert set(Job.objects.filter(status=Status.QUEUED).values_list("pk", flat=True)) == matching
    other.refresh_from_db()
    assert other.status == Status.FAILED
    shown = operator.get(response["Location"])
    assert [str(m) for m in shown.context["messages"]] == ["Retried 8 jobs."]
