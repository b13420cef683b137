"""Two operators on the same jobs at the same moment: each in a session of their own, through a real server
(a live server, and POSTs fired from threads at once) or the test client, with a real worker to see what
runs and how often."""

import html
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.cookiejar import CookieJar

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import connection, connections
from django.db.models import Count
from django.test import Client
from rq.job import Job as RQJob

from jobs import pause, transitions
from jobs.admin import job_admin, operations
from jobs.models import Job, Status
from jobs.transport import connection as jobs_connection
from tests import fault_jobs, jobs
from tests.helpers import drain, staff_user, wait_for

LIST = "/admin/jobs/job/"
NOT_FAILED = "1 job was not retried: only failed jobs can be."

pytestmark = pytest.mark.django_db(transaction=True)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the 302 is the answer: its Location, and the messages of the page it names


class Operator:
    """A person signed in to the admin in a browser of their own: their own cookies, session and CSRF
    token, talking HTTP to the live server."""

    def __init__(self, base_url, username):
        self.base_url = base_url
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', self.get("/admin/login/")[2])[1]
        status, _, _ = self.post("/admin/login/", {"username": username, "password": "pw"}, token=token)
        assert status == 302, f"{username} could not sign in"

    def cookie(self, name):
        return next((cookie.value for cookie in self.jar if cookie.name == name), None)

    def _open(self, request):
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.headers.get("Location"), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Location"), error.read().decode(errors="replace")

    def get(self, path):
        return self._open(urllib.request.Request(self.base_url + path))

    def post(self, path, data=(), token=None):
        fields = [*(data.items() if isinstance(data, dict) else data)]
        fields.append(("csrfmiddlewaretoken", token or self.cookie("csrftoken")))
        request = urllib.request.Request(
            self.base_url + path, data=urllib.parse.urlencode(fields, doseq=True).encode(), method="POST"
        )
        return self._open(request)

    def shown(self, answer):
        """The messages of the page a POST redirected to (the admin's messages live in a cookie)."""
        status, location, body = answer
        assert status == 302, f"{status}: {body[:2000]}"
        status, _, page = self.get(location)
        assert status == 200
        listed = re.search(r'<ul class="messagelist">(.*?)</ul>', page, re.S)
        return (
            [html.unescape(text) for text in re.findall(r"<li[^>]*>(.*?)</li>", listed[1])] if listed else []
        )


