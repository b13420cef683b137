"""@cache_view and what a page may depend on beyond its path: the session however it is used, the web
server's login, the query as Django decodes it, the forwarded port, a raw Set-Cookie, tags made of
request data; and what it tells shared caches (a CDN, a proxy) of what its key holds. Two clients are
two browsers; the real Redis."""

import logging

import pytest
from django.http import HttpResponse
from django.test import Client, override_settings
from django.views import View

from jobs.cache import cache_view, stats
from jobs.exceptions import InvalidCacheDefinition
from tests import cache_urls
from tests.cache_urls import runs
from tests.test_cache_privacy import STARTPROJECT

pytestmark = [pytest.mark.urls("tests.cache_urls"), pytest.mark.django_db]

SESSIONS = ["django.contrib.sessions.middleware.SessionMiddleware"]
CACHE_MIDDLEWARE = "jobs.cache.middleware.CacheViewMiddleware"
SESSION_SITES = {
    "startproject": STARTPROJECT,
    "startproject+middleware": [CACHE_MIDDLEWARE, *STARTPROJECT],
    "sessions": SESSIONS,
    "sessions+middleware": [CACHE_MIDDLEWARE, *SESSIONS],
}
COMMON = ["django.middleware.common.CommonMiddleware"]


@pytest.fixture(autouse=True)
def new_process():
    """What each view learnt (headers and cookies it varies on) is forgotten, as in a new process."""
    for view in vars(cache_urls).values():
        cached = getattr(view, "cache", None)
        if cached is not None:
            cached.vary = frozenset(h.lower() for h in cached.declared)
            cached.cookies = frozenset()
    cache_urls.CARTS.clear()


def vary(response) -> set[str]:
    return {header.strip() for header in response.get("Vary", "").split(",") if header.strip()}


def bypasses(namespace: str) -> dict[str, int]:
    return stats.read().get(f"tests.cache_urls.{namespace}", {}).get("reasons", {})


# The session, however the page uses it


@pytest.mark.parametrize("middleware", SESSION_SITES.values(), ids=SESSION_SITES.keys())
def test_a_page_found_by_the_session_key_reaches_only_its_visitor(middleware):
    with override_settings(MIDDLEWARE=middleware):
        ada, bob, carol = Client(), Client(), Client()
        ada.get("/add-to-cart/ada-secret-item")
        bob.get("/add-to-cart/bobs-book")
        assert ada.get("/cart-by-key").content == b"cart ['ada-secret-item'] #1"
        assert bob.get("/cart-by-key").content == b"cart ['bobs-book'] #2", "bob got ada's cart"
        assert carol.get("/cart-by-key").content == b"cart [] #3"
        # Still cached: each visitor's page, by the session cookie.
        assert ada.get("/cart-by-key").content == b"cart ['ada-secret-item'] #1"
        assert Client().get("/cart-by-key").content == b"cart [] #3"


@pytest.mark.parametrize("middleware", SESSION_SITES.values(), ids=SESSION_SITES.keys())
def test_a_page_that_asks_whether_the_session_is_empty_is_keyed_by_it(middleware):
    with override_settings(MIDDLEWARE=middleware):
        returning, new = Client(), Client()
        returning.get("/add-to-cart/tea")
        assert returning.get("/welcome").content == b"returning #1"
        assert new.get("/welcome").content == b"new #2", "a new visitor was welcomed back"


@override_settings(MIDDLEWARE=SESSIONS)
def test_a_page_keyed_by_the_session_key_tells_shared_caches_so():
    ada = Client()
    ada.get("/add-to-cart/tea")
    for response in (ada.get("/cart-by-key"), ada.get("/cart-by-key")):  # the miss, then the hit
        assert "Cookie" in response["Vary"]


# The web server's own login


@pytest.mark.parametrize(
    "meta", [{"REMOTE_USER": "ada"}, {"AUTH_TYPE": "Basic"}], ids=["remote-user", "auth-type"]
)
@override_settings(MIDDLEWARE=STARTPROJECT)
def test_a_user_the_web_server_authenticated_is_neither_served_nor_stored(meta):
    anonymous = Client()
    assert anonymous.get("/intranet").content == b"hello nobody #1"
    ada, bob = Client(**meta), Client(REMOTE_USER="bob")
    assert ada.get("/intranet").content == f"hello {meta.get('REMOTE_USER', 'nobody')} #2".encode()
    assert bob.get("/intranet").content == b"hello bob #3", "bob got another user's page"
    assert bob.get("/intranet").content == b"hello bob #4"
    assert anonymous.get("/intranet").content == b"hello nobody #1", "a page without a login is still cached"
    assert bypasses("intranet") == {"credentials": 3}


# A cookie set by hand


@pytest.mark.parametrize(
    "middleware", [STARTPROJECT, [CACHE_MIDDLEWARE, *STARTPROJECT]], ids=["decorator", "middleware"]
)
def test_a_cookie_set_as_a_raw_header_is_not_stored(middleware):
    with override_settings(MIDDLEWARE=middleware):
        first, second = Client().get("/raw-cookie"), Client().get("/raw-cookie")
    assert (first.content, first["Set-Cookie"]) == (b"variant 1", "ab=variant-1; Path=/")
    assert (second.content, second["Set-Cookie"]) == (b"variant 2", "ab=variant-2; Path=/")
    assert bypasses("raw_cookie") == {"set-cookie": 2}


# The query as the view sees it


@override_settings(MIDDLEWARE=COMMON)
def test_one_name_spelled_raw_and_percent_encoded_keeps_its_values_in_order():
    first = Client().get("/page?%C3%A9=a&é=b")
    assert first.json()["query"] == [["é", ["a", "b"]]]
    second = Client().get("/page?é=b&%C3%A9=a")
    assert second.json()["query"] == [["é", ["b", "a"]]], "b got a page made for another order of values"
    assert runs("page") == 2


