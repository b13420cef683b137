"""The operator's bad day: the database drops every connection, again and again, while real workers run.

A ``ThreadedWorker`` (4 threads) and a ``LeanWorker`` share one queue. About 200 jobs of every kind are
enqueued (plain jobs, jobs that fail once and succeed on their retry, a chain, a group with its
callback); while they drain, every backend of the test database is terminated every 150 ms for 5 s, and
the test process enqueues more meanwhile. Then the README's promises are checked: every job ends
finished, each ran (at least once, its attempts as its runs say), the callbacks once after their whole
group, the chain in order, an enqueue either raised or made jobs that ran, no run is logged as stale
that was not, and both workers are alive, with no thread dead, and take new jobs. What the test prints
(run it with ``-s``) lists the workers' tracebacks, the jobs run more than once and the attempts whose
end the workers could not record: at-least-once allows them."""

import json
import re
import threading
import time
import uuid
from collections import Counter

import pytest
from django.db import DatabaseError, close_old_connections, connection, connections, transaction

from jobs.models import FINAL, FailedAttempt, Job, Status
from tests import chaos_jobs
from tests.helpers import WorkerProcess, not_final, tracebacks, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates PostgreSQL backends"),
]

FAST = {"ABANDONED_AFTER": 4, "RELAY_GRACE": 1, "RECONCILE_INTERVAL": 1, "RELAY_INTERVAL": 1}
KILL_EVERY, KILL_FOR = 0.15, 5.0
PLAIN, FAILS_ONCE, CHAIN, GROUP = 150, 20, 5, 20


class Killer(threading.Thread):
    """Terminates every other backend of the test database every ``KILL_EVERY`` s for ``KILL_FOR`` s, on a
    connection of its own (the test database only: ``datname = current_database()``)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.rounds = 0
        self.killed = 0
        self.errors: list[str] = []

    def run(self) -> None:
        own = connections.create_connection("default")
        try:
            deadline = time.monotonic() + KILL_FOR
            while time.monotonic() < deadline:
                try:
                    with own.cursor() as cursor:
                        cursor.execute(
                            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                        self.killed += cursor.fetchone()[0]
                    self.rounds += 1
                except DatabaseError as exc:  # not expected: the killer's own connection is spared
                    self.errors.append(repr(exc))
                    own.close()
                time.sleep(KILL_EVERY)
        finally:
            own.close()


def enqueue_the_batch(tag):
    """About 200 jobs of each kind; returns {name: record} and the chain's and group's names."""
    records = {}
    for n in range(PLAIN):
        name = f"{tag}-plain-{n}"
        records[name] = chaos_jobs.plain.enqueue(name, 0.05 + (n % 3) * 0.03)
    for n in range(FAILS_ONCE):
        name = f"{tag}-fails-once-{n}"
        records[name] = chaos_jobs.fails_once.enqueue(name)
    chain = f"{tag}-chain"
    previous = None
    for position in range(CHAIN):
        using = chaos_jobs.link.using(depends_on=previous) if previous else chaos_jobs.link
        previous = records[f"{chain}-{position}"] = using.enqueue(chain, position)
    group = f"{tag}-group"
    members = [chaos_jobs.member.enqueue(group, n) for n in range(GROUP)]
    for n, record in enumerate(members):
        records[f"{group}-{n}"] = record
    records[f"{group}-callback"] = chaos_jobs.callback.using(depends_on=members).enqueue(group)
    return records, chain, group


def enqueue_while_killing(tag, killer):
    """The caller's side: enqueues from this process while its connections are killed, as a web process
    with persistent connections would (``CONN_MAX_AGE``: Django closes a connection that failed around
    each request), in turns a lone job and, in one transaction, a group of two with its callback.
    Returns [(key, {name: record} or the error)]."""
    outcomes = []
    n = 0
    while killer.is_alive():
        close_old_connections()
        key = f"{tag}-caller-{n}"
        try:
            if n % 2:
                names = [f"{key}-0", f"{key}-1", f"{key}-callback"]
                with transaction.atomic():
                    members = [chaos_jobs.member.enqueue(key, m) for m in range(2)]
                    made = [*members, chaos_jobs.callback.using(depends_on=members).enqueue(key)]
            else:
                names = [key]
                made = [chaos_jobs.plain.enqueue(key, 0.01)]
            outcomes.append((key, dict(zip(names, made, strict=True))))
        except Exception as exc:
            outcomes.append((key, exc))
        n += 1
        time.sleep(0.03)
    close_old_connections()
    connection.close()
    return outcomes


def made_by(key):
    """The records an enqueue of the caller's side made, by name (see ``enqueue_while_killing``)."""
    made = {}
    for record in Job.objects.filter(args__0=key):
        if record.function == chaos_jobs.member.name:
            made[f"{key}-{record.args[1]}"] = record
        elif record.function == chaos_jobs.callback.name:
            made[f"{key}-callback"] = record
        else:
            made[key] = record
    return made


