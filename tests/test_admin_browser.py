"""The admin as a person uses it: Debian's Chromium driven by Playwright against a live server, with a
real worker. Screenshots of the change list, a job's page and the dashboard go to test-artifacts/."""

import re
from pathlib import Path

import pytest
from django.db import connections

from jobs.models import Job, Status
from tests import fault_jobs, jobs
from tests.helpers import ROOT, drain, staff_user

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (`make browser`)"),
]


@pytest.fixture
def browser(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still
    # plain synchronous calls between browser steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()
        # ORM calls made while Playwright's loop runs get connections of their own context: close them
        # here, in that context, or PostgreSQL refuses to drop the test database.
        connections.close_all()


def log_in(browser, live_server, username):
    # A context of its own: its own cookies, as a second browser has.
    page = browser.new_context(viewport={"width": 1800, "height": 1000}).new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    return page


def test_a_person_retries_failed_jobs_one_then_many_and_sees_them_finish(browser, live_server):
    from playwright.sync_api import expect

    staff_user("view_job", "retry_job", "cancel_job", "delete_job", username="operator")
    records = [jobs.fails_on_first_attempt.enqueue(f"report-{n}") for n in range(4)]
    drain()
    assert Job.objects.filter(status=Status.FAILED).count() == 4

    page = log_in(browser, live_server, "operator")
    page.goto(f"{live_server.url}/admin/jobs/job/?status__exact=failed")
    expect(page.locator("#result_list tbody tr")).to_have_count(4)
    expect(page.locator(".jobs-status-failed").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "admin-change-list.png"), full_page=True)

    # One: from the job's own page.
    page.locator("#result_list tbody tr th a").first.click()
    expect(page.locator(".jobs-traceback").first).to_contain_text("first attempt of report")
    page.screenshot(path=str(ARTIFACTS / "admin-job-page.png"), full_page=True)
    page.click(".jobs-retry-button")
    expect(page.locator(".messagelist")).to_contain_text("Retried 1 job.")
    assert re.search(r"/admin/jobs/job/\?status__exact=failed$", page.url)
    expect(page.locator("#result_list tbody tr")).to_have_count(3)

    # Many: the bulk action on every row of the filtered list.
    page.check("#action-toggle")
    page.select_option("select[name=action]", "retry_selected")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Retried 3 jobs.")
    expect(page.locator("#result_list")).to_have_count(0)  # no failed job is left in this filter

    drain()
    page.goto(f"{live_server.url}/admin/jobs/job/?status__exact=finished")
    expect(page.locator("#result_list tbody tr")).to_have_count(4)
    expect(page.locator(".jobs-status-finished")).to_have_count(4)
    for record in records:
        record.refresh_from_db()
        assert (record.status, record.attempts, record.result) == (
            Status.FINISHED,
            2,
            record.args[0],
        )

    page.goto(f"{live_server.url}/admin/jobs/dashboard/")
    expect(page.locator("#jobs-section-queues")).to_be_visible()
    expect(page.locator("tr[data-queue=default] [data-figure=ledger-finished]")).to_have_text("4")
    expect(page.locator(".jobs-chart")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "admin-dashboard.png"), full_page=True)
    # The page refreshes its sections by itself.
    page.wait_for_function(
        "document.getElementById('jobs-dashboard-sections').dataset.refreshedAt", timeout=30_000
    )


def test_staff_without_the_permission_gets_no_retry_button(browser, live_server):
    from playwright.sync_api import expect

    staff_user("view_job", username="watcher")
    job = Job.objects.create(function="tests.jobs.boom", queue="default", status=Status.FAILED, attempts=1)
    page = log_in(browser, live_server, "watcher")
    page.goto(f"{live_server.url}/admin/jobs/job/{job.pk}/change/")
    expect(page.locator("h1")).to_be_visible()
    expect(page.locator(".jobs-retry-button")).to_have_count(0)
    page.goto(f"{live_server.url}/admin/jobs/job/?status__exact=failed")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("option[value=retry_selected]")).to_have_count(0)
    expect(page.locator(".jobs-retry-matching")).to_have_count(0)


def test_two_people_retrying_the_same_failed_job_from_their_own_browsers_run_it_once(browser, live_server):
    from playwright.sync_api import expect

    staff_user("view_job", "retry_job", username="first")
    staff_user("view_job", "retry_job", username="second")
    record = jobs.fails_on_first_attempt.enqueue("report")
    drain()
    record.refresh_from_db()
    assert record.status == Status.FAILED
    # Both open the failed job's page, in browsers of their own; then both press Retry.
    pages = [log_in(browser, live_server, username) for username in ("first", "second")]
    for page in pages:
        page.goto(f"{live_server.url}/admin/jobs/job/{record.pk}/change/")
        expect(page.locator(".jobs-retry-button")).to_be_visible()
    pages[0].click(".jobs-retry-button")
    expect(pages[0].locator(".messagelist")).to_contain_text("Retried 1 job.")
    pages[1].click(".jobs-retry-button")
    expect(pages[1].locator(".messagelist")).to_contain_text(
        "1 job was not retried: only failed jobs can be."
    )
    drain()
    record.refresh_from_db()
    assert (record.status, record.attempts, record.result) == (Status.FINISHED, 2, "report")
    assert record.retried_by.username == "first"
    assert record.failed_attempts.count() == 1  # its first attempt; the retry ran once, and finished


def test_two_people_act_at_the_same_moment_and_on_a_page_gone_stale(browser, live_server):
    """Two people, each in a browser of their own, press Retry on one failed job's page at the same moment:
    it runs once, and each is told what happened. Then the first acts on a list of failed jobs that the
    second has retried since it was shown: the first is told that those jobs were left, and why."""
    from playwright.sync_api import expect

    from tests.test_admin_two_operators import counting, queued_ids

    for username in ("first", "second"):
        staff_user("view_job", "retry_job", username=username)
    record = counting()
    pages = [log_in(browser, live_server, username) for username in ("first", "second")]
    for page in pages:
        page.goto(f"{live_server.url}/admin/jobs/job/{record.pk}/change/")
    for page in pages:  # both forms are sent before either answer comes back
        page.evaluate("document.querySelector('.jobs-retry-button').form.requestSubmit()")
    for page in pages:
        page.wait_for_url(re.compile(r"/admin/jobs/job/$"))
    shown = sorted(page.locator(".messagelist").inner_text() for page in pages)
    assert shown == ["1 job was not retried: only failed jobs can be.", "Retried 1 job."]
    assert queued_ids() == [str(record.pk)]

    stale = [counting() for _ in range(3)]
    first, second = pages
    first.goto(f"{live_server.url}/admin/jobs/job/?status__exact=failed")
    expect(first.locator("#result_list tbody tr")).to_have_count(3)
    second.goto(f"{live_server.url}/admin/jobs/job/retry-failed/?status__exact=failed")
    second.click("input[type=submit]")
    expect(second.locator(".messagelist")).to_contain_text("Retried 3 jobs.")
    first.check("#action-toggle")
    first.select_option("select[name=action]", "retry_selected")
    first.click("button[name=index]")
    expect(first.locator(".messagelist")).to_have_text(
        "3 jobs were not retried: since the page was shown, they were deleted "
        "or no longer match the list's filters."
    )
    drain()
    assert [fault_jobs.runs_of(job.args[0]) for job in [record, *stale]] == [1] * 4
