"""The demo's slow page under @cache_view: slow once, then served from Redis; bad input is a 400."""

import pytest
from django.test import override_settings

from jobsite import cache_demo

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _quick(monkeypatch):
    monkeypatch.setattr(cache_demo, "PAUSE_SECONDS", 0)


@override_settings(DEBUG=True)
def test_slow_page_is_computed_once_then_served_from_the_cache(client):
    first = client.get("/demo/slow?n=100")
    second = client.get("/demo/slow?n=100")
    assert first.status_code == second.status_code == 200
    assert (first["X-Cache"], second["X-Cache"]) == ("MISS", "HIT")
    assert first.json() == second.json()
    assert first.json()["primes"] == 25


@pytest.mark.parametrize(
    ("query", "message"), [("n=abc", "n must be a whole number"), ("n=1", "n must be from 2 to 100000")]
)
def test_bad_parameters_get_a_400_that_is_not_cached(client, query, message):
    for _ in range(2):
        response = client.get(f"/demo/slow?{query}")
        assert response.status_code == 400
        assert message in response.json()["error"]


def test_home_page_links_to_the_slow_page(client):
    assert 'data-slow="/demo/slow"' in client.get("/").content.decode()