#: Tracebacks that the jobs failing on purpose leave in RQ's log of the lean worker.
ON_PURPOSE = re.compile(r"RuntimeError: first attempt of .* fails, as it should")
#: A run that a worker logged as stale: its end lost its condition, as it must once the reaper gave the
#: attempt up and a newer one took the job.
STALE = re.compile(r"Job (\S+) attempt (\d+) (succeeded|failed) after the record moved on")
ABANDONED = "jobs.exceptions.JobAbandoned"
#: How an attempt ends when the worker cannot record its run's end: given up by the reaper, or, in a
#: worker that records the end in the run (the lean one), failed with the database's error, when the
#: database took that failure (none of these jobs queries the database itself).
LOST_TO_THE_DATABASE = (ABANDONED, "django.db.utils.OperationalError", "django.db.utils.InterfaceError")


def check_record(name, row, runs, failures):
    """What is wrong with one job's record and runs (``failures``: its failed attempts by number)."""
    problems = []
    if row.status != Status.FINISHED:
        problems.append(f"{row.status} ({row.error_class}: {row.error_message[:200]})")
    if not runs:
        problems.append("never ran")
    if any(not 1 <= attempt <= row.attempts for attempt in runs):
        problems.append(f"runs given attempts {runs}, the record at attempt {row.attempts}")
    if len(set(runs)) != len(runs):
        problems.append(f"one attempt ran twice: {runs}")
    # Every attempt is a run, or one the reaper gave up (a claim whose run never came).
    unaccounted = (
        set(range(1, row.attempts + 1))
        - set(runs)
        - {number for number, (error_class, _) in failures.items() if error_class == ABANDONED}
    )
    if unaccounted:
        problems.append(f"attempts {sorted(unaccounted)} neither ran nor were given up")
    # A failed attempt is the job's own failure (attempt 1 of those that fail once) or one whose end the
    # worker could not record (the database failed on both sends).
    for number, (error_class, message) in failures.items():
        own = "-fails-once-" in name and number == 1 and error_class == "builtins.RuntimeError"
        if not own and error_class not in LOST_TO_THE_DATABASE:
            problems.append(f"attempt {number} failed: {error_class}: {message[:200]}")
    if "-fails-once-" in name and 1 not in runs:
        problems.append("its failing first attempt never ran")
    return problems