def at_once(*calls):
    """Run the calls in threads of their own, released together; their results in order."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait(timeout=30)
            results[index] = call()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index, call)) for index, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def counting(status=Status.FAILED, **fields):
    """A record of ``fault_jobs.count_run`` under a name of its own, which counts its runs."""
    return Job.objects.create(
        function="tests.fault_jobs.count_run",
        args=[uuid.uuid4().hex],
        queue="default",
        status=status,
        attempts=1 if status == Status.FAILED else 0,
        error_class="builtins.ValueError" if status == Status.FAILED else "",
        **fields,
    )


def queued_ids():
    return jobs_connection.get_queue("default").get_job_ids()


@pytest.fixture
def two(live_server):
    names = ("first", "second")
    for name in names:
        staff_user("view_job", "retry_job", "cancel_job", "delete_job", "pause_queue", username=name)
    return [Operator(live_server.url, name) for name in names]


def test_two_people_retrying_the_same_failed_job_at_once_run_it_once(two):
    first, second = two
    records = [counting() for _ in range(5)]
    for record in records:
        url = f"{LIST}{record.pk}/retry/"
        answers = at_once(lambda url=url: first.post(url), lambda url=url: second.post(url))
        shown = [person.shown(answer) for person, answer in zip(two, answers, strict=True)]
        assert sorted(shown) == [[NOT_FAILED], ["Retried 1 job."]]
        winner = ("first", "second")[shown.index(["Retried 1 job."])]
        record.refresh_from_db()
        assert record.retried_by.username == winner
        entries = LogEntry.objects.filter(object_id=str(record.pk))
        assert [(e.user.username, e.action_flag, e.change_message) for e in entries] == [
            (winner, CHANGE, "Retried.")
        ]
    assert sorted(queued_ids()) == sorted(str(record.pk) for record in records)  # each pushed once
    drain()
    assert [fault_jobs.runs_of(record.args[0]) for record in records] == [1] * 5


def test_a_double_submit_in_one_session_retries_once(two):
    first, _ = two
    record = counting()
    url = f"{LIST}{record.pk}/retry/"
    answers = at_once(lambda: first.post(url), lambda: first.post(url))
    assert [answer[0] for answer in answers] == [302, 302]
    assert queued_ids() == [str(record.pk)]
    assert LogEntry.objects.filter(object_id=str(record.pk)).count() == 1
    drain()
    assert fault_jobs.runs_of(record.args[0]) == 1


def test_two_people_retrying_all_matching_at_once_retry_each_job_once(two, monkeypatch):
    monkeypatch.setattr(job_admin, "RETRY_BATCH", 20)  # batches of the two interleave
    first, second = two
    tag = uuid.uuid4().hex
    records = Job.objects.bulk_create(
        Job(
            function="tests.fault_jobs.count_run",
            args=[f"{tag}-{n}"],
            queue="default",
            status=Status.FAILED,
            attempts=1,
            error_class="builtins.ValueError",
        )
        for n in range(120)
    )
    url = f"{LIST}retry-failed/?status__exact=failed"
    for person in two:
        assert "120 failed jobs match the current filter" in person.get(url)[2]
    answers = at_once(lambda: first.post(url), lambda: second.post(url))
    retried = []
    for person, answer in zip(two, answers, strict=True):
        shown = person.shown(answer)
        counts = [
            int(re.match(r"Retried (\d+) jobs?\.", text)[1]) for text in shown if text.startswith("Retried")
        ]
        retried.append(sum(counts))
    assert sum(retried) == 120
    ids = queued_ids()
    assert len(ids) == len(set(ids)) == 120  # none pushed twice
    assert LogEntry.objects.filter(change_message="Retried.").count() == 120
    assert {
        name: count for name, count in LogEntry.objects.values_list("user__username").annotate(n=Count("id"))
    } == {name: count for name, count in zip(("first", "second"), retried, strict=True) if count}
    drain()
    runs = fault_jobs.runs_of()
    assert [runs.get(f"{tag}-{n}") for n in range(120)] == [1] * 120
    assert Job.objects.filter(pk__in=[r.pk for r in records], status=Status.FINISHED).count() == 120


def test_two_people_pausing_and_resuming_one_queue_at_once_are_each_told_what_happened(two):
    first, second = two
    pause_url, resume_url = (f"/admin/jobs/dashboard/queues/low/{verb}/" for verb in ("pause", "resume"))
    answers = at_once(lambda: first.post(pause_url), lambda: second.post(pause_url))
    assert sorted(p.shown(a) for p, a in zip(two, answers, strict=True)) == [
        ["Queue low is paused: its jobs stay queued until it is resumed."],
        ["Queue low was already paused."],
    ]
    answers = at_once(lambda: first.post(resume_url), lambda: second.post(resume_url))
    assert sorted(p.shown(a) for p, a in zip(two, answers, strict=True)) == [
        ["Queue low is resumed."],
        ["Queue low was not paused."],
    ]
    assert pause.paused(["low"]) == set()
    assert list(LogEntry.objects.order_by("action_time").values_list("change_message", flat=True)) == [
        "Paused.",
        "Resumed.",
    ]


def test_a_post_replayed_after_signing_out_or_with_the_other_persons_token_changes_nothing(two):
    first, second = two
    record = counting()
    url = f"{LIST}{record.pk}/retry/"
    page = first.get(f"{LIST}{record.pk}/change/")[2]
    form_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    # The other person's token, from their cookie or their page's form: refused as a forgery.
    assert second.post(url, token=first.cookie("csrftoken"))[0] == 403
    assert second.post(url, token=form_token)[0] == 403
    # The first signs out; the same POST, replayed with the cookies it had, asks to sign in again.
    cookies = list(first.jar)
    assert first.post("/admin/logout/")[0] == 200
    for cookie in cookies:
        first.jar.set_cookie(cookie)
    status, location, _ = first.post(url, token=form_token)
    assert (status, location.split("?")[0]) == (302, "/admin/login/")
    record.refresh_from_db()
    assert record.status == Status.FAILED
    assert queued_ids() == []
    assert not LogEntry.objects.exists()


def messages_after(client, response):
    assert response.status_code == 302, response.content[:2000]
    return [str(message) for message in client.get(response["Location"]).context["messages"]]


def test_a_bulk_action_on_a_page_that_went_stale_says_what_it_left(client):
    """The first person's page of failed jobs was shown; the second then retried one of them and deleted
    another. The first person's action, on the jobs ticked on that page, is done on those still in the
    list, and says what it left and why; it said nothing of them (and nothing at all, when none was
    left), as the admin's actions skip silently what no longer matches the list."""
    first, second = Client(), Client()
    first.force_login(staff_user("view_job", "retry_job", "cancel_job", username="first"))
    second.force_login(staff_user("view_job", "retry_job", "delete_job", username="second"))
    retried, deleted, still_failed = counting(), counting(), counting()
    listing = f"{LIST}?status__exact=failed"
    assert first.get(listing).context["cl"].result_count == 3

    assert messages_after(second, second.post(f"{LIST}{retried.pk}/retry/")) == ["Retried 1 job."]
    deleting = {"action": "delete_selected", "_selected_action": [deleted.pk], "post": "yes"}
    assert messages_after(second, second.post(LIST, deleting)) == ["Successfully deleted 1 job."]

    ticked = [retried.pk, deleted.pk, still_failed.pk]
    response = first.post(listing, {"action": "retry_selected", "_selected_action": ticked, "index": 0})
    assert messages_after(first, response) == [
        "Retried 1 job.",
        "2 jobs were not retried: since the page was shown, they were deleted "
        "or no longer match the list's filters.",
    ]
    response = first.post(listing, {"action": "retry_selected", "_selected_action": ticked, "index": 0})
    assert messages_after(first, response) == [
        "3 jobs were not retried: since the page was shown, they were deleted "
        "or no longer match the list's filters.",
    ]
    # A page of queued jobs (the two retried), from which one job was deleted meanwhile.
    queued = f"{LIST}?status__exact=queued"
    response = first.post(queued, {"action": "cancel_selected", "_selected_action": ticked, "index": 0})
    assert messages_after(first, response) == [
        "Cancelled 2 jobs.",
        "1 job was not cancelled: since the page was shown, it was deleted "
        "or no longer matches the list's filters.",
    ]
    assert LogEntry.objects.filter(user__username="first", change_message="Retried.").count() == 1
    # "Retry all matching", confirmed on a page that counted jobs another person has retried since.
    again = counting()
    assert "1 failed job matches" in first.get(f"{LIST}retry-failed/?status__exact=failed").content.decode()
    assert messages_after(second, second.post(f"{LIST}{again.pk}/retry/")) == ["Retried 1 job."]
    response = first.post(f"{LIST}retry-failed/?status__exact=failed")
    assert messages_after(first, response) == [
        "No failed job matches the list's filters now: none was retried."
    ]
    drain()  # the two cancelled did not run; the one retried since did, once
    assert [fault_jobs.runs_of(record.args[0]) for record in (retried, still_failed, again)] == [0, 0, 1]


