"""The dashboard's Cache section: counts per namespace from every process, and Redis down."""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import RequestFactory

from jobs.admin import figures as dashboard
from jobs.cache import stats
from jobs.cache.views import REASONS
from tests import cache_functions as fns
from tests import cache_urls

PAGE = "/admin/jobs/dashboard/"
DATA = "/admin/jobs/dashboard/data/"


@pytest.fixture
def viewer(client, db):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="jobs", codename="view_job"))
    client.force_login(user)
    return client


def test_cache_section_shows_counts_per_namespace(viewer, redis):
    stats.reset()
    fns.square(2)
    fns.square(2)
    fns.square(2)
    page = viewer.get(PAGE).content.decode()
    assert 'id="jobs-section-cache"' in page
    assert "tests.cache_functions.square" in page
    figures = viewer.get(DATA).json()["cache"]["namespaces"]
    expected = {"hits": 2, "misses": 1, "stale": 0, "refreshes": 0, "errors": 0, "bypasses": 0, "reasons": []}
    assert figures == [{"name": "tests.cache_functions.square", **expected}]


def test_cache_section_shows_bypasses_by_reason(viewer, redis):
    stats.reset()
    requests = RequestFactory()
    for token in ("A", "B"):
        cache_urls.whoami(requests.get("/whoami", headers={"authorization": f"Bearer {token}"}))
    cache_urls.missing(requests.get("/missing"))
    figures = {row["name"]: row for row in viewer.get(DATA).json()["cache"]["namespaces"]}
    whoami = figures["tests.cache_urls.whoami"]
    assert whoami["bypasses"] == 2
    assert whoami["reasons"] == [
        {"reason": "credentials", "count": 2, "why": str(REASONS["credentials"])},
    ]
    assert figures["tests.cache_urls.missing"]["reasons"][0]["reason"] == "status"
    page = viewer.get(PAGE).content.decode()
    assert "credentials: 2" in page


def test_cache_section_says_when_redis_does_not_answer(viewer, redis_server):
    redis_server.stop()
    assert "error" in dashboard.cache()
    assert viewer.get(PAGE).status_code == 200
