"""The README's Quick start, run as a new user would: a fresh ``django-admin startproject`` site made from
the section's own code blocks, read from README.md so that the two cannot drift apart.

Each block of the section is marked by an HTML comment before it: ``<!-- quickstart: run -->`` (shell
commands), ``<!-- quickstart: write PATH -->`` and ``<!-- quickstart: append PATH -->`` (a file's
content). The test changes only the Redis address (to its own server) and what a person does by hand:
``--burst`` on ``rqworker``, the test client instead of ``runserver`` and a browser, and a superuser made
in the shell instead of ``createsuperuser``'s prompts. It adds one job of its own that fails until it is
retried, for the admin's retry.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import OWN_SQLITE_DATABASE, ROOT

BLOCK = re.compile(r"<!-- quickstart: (run|write|append) ?(\S*) -->\n```\w*\n(.*?)```", re.DOTALL)
ADDRESS = "redis://127.0.0.1:6379"

#: A job of the test's own, appended to myapp/jobs.py: it fails until its marker file exists.
FAILING_JOB = """

import os


@job
def fails_until_marked(path):
    if not os.path.exists(path):
        raise RuntimeError("not yet")
    return "done"
"""

#: Django's test environment (the test client's host), then the step's own code; prints one JSON line.
PRELUDE = """
import json
from django.contrib.auth.models import User
from django.test import Client
from django.test.utils import setup_test_environment
from jobs.models import Job
setup_test_environment()
"""


def quickstart_section() -> str:
    """The README's Quick start, up to its first subsection."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Quick start in your project") :]
    return section[: re.search(r"\n###? ", section).start()]


def quickstart_blocks() -> list[tuple[str, str, str]]:
    section = quickstart_section()
    blocks = BLOCK.findall(section)
    assert section.count("<!-- quickstart:") == len(blocks), "a quickstart marker is not followed by a block"
    return blocks