def a_lock_wait():
    """Whether a connection of this test's database waits for a row lock (PostgreSQL; on SQLite, whose
    writers take turns, a moment is enough for the second to wait)."""
    if connection.vendor != "postgresql":
        threading.Event().wait(0.3)
        return True
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0]


def statuses(*records):
    found = dict(Job.objects.filter(pk__in=[r.pk for r in records]).values_list("pk", "status"))
    return [found.get(record.pk) for record in records]


def test_a_job_deleted_while_another_person_retries_it_takes_the_jobs_waiting_for_it_along(monkeypatch):
    """One person retries a failed job (the jobs its failure failed wait for it again) while another deletes
    it: the delete waits for the retry, and cancels those jobs, as it cancels any job waiting for a
    deleted one. It settled them as they were before the retry (failed), then deleted the job under
    them: they waited for nothing, and the upkeep released them to run without it."""
    first = jobs.boom.enqueue()
    then = fault_jobs.count_run.using(depends_on=first).enqueue("then")
    last = fault_jobs.count_run.using(depends_on=then).enqueue("last")
    drain()
    assert statuses(first, then, last) == [Status.FAILED] * 3

    holding, go_on = threading.Event(), threading.Event()
    wait_again = transitions._wait_again

    def held_in_the_retry(alias, retried):
        holding.set()  # the retry holds the failed job's row, and has not made its dependents wait yet
        go_on.wait(timeout=30)
        return wait_again(alias, retried)

    monkeypatch.setattr(transitions, "_wait_again", held_in_the_retry)
    errors = []

    def in_thread(action):
        def run():
            try:
                action()
            except Exception as exc:  # the test fails on it below
                errors.append(exc)
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    retrying = in_thread(lambda: operations.retry(Job.objects.filter(pk=first.pk)))
    assert holding.wait(timeout=30)
    deleting = in_thread(lambda: operations.delete(Job.objects.filter(pk=first.pk), lambda qs: qs.delete()))
    wait_for(a_lock_wait, timeout=20, message="the delete to wait for the retry's lock")
    go_on.set()
    for thread in (retrying, deleting):
        thread.join(timeout=60)
    assert errors == []

    assert statuses(first, then, last) == [None, Status.CANCELLED, Status.CANCELLED]
    drain()
    assert fault_jobs.runs_of("then") + fault_jobs.runs_of("last") == 0