def test_workers_outlive_a_database_that_drops_every_connection_again_and_again(redis, monkeypatch):
    tag = uuid.uuid4().hex[:8]
    # This process enqueues as a web process with persistent connections: one killed while idle fails
    # the next enqueue, which a web request would answer with an error.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 600)
    connection.close()
    names = {"threaded": f"chaos-threaded-{tag}", "lean": f"chaos-lean-{tag}"}
    # Persistent connections, as the README advises for workers: the kept ones die between statements.
    workers = {
        "threaded": WorkerProcess(
            "--worker-class",
            "jobs.worker.ThreadedWorker",
            "--name",
            names["threaded"],
            queues=("default",),
            JOBS_TEST_JOBS=json.dumps({**FAST, "WORKER_CONCURRENCY": 4}),
            CONN_MAX_AGE="600",
        ),
        "lean": WorkerProcess(
            "--worker-class",
            "jobs.worker.LeanWorker",
            "--name",
            names["lean"],
            queues=("default",),
            JOBS_TEST_JOBS=json.dumps(FAST),
            CONN_MAX_AGE="600",
        ),
    }
    report = {}
    killer = Killer()
    try:
        wait_for(
            lambda: all(redis.exists(f"rq:worker:{name}") for name in names.values()),
            timeout=30,
            message="both workers to start",
        )
        records, chain, group = enqueue_the_batch(tag)
        started = time.monotonic()
        killer.start()
        callers = enqueue_while_killing(tag, killer)
        killer.join()
        enqueued = {key: made for key, made in callers if isinstance(made, dict)}
        refused = {key: error for key, error in callers if not isinstance(error, dict)}
        # An enqueue that raised may still have committed (its commit's answer lost with the
        # connection): what it made must then be whole, and run like the rest.
        raised_but_made = {key: made_by(key) for key in refused}
        raised_but_made = {key: made for key, made in raised_but_made.items() if made}
        for made in (*enqueued.values(), *raised_but_made.values()):
            records.update(made)
        wait_for(
            lambda: not not_final(records),
            timeout=60,
            interval=0.5,
            message=lambda: (
                f"every record to end; not yet: {not_final(records)[:20]}\n"
                + "".join(line for worker in workers.values() for line in [*worker.lines[-20:], "--\n"])
            ),
        )
        report["drained_after_s"] = round(time.monotonic() - started, 1)
        # Both workers alive, and each takes a new job: a few at a time, until each has run one.
        alive = {kind: worker.process.poll() is None for kind, worker in workers.items()}
        took = set()
        deadline = time.monotonic() + 20
        while took != set(names.values()) and time.monotonic() < deadline and all(alive.values()):
            after = [chaos_jobs.plain.enqueue(f"{tag}-after-{uuid.uuid4().hex}", 0.3) for _ in range(2)]
            after_records = Job.objects.filter(pk__in=[record.pk for record in after])
            wait_for(
                lambda after_records=after_records: all(r.status in FINAL for r in after_records.all()),
                timeout=20,
                message="the new jobs to end",
            )
            took |= set(after_records.filter(status=Status.FINISHED).values_list("worker_name", flat=True))
        report["alive"], report["took_a_new_job"] = alive, sorted(took)
    finally:
        if killer.is_alive():
            killer.join(KILL_FOR + 5)
        outputs = {kind: worker.stop() for kind, worker in workers.items()}
    report["kills"] = {"rounds": killer.rounds, "backends": killer.killed, "errors": killer.errors}

    # Every record ended finished; each job ran, its attempts as its runs say.
    rows = Job.objects.in_bulk([record.pk for record in records.values()])
    failures = {pk: {} for pk in rows}
    for attempt in FailedAttempt.objects.filter(job_id__in=rows):
        failures[attempt.job_id][attempt.number] = (attempt.error_class, attempt.error_message)
    problems = {}
    ran_again, given_up = {}, {}
    for name, record in records.items():
        row = rows.get(record.pk)
        if row is None:
            problems[name] = ["its record is gone"]
            continue
        runs = chaos_jobs.runs_of(name)
        found = check_record(name, row, runs, failures[row.pk])
        if found:
            problems[name] = found
        if len(runs) > (2 if "-fails-once-" in name else 1):
            ran_again[name] = runs
        lost = {
            number: error_class
            for number, (error_class, _) in failures[row.pk].items()
            if error_class in LOST_TO_THE_DATABASE
        }
        if lost:
            given_up[name] = {"attempts": lost, "runs": runs}

    # The workflows: each link of the chain after the one before it ended, each callback after its whole
    # group. (A job runs again only as a new attempt once the reaper gave one up: checked above.)
    order = chaos_jobs.chain_order(chain)
    if order != sorted(order) or set(order) != set(range(CHAIN)):
        problems["chain"] = [f"ran in the order {order}"]
    callers_groups = [key for key, made in (*enqueued.items(), *raised_but_made.items()) if len(made) == 3]
    callbacks = {group: GROUP, **dict.fromkeys(callers_groups, 2)}
    for key, size in callbacks.items():
        seen = chaos_jobs.members_seen_by_callback(key)
        if not seen or set(seen) != {size}:
            problems[f"{key}-callback"] = [f"its runs saw {seen} of its {size} members"]

    # The caller's side: an enqueue that returned made jobs that ran (above); one that raised made none,
    # or (its commit's answer lost with the connection) all of them, which ran like the others (above).
    for key, made in raised_but_made.items():
        if len(made) != (3 if int(key.rpartition("-")[2]) % 2 else 1):
            problems[key] = [f"its enqueue raised {refused[key]!r}, and left {sorted(made)}"]
    report["callers"] = {
        "enqueues": len(callers),
        "returned": len(enqueued),
        "raised": len(refused),
        "errors": sorted({f"{type(error).__module__}.{type(error).__name__}" for error in refused.values()}),
        "raised_but_made": {key: repr(refused[key]) for key in raised_but_made},
    }

    # The workers' logs: runs logged as stale must be stale; tracebacks are listed.
    false_stale = []
    for kind, output in outputs.items():
        for job_id, attempt, outcome in STALE.findall(output):
            given = failures.get(uuid.UUID(job_id), {}).get(int(attempt), ("", ""))[0]
            if given != ABANDONED:
                false_stale.append(f"{kind}: job {job_id} attempt {attempt} {outcome}, not given up")
    if false_stale:
        problems["logged as stale"] = false_stale
    report["tracebacks"] = {
        kind: sorted(
            {
                f"{last} (after: {before[:120]})"
                for before, last in tracebacks(output)
                if not ON_PURPOSE.search(last)
            }
        )
        for kind, output in outputs.items()
    }
    report["tracebacks_on_purpose"] = {
        kind: sum(1 for _, last in tracebacks(output) if ON_PURPOSE.search(last))
        for kind, output in outputs.items()
    }
    report["thread_deaths"] = {kind: output.count("Exception in thread") for kind, output in outputs.items()}
    report["ran_more_than_needed"] = ran_again
    report["attempts_lost_to_the_database"] = given_up
    report["records"] = dict(Counter(row.status for row in rows.values()))
    report["problems"] = problems
    # What the workers logged of the jobs with problems, or whose attempts the database cost.
    ids = {str(records[name].pk): name for name in {*problems, *given_up} if name in records}
    report["their_log_lines"] = {
        f"{ids[job_id]} {job_id}": [
            f"{kind}: {line[:300]}"
            for kind, output in outputs.items()
            for line in output.splitlines()
            if job_id in line
        ]
        for job_id in ids
    }
    print(json.dumps(report, indent=1, default=str))

    assert killer.killed > 0 and not killer.errors, report["kills"]
    assert enqueued and refused, "the chaos neither let an enqueue through nor refused one"
    assert not problems, problems
    assert all(alive.values()), alive
    assert took == set(names.values()), took
    assert not any(report["thread_deaths"].values()), outputs
