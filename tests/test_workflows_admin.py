"""Workflows in the admin and the API: what a job waits for, links both ways, and the cancel of a
deferred job with the jobs waiting for it."""

import pytest
from django.contrib.admin.models import LogEntry

from jobs.models import Job, Status
from tests import jobs
from tests.helpers import staff_user

LIST = "/admin/jobs/job/"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator(client):
    client.force_login(staff_user("view_job", "cancel_job"))
    return client


@pytest.fixture
def group():
    children = jobs.add.enqueue_many([(n, n) for n in range(3)])
    callback = jobs.sum_of_dependencies.using(depends_on=children).enqueue()
    return children, callback


def test_the_list_shows_what_a_deferred_job_waits_for(operator, group):
    _children, callback = group
    response = operator.get(LIST, {"status__exact": "deferred"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "waiting for 3 of 3" in page
    assert list(response.context["cl"].result_list) == [Job.objects.get(pk=callback.pk)]


def test_a_jobs_page_links_what_it_waits_for_and_what_waits_for_it(operator, group):
    children, callback = group
    page = operator.get(f"{LIST}{callback.pk}/change/").content.decode()
    for child in children:
        assert f'href="{LIST}{child.pk}/change/"' in page
    assert "tests.jobs.add(2, 2)" in page  # the arguments tell the jobs of one function apart
    assert "Cancel" in page  # a deferred job can be cancelled
    child_page = operator.get(f"{LIST}{children[0].pk}/change/").content.decode()
    assert f'href="{LIST}{callback.pk}/change/"' in child_page
    assert "waiting for 3 of 3" in child_page


def test_the_list_filters_by_workflow_links_both_ways(operator, group):
    children, callback = group
    response = operator.get(LIST, {"dependent_links__dependent": str(callback.pk)})
    assert {r.pk for r in response.context["cl"].result_list} == {c.pk for c in children}
    response = operator.get(LIST, {"dependency_links__dependency": str(children[1].pk)})
    assert [r.pk for r in response.context["cl"].result_list] == [callback.pk]


def test_a_long_list_of_links_ends_with_a_link_to_the_rest(operator):
    children = jobs.add.enqueue_many([(n, n) for n in range(60)])
    callback = jobs.sum_of_dependencies.using(depends_on=children).enqueue()
    page = operator.get(f"{LIST}{callback.pk}/change/").content.decode()
    assert "… 10 more" in page
    assert f"dependent_links__dependent={callback.pk}" in page


def test_cancelling_a_dependency_from_the_admin_cancels_its_waiting_dependents(operator, group):
    children, callback = group
    response = operator.post(f"{LIST}{children[0].pk}/cancel/")
    assert response.status_code == 302
    callback = Job.objects.get(pk=callback.pk)
    assert callback.status == Status.CANCELLED
    assert "was cancelled" in callback.error_message
    assert LogEntry.objects.filter(object_id=str(children[0].pk)).exists()


def test_the_api_shows_what_a_job_waits_for(client, group):
    _children, callback = group
    client.force_login(staff_user("view_job"))
    body = client.get(f"/jobs/api/jobs/{callback.pk}/").json()
    assert body["status"] == "deferred"
    assert body["dependencies"] == {"total": 3, "pending": 3}


def test_the_dashboard_counts_deferred_jobs(client, group):
    client.force_login(staff_user("view_job"))
    page = client.get("/admin/jobs/dashboard/").content.decode()
    assert 'data-figure="ledger-deferred"' in page
    assert "?status__exact=deferred&amp;queue__exact=default" in page