def test_a_retry_whose_rq_job_another_person_deletes_meanwhile_still_goes_through(client, monkeypatch):
    """The retry deletes RQ's old failed job before it pushes the new one; the other person's delete of
    the same record, at the same moment, may delete that RQ job first, between the retry's read of it and
    its delete. RQ then raised InvalidJobOperation (it reads the job's status as it deletes it), which
    escaped as a 500: the record said queued, nothing was pushed, and the retry was not in the history."""
    record = jobs.boom.enqueue()
    drain()
    rq_jobs = RQJob.fetch_many([str(record.pk)], connection=jobs_connection.get_connection("default"))
    assert rq_jobs[0] is not None  # RQ's failed job, which a retry deletes
    fetch_many = RQJob.fetch_many.__func__

    def read_then_deleted_by_the_other(cls, job_ids, connection, serializer=None):
        found = fetch_many(cls, job_ids, connection, serializer=serializer)
        for rq_job in found:
            if rq_job is not None:
                RQJob(rq_job.id, connection=connection).delete()
        return found

    monkeypatch.setattr(RQJob, "fetch_many", classmethod(read_then_deleted_by_the_other))
    client.force_login(staff_user("view_job", "retry_job"))
    response = client.post(f"/admin/jobs/job/{record.pk}/retry/")
    assert response.status_code == 302
    assert [str(m) for m in client.get(response["Location"]).context["messages"]] == ["Retried 1 job."]
    assert LogEntry.objects.filter(object_id=str(record.pk), change_message="Retried.").count() == 1
    assert jobs_connection.get_queue("default").get_job_ids() == [str(record.pk)]
    monkeypatch.undo()
    drain()
    assert statuses(record) == [Status.FAILED]  # boom fails again: it ran, once more
    assert Job.objects.get(pk=record.pk).attempts == 2
