"""@cache_view through Django's test client and middleware, against the real Redis."""

import time
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.test import override_settings
from django.views import View

from jobs.cache import cache_view, invalidate_tags
from jobs.cache.store import store
from jobs.exceptions import InvalidCacheDefinition
from tests.cache_urls import runs

pytestmark = [pytest.mark.urls("tests.cache_urls"), pytest.mark.django_db]


def test_a_page_is_computed_once_and_served_from_the_cache(client):
    first = client.get("/page?a=1")
    second = client.get("/page?a=1")
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert runs("page") == 1
    assert second["Content-Type"] == "application/json"


def test_query_string_is_normalised_but_values_are_not_merged(client):
    a = client.get("/page?b=2&a=1").content
    assert client.get("/page?a=1&b=2").content == a
    assert runs("page") == 1
    client.get("/page?a=1&b=3")
    client.get("/page?a=1")
    client.get("/page?a=1&a=2")
    client.get("/page?a=2&a=1")
    assert runs("page") == 5


def test_query_strings_that_django_reads_differently_never_share_an_entry(client):
    # The last value wins in GET[name]; "a" and "%61" are one name; ";" is no separator.
    pairs = [("a=2&%61=1", "1"), ("%61=1&a=2", "2"), ("a=1;b=2", "1;b=2"), ("b=2&a=1", "1")]
    for query, expected in pairs:
        body = client.get(f"/page?{query}").json()
        assert dict(body["query"])["a"][-1] == expected, query


def test_hostile_query_strings_give_safe_keys(client, redis):
    hostile = "/page?" + "x=" + "ü" * 3000 + "&y=%00%0D%0A%20*&z=" + "{{ }} ' \" ;" * 50
    assert client.get(hostile).status_code == 200
    assert client.get(hostile).status_code == 200
    assert runs("page") == 1
    keys = redis.keys("jobsite:1:jobs-cache:2:entry:*")
    assert len(keys) == 1
    assert len(keys[0]) < 120 and keys[0].isascii()


def test_cache_control_max_age_and_etag(client):
    miss = client.get("/page")
    hit = client.get("/page")
    for response in (miss, hit):
        assert response["ETag"].startswith('"')
        max_age = int(response["Cache-Control"].split("max-age=")[1].split(",")[0])
        assert 0 < max_age <= 60
    assert miss["ETag"] == hit["ETag"]