class Project:
    """Runs commands as the README's shell blocks say, in a directory of the test's own."""

    def __init__(self, directory: Path, redis_url: str) -> None:
        self.cwd = directory
        self.env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("DJANGO_", "JOBS_", "REDIS_")) and name != "PYTHONPATH"
        }
        self.env["PYTHONPATH"] = str(ROOT)  # the `jobs` under test, as `pip install` would provide it
        self.redis_url = redis_url
        self.worker_commands: list[list[str]] = []

    def run(self, *command: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            command, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{' '.join(command)} exited with {done.returncode}:\n{output}"
        return done

    def shell_line(self, line: str) -> None:
        line = line.split("  #")[0].strip()
        words = line.split()
        if not words or words[:2] == ["pip", "install"]:
            return  # the package under test is on PYTHONPATH
        if words[0] == "cd":
            self.cwd = self.cwd / words[1]
        elif words[0] == "django-admin":
            self.run(sys.executable, "-m", "django", *words[1:])
        elif words[:2] == ["python", "manage.py"] and words[2] == "rqworker":
            self.worker_commands.append([sys.executable, "manage.py", *words[2:], "--burst"])
        elif words[:2] == ["python", "manage.py"] and words[2] in ("runserver", "createsuperuser"):
            return  # the test client and the steps' own superuser stand in for them
        elif words[:2] == ["python", "manage.py"]:
            self.run(sys.executable, *words[1:])
        else:
            pytest.fail(f"the Quick start has a command this test does not know how to run: {line!r}")

    def write(self, mode: str, path: str, content: str) -> None:
        target = self.cwd / path
        if path.endswith("settings.py"):
            assert ADDRESS in content, (
                "the Quick start's settings no longer name the Redis this test replaces"
            )
            content = content.replace(ADDRESS, self.redis_url)
        if mode == "append":
            content = target.read_text() + "\n\n" + content
        target.write_text(content)

    def step(self, code: str) -> dict:
        """Run Python in the project (``manage.py shell -c``); it ends by printing one JSON line."""
        done = self.run(sys.executable, "manage.py", "shell", "-c", PRELUDE + textwrap.dedent(code))
        return json.loads(done.stdout.strip().splitlines()[-1])

    def work(self) -> None:
        assert self.worker_commands, "the Quick start never starts a worker"
        for command in self.worker_commands:
            self.run(*command)


@pytest.mark.slow
@OWN_SQLITE_DATABASE
def test_a_new_project_made_from_the_quick_start_runs_jobs_retries_and_caches(tmp_path, redis_server):
    base_url = redis_server.url.rsplit("/", 1)[0]
    project = Project(tmp_path, base_url)
    for kind, path, content in quickstart_blocks():
        if kind == "run":
            for line in content.splitlines():
                project.shell_line(line)
        else:
            project.write(kind, path, content)
    (project.cwd / "myapp" / "jobs.py").write_text(
        (project.cwd / "myapp" / "jobs.py").read_text() + FAILING_JOB
    )

    checked = project.run(sys.executable, "manage.py", "check", "--fail-level", "WARNING")
    assert "System check identified no issues (0 silenced)" in checked.stdout, checked.stdout + checked.stderr

    marker = tmp_path / "retried"
    first = project.step(f"""
        from myapp.jobs import fails_until_marked
        from myapp.views import product_changed
        admin = User.objects.create_superuser("admin", "admin@example.com", None)
        person = Client()
        assert person.get("/report/").status_code == 403
        person.force_login(admin)
        answer = person.get("/report/")
        assert answer.status_code == 202, answer.content
        assert person.get("/schedule/").status_code == 202
        failing = fails_until_marked.enqueue({str(marker)!r})
        visitor = Client()
        pages = [visitor.get("/products/lamp/") for _ in range(2)]
        dropped = product_changed("lamp")
        pages.append(visitor.get("/products/lamp/"))
        print(json.dumps({{
            "report": answer.json()["id"], "failing": str(failing.pk), "dropped": dropped,
            "x_cache": [page["X-Cache"] for page in pages],
            "same": pages[0].content == pages[1].content, "rebuilt": pages[2].content != pages[0].content,
        }}))
    """)
    assert first["x_cache"] == ["MISS", "HIT", "MISS"]
    assert first["same"] and first["rebuilt"] and first["dropped"] == 1

    project.work()
    second = project.step(f"""
        report, failing = Job.objects.get(pk={first["report"]!r}), Job.objects.get(pk={first["failing"]!r})
        before = [report.status, report.result, failing.status]
        open({str(marker)!r}, "w").close()
        person = Client()
        person.force_login(User.objects.get(username="admin"))
        action = {{"action": "retry_selected", "_selected_action": [str(failing.pk)]}}
        retried = person.post("/admin/jobs/job/", action)
        failing.refresh_from_db()
        record = person.get("/jobs/api/jobs/" + str(report.pk) + "/").json()
        print(json.dumps({{"before": before, "retried": retried.status_code, "after": failing.status,
                          "api": record}}))
    """)
    assert second["before"] == ["finished", {"user": "admin", "period": "2026-11", "pages": 12}, "failed"]
    assert second["retried"] == 302
    assert second["after"] == "queued"
    assert second["api"]["status"] == "finished"
    section = quickstart_section()
    assert [field for field in second["api"] if f"`{field}`" not in section] == [], "API fields not listed"

    project.work()
    with sqlite3.connect(project.cwd / "db.sqlite3") as database:  # no third Django start for two reads
        status, attempts = database.execute(
            "SELECT status, attempts FROM jobs_job WHERE id = ?", [first["failing"].replace("-", "")]
        ).fetchone()
        logged = database.execute(
            "SELECT COUNT(*) FROM django_admin_log WHERE object_id = ?", [first["failing"]]
        ).fetchone()[0]
    assert (status, attempts, logged) == ("finished", 2, 1)