@override_settings(MIDDLEWARE=COMMON)
def test_queries_the_view_sees_alike_share_an_entry():
    first = Client().get("/page?b=2&a=1&%C3%A9=x")
    assert Client().get("/page?%61=1&é=x&b=2").content == first.content
    assert runs("page") == 1


# The host as build_absolute_uri() gives it


@override_settings(MIDDLEWARE=COMMON, USE_X_FORWARDED_PORT=True)
def test_the_forwarded_port_is_in_the_key():
    forwarded = Client().get("/absolute", headers={"x-forwarded-port": "8443"})
    assert forwarded.content == b"link http://testserver:8443/x #1"
    assert Client().get("/absolute").content == b"link http://testserver/x #2"
    assert Client().get("/absolute", headers={"x-forwarded-port": "8443"}).content == forwarded.content


# Tags made of request data


@override_settings(MIDDLEWARE=COMMON)
def test_a_tag_made_empty_by_the_request_passes_the_page_through(caplog):
    client = Client(raise_request_exception=False)
    assert client.get("/listing?category=lamps").content == b"listing lamps #1"
    assert client.get("/listing?category=lamps").content == b"listing lamps #1"
    with caplog.at_level(logging.WARNING, logger="jobs"):
        response = client.get("/listing")
    assert (response.status_code, response.content) == (200, b"listing all #2")
    assert "tests.cache_urls.listing is not cached for /listing" in caplog.text
    assert client.get("/listing").content == b"listing all #3", "neither served nor stored"
    assert bypasses("listing") == {"bad-tag": 2}


@override_settings(MIDDLEWARE=COMMON)
def test_a_tags_function_that_fails_on_the_request_passes_the_page_through():
    client = Client(raise_request_exception=False)
    response = client.get("/shelf")
    assert (response.status_code, response.content) == (200, b"shelf none #1")
    assert client.get("/shelf?shelf=top").content == b"shelf top #2"
    assert client.get("/shelf?shelf=top").content == b"shelf top #2"
    assert bypasses("shelf") == {"bad-tag": 1}


def test_an_empty_tag_in_code_still_fails_at_decoration():
    with pytest.raises(InvalidCacheDefinition, match="non-empty string"):
        cache_view(tags=[""])(lambda request: HttpResponse())


# What shared caches are told


@pytest.mark.parametrize(
    "middleware", [[], COMMON, [CACHE_MIDDLEWARE, *COMMON]], ids=["none", "common", "middleware"]
)
def test_a_page_keyed_by_a_cookie_tells_shared_caches_so(middleware):
    with override_settings(MIDDLEWARE=middleware):
        dark = Client()
        dark.cookies["theme"] = "dark"
        for response in (dark.get("/themed"), dark.get("/themed")):  # the miss, then the hit
            assert response.content == b"theme dark #1"
            assert "Cookie" in response["Vary"]
            assert "private" not in response["Cache-Control"]


@override_settings(MIDDLEWARE=COMMON)
def test_a_page_keyed_by_the_requested_language_tells_shared_caches_so():
    # The view reads the language cookie (get_language_from_request()): its key holds it, and says so.
    french = Client().get("/hello-chosen", headers={"accept-language": "fr"})
    assert (french.content, vary(french)) == (b"fr #1", {"Accept-Language", "Cookie"})
    hit = Client().get("/hello-chosen", headers={"accept-language": "fr-FR,fr;q=0.9"})
    assert (hit.content, vary(hit)) == (b"fr #1", {"Accept-Language", "Cookie"})
    by_cookie = Client()
    by_cookie.cookies["django_language"] = "de"
    german = by_cookie.get("/hello-chosen", headers={"accept-language": "fr"})
    assert (german.content, vary(german)) == (b"de #2", {"Accept-Language", "Cookie"})


@override_settings(MIDDLEWARE=COMMON)
def test_a_page_whose_language_came_from_a_cookie_tells_shared_caches_so():
    runs_before = len(cache_urls.PLAIN_RUNS)
    first = Client().get("/plain")
    assert vary(first) == {"Accept-Language"}
    by_cookie = Client()
    by_cookie.cookies["django_language"] = "en"
    hit = by_cookie.get("/plain")  # the same language: the same entry, told as this request's key holds it
    assert (hit.content, vary(hit)) == (first.content, {"Accept-Language", "Cookie"})
    other = Client()
    other.cookies["django_language"] = "de"
    assert vary(other.get("/plain")) == {"Accept-Language", "Cookie"}  # a miss
    assert len(cache_urls.PLAIN_RUNS) - runs_before == 2


@override_settings(MIDDLEWARE=COMMON)
def test_a_page_keyed_by_nothing_more_announces_only_the_language():
    first = Client().get("/plain")
    assert first["Vary"] == "Accept-Language"
    # The announcement keys nothing: requests resolving to one language share an entry.
    again = Client().get("/plain", headers={"accept-language": "en-US,en;q=0.8"})
    assert (again.content, again["Vary"]) == (first.content, "Accept-Language")


@override_settings(MIDDLEWARE=COMMON, USE_I18N=False)
def test_without_translations_no_language_is_announced():
    assert not Client().get("/plain").has_header("Vary")


class Prices(View):
    pass


class Stock(View):
    pass


def test_class_based_views_have_namespaces_of_their_own():
    """``as_view()`` gives every class-based view a function of one name (``View.as_view.<locals>.view``):
    the default namespace is the class's, so that two views' counts and invalidations stay apart."""
    namespaces = [cache_view(ttl=60)(view.as_view()).cache.namespace for view in (Prices, Stock)]
    assert namespaces == [f"{__name__}.Prices", f"{__name__}.Stock"]