def test_if_none_match_gives_304_without_a_body(client):
    etag = client.get("/page")["ETag"]
    not_modified = client.get("/page", headers={"if-none-match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified["ETag"] == etag
    assert client.get("/page", headers={"if-none-match": '"other"'}).status_code == 200


def test_x_cache_header_only_when_debug(client):
    with override_settings(DEBUG=True):
        assert client.get("/page")["X-Cache"] == "MISS"
        assert client.get("/page")["X-Cache"] == "HIT"
    assert not client.get("/page").has_header("X-Cache")


def test_pages_of_signed_in_users_are_neither_served_nor_stored(client):
    alice = User.objects.create_user("alice", password="pw")
    client.get("/greeting")  # anonymous: stored
    client.force_login(alice)
    with override_settings(DEBUG=True):
        response = client.get("/greeting")
    assert response.content.startswith(b"hello alice"), "alice never gets the anonymous page"
    assert response["X-Cache"] == "BYPASS"
    client.get("/greeting")
    assert runs("greeting") == 3
    client.logout()
    assert client.get("/greeting").content == b"hello anonymous #1", "alice's page was never stored"


def test_per_user_pages_are_keyed_by_user_and_private(client):
    alice = User.objects.create_user("alice", password="pw")
    bob = User.objects.create_user("bob", password="pw")
    client.force_login(alice)
    first = client.get("/dashboard")
    assert client.get("/dashboard").content == first.content == b"dashboard of alice #1"
    assert "private" in first["Cache-Control"]
    client.force_login(bob)
    assert client.get("/dashboard").content == b"dashboard of bob #2"
    client.logout()
    assert client.get("/dashboard").content == b"dashboard of anonymous #3"
    assert runs("dashboard") == 3


def test_pages_that_read_the_session_are_keyed_by_the_cookie(client):
    from django.test import Client

    stranger = Client()
    assert stranger.get("/cart").content == b"cart [] #1"
    client.get("/fill-cart")
    mine = client.get("/cart")
    assert mine.content == b"cart ['tea'] #2", "a visitor with a session never gets another's page"
    assert "Cookie" in mine["Vary"]
    assert client.get("/cart").content == b"cart ['tea'] #2"
    assert stranger.get("/cart").content == b"cart [] #1"
    assert Client().get("/cart").content == b"cart [] #1"


def test_responses_that_set_a_cookie_are_not_stored(client):
    client.get("/cookie")
    response = client.get("/cookie")
    assert response.cookies["flavour"].value == "oat"
    assert runs("sets_cookie") == 2


@pytest.mark.parametrize("directive", ["private", "no-store", "no-cache"])
def test_private_and_no_store_responses_are_not_stored(client, directive):
    client.get(f"/marked/{directive}")
    client.get(f"/marked/{directive}")
    assert runs("marked") == 2


def test_pages_with_a_csrf_token_are_not_stored(client):
    first = client.get("/form")
    second = client.get("/form")
    assert runs("with_form") == 2
    assert "csrftoken" in first.cookies
    assert first.content != second.content


def test_key_varies_on_the_headers_the_response_varies_on(client):
    en = client.get("/language", headers={"accept-language": "en"})
    fr = client.get("/language", headers={"accept-language": "fr"})
    assert en.content == b"en #1"
    assert fr.content == b"fr #2"
    assert client.get("/language", headers={"accept-language": "en"}).content == b"en #1"
    assert client.get("/language", headers={"accept-language": "fr"}).content == b"fr #2"
    assert "Accept-Language" in en["Vary"]


def test_vary_star_is_not_stored(client):
    client.get("/star")
    client.get("/star")
    assert runs("vary_star") == 2


def test_only_successful_responses_are_stored(client):
    assert client.get("/missing").status_code == 404
    assert client.get("/missing").status_code == 404
    assert runs("missing") == 2


def test_only_get_and_head_are_cached(client):
    assert client.post("/any").content == b"POST #1"
    assert client.post("/any").content == b"POST #2"
    assert client.get("/any").content == b"GET #3"
    head = client.head("/any")
    assert head.status_code == 200
    assert client.get("/any").content == b"GET #3"
    assert runs("any_method") == 3


def test_head_miss_is_not_stored(client):
    client.head("/any")
    assert client.get("/any").content == b"GET #2"


def test_view_invalidation_by_tag(client):
    client.get("/article/a")
    client.get("/article/b")
    assert invalidate_tags("article:a") == 1
    client.get("/article/a")
    client.get("/article/b")
    assert runs("article") == 3


@pytest.mark.parametrize("slug", ["a" * 300, "two words", "tab\tand\nnewline", "é" * 250])
def test_a_tag_made_of_any_text_from_the_url_is_stored_and_invalidated(client, slug):
    path = f"/article-by-name/{quote(slug)}"
    assert client.get(path).content == f"{slug} #1".encode()
    assert client.get(path).content == f"{slug} #1".encode()
    assert invalidate_tags("article:" + "a" * 299) == 0  # another tag, not a prefix of it
    assert invalidate_tags(f"article:{slug}") == 1
    assert client.get(path).content == f"{slug} #2".encode()


def test_stale_page_served_while_one_request_refreshes_it(client):
    with override_settings(DEBUG=True):
        assert client.get("/news").content == b"news #1"
        time.sleep(1.05)  # the page's ttl is 1 s: past it, the entry is stale (not a race)
        refreshed = client.get("/news")
        assert refreshed.content == b"news #2"
        assert refreshed["X-Cache"] == "MISS"
        assert client.get("/news")["X-Cache"] == "HIT"


def test_stale_page_served_when_another_request_is_refreshing(client, redis):
    with override_settings(DEBUG=True):
        client.get("/news")
        time.sleep(1.05)
        (key,) = [k.decode() for k in redis.keys("jobsite:1:jobs-cache:2:entry:tests.cache_urls.news:v1:*")]
        assert store().claim_refresh(key)  # another request is refreshing it
        stale = client.get("/news")
    assert stale.content == b"news #1"
    assert stale["X-Cache"] == "STALE"
    assert runs("news") == 1


def test_a_view_tags_callable_that_returns_one_string_is_refused(rf):
    @cache_view(ttl=60, namespace="one-string-view-tag", tags=lambda request, slug: f"article:{slug}")
    def article(request, slug):
        return HttpResponse(slug)

    with pytest.raises(InvalidCacheDefinition, match="not the string 'article:intro'"):
        article(rf.get("/article/intro"), slug="intro")


def test_an_async_view_is_refused():
    async def page(request):
        return HttpResponse("async")

    class AsyncPage(View):
        async def get(self, request):
            return HttpResponse("async")

    for view in (page, AsyncPage.as_view()):
        with pytest.raises(InvalidCacheDefinition, match="synchronous view"):
            cache_view(ttl=60, namespace="async-page")(view)
