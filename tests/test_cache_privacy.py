"""@cache_view never gives one visitor's page to another: two separate clients (no shared cookies), the
middleware of a new ``startproject`` site plus LocaleMiddleware, the real Redis. The first client fills
the cache; the second must not see the first one's data."""

import importlib.util
import logging
import re

import pytest
from django.test import Client, override_settings

from jobs.cache import stats
from tests.cache_urls import runs

pytestmark = [pytest.mark.urls("tests.cache_urls"), pytest.mark.django_db]

STARTPROJECT = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
LOCALE = "django.middleware.locale.LocaleMiddleware"
SITE = [*STARTPROJECT[:2], LOCALE, *STARTPROJECT[2:]]
CACHE_MIDDLEWARE = "jobs.cache.middleware.CacheViewMiddleware"
HAS_CSP = importlib.util.find_spec("django.middleware.csp") is not None


@pytest.fixture(autouse=True)
def site():
    with override_settings(MIDDLEWARE=SITE):
        yield


def bypasses(namespace: str) -> dict[str, int]:
    return stats.read().get(f"tests.cache_urls.{namespace}", {}).get("reasons", {})


def test_a_request_with_credentials_is_neither_served_nor_stored():
    a, b, c = Client(), Client(), Client()
    assert a.get("/whoami", headers={"authorization": "Bearer token-A"}).content == b"hello Bearer token-A #1"
    assert b.get("/whoami").content == b"hello nobody #2"
    assert c.get("/whoami", headers={"authorization": "Bearer token-C"}).content == b"hello Bearer token-C #3"
    assert b.get("/whoami").content == b"hello nobody #2", "a page without credentials is still cached"
    basic = "Basic YWRhOnB3"
    assert a.get("/whoami", headers={"authorization": basic}).content == f"hello {basic} #4".encode()
    assert bypasses("whoami") == {"credentials": 3}


def test_a_credential_header_named_in_vary_on_keeps_one_page_per_credential():
    a, b, c = Client(), Client(), Client()
    first = a.get("/whoami-keyed", headers={"authorization": "Bearer token-A"})
    assert first.content == b"hello Bearer token-A #1"
    assert "Authorization" in first["Vary"]
    assert b.get("/whoami-keyed").content == b"hello nobody #2"
    token_c = c.get("/whoami-keyed", headers={"authorization": "Bearer token-C"})
    assert token_c.content == b"hello Bearer token-C #3"
    again = a.get("/whoami-keyed", headers={"authorization": "Bearer token-A"})
    assert again.content == b"hello Bearer token-A #1"
    assert runs("whoami_keyed") == 3


@pytest.mark.parametrize("url", ["/board", "/board-later"])
def test_flash_messages_reach_only_their_visitor(url):
    a, b = Client(), Client()
    a.post("/thanks")
    assert b"Thanks, Ada" in a.get(url).content
    page = b.get(url)
    assert b"Thanks" not in page.content
    assert b.get(url).content == page.content, "a page without messages is still cached"
    assert runs("board") == 2


def test_a_visitor_with_pending_messages_is_not_served_a_cached_page():
    a, b = Client(), Client()
    assert b.get("/board").content == b"board #1"
    assert b"Thanks, Ada" in a.post("/thanks", follow=True).content
    assert a.get("/board").content == b"board #3", "the messages were shown once, then the cache serves"
    assert runs("board") == 3


def test_per_user_pages_of_anonymous_visitors_never_share_a_session():
    a, b = Client(), Client()
    first = a.get("/basket")
    assert first.content == b"basket 1 #1"
    assert "sessionid" in first.cookies
    second = b.get("/basket")
    assert second.content == b"basket 2 #2", "a new visitor gets a basket of their own"
    assert "sessionid" in second.cookies, "and the cookie that keeps it"
    assert a.get("/basket").content.startswith(b"basket 1 ")
    assert b.get("/basket").content.startswith(b"basket 2 ")
    assert "session-modified" in bypasses("basket")


def test_the_key_holds_the_language_locale_middleware_chose():
    a, b = Client(), Client()
    french = a.get("/hello", headers={"accept-language": "fr"})
    assert french.content == "fr oui,non,peut-être #1".encode()
    english = b.get("/hello", headers={"accept-language": "en"})
    assert english["Content-Language"] == "en"
    assert english.content == b"en yes,no,maybe #2"
    assert b.get("/hello", headers={"accept-language": "en"}).content == b"en yes,no,maybe #2"
    assert Client().get("/hello", headers={"accept-language": "fr-FR,fr;q=0.9"}).content == french.content


def test_the_language_cookie_never_fills_the_entry_of_visitors_without_it():
    a, b = Client(), Client()
    a.cookies["django_language"] = "fr"
    french = a.get("/hello-vary", headers={"accept-language": "en"})
    assert french.content.startswith(b"fr oui")
    english = b.get("/hello-vary", headers={"accept-language": "en"})
    assert english.content == b"en yes,no,maybe #2"
    assert a.get("/hello-vary", headers={"accept-language": "en"}).content == french.content


@override_settings(MIDDLEWARE=STARTPROJECT)
def test_a_view_that_picks_the_language_from_the_request_is_keyed_by_it():
    a, b = Client(), Client()
    a.cookies["django_language"] = "fr"
    assert a.get("/hello-chosen").content == b"fr #1"
    assert b.get("/hello-chosen").content == b"en #2"
    assert b.get("/hello-chosen", headers={"accept-language": "de"}).content == b"de #3"


@override_settings(MIDDLEWARE=[*SITE, "tests.cache_urls.TimezoneMiddleware"])
def test_the_key_holds_the_active_time_zone():
    a, b = Client(), Client()
    a.cookies["tz"] = "Europe/Paris"
    assert a.get("/clock").content == b"14:00 CEST #1"
    assert b.get("/clock").content == b"12:00 UTC #2"
    assert b.get("/clock").content == b"12:00 UTC #2"


@pytest.mark.parametrize("first", [[], [CACHE_MIDDLEWARE]], ids=["decorator", "middleware"])
def test_a_session_a_middleware_read_before_the_view_keys_the_page(first):
    with override_settings(MIDDLEWARE=[*first, *SITE, "tests.cache_urls.CurrencyMiddleware"]):
        a, b = Client(), Client()
        assert a.get("/prices", {"currency": "USD"}).content == b"prices in USD #1"
        assert a.get("/prices").content == b"prices in USD #2"  # the session read: keyed by its cookie
        assert b.get("/prices").content == b"prices in EUR #3", "another visitor's session's page"
        assert a.get("/prices").content == b"prices in USD #2"
        assert b.get("/prices").content == b"prices in EUR #3"


def test_the_key_holds_the_cookies_the_view_read():
    a, b, c = Client(), Client(), Client()
    a.cookies["theme"] = "dark"
    b.cookies["theme"] = "light"
    assert a.get("/themed").content == b"theme dark #1"
    assert b.get("/themed").content == b"theme light #2"
    assert c.get("/themed").content == b"theme plain #3"
    assert a.get("/themed").content == b"theme dark #1"


@pytest.mark.skipif(not HAS_CSP, reason="Django's CSP middleware (and its nonce) came with Django 6.0")
def test_a_page_that_used_the_csp_nonce_is_not_stored():
    from django.utils.csp import CSP

    middleware = [*SITE, "django.middleware.csp.ContentSecurityPolicyMiddleware"]
    with override_settings(MIDDLEWARE=middleware, SECURE_CSP={"script-src": [CSP.SELF, CSP.NONCE]}):
        a, b = Client(), Client()
        first, second = a.get("/scripted"), b.get("/scripted")
    nonces = [re.search(rb'nonce="([^"]+)"', r.content).group(1).decode() for r in (first, second)]
    assert nonces[0] != nonces[1], "each visitor gets a nonce of their own"
    for response, nonce in zip((first, second), nonces, strict=True):
        assert f"'nonce-{nonce}'" in response["Content-Security-Policy"]
    assert bypasses("scripted") == {"csp-nonce": 2}


@override_settings(MIDDLEWARE=[CACHE_MIDDLEWARE, *SITE, "tests.cache_urls.DeviceMiddleware"])
def test_with_the_middleware_a_vary_added_after_the_view_is_in_the_key():
    mobile, desktop = {"user-agent": "Phone Mobile"}, {"user-agent": "Desk"}
    a, b = Client(), Client()
    assert a.get("/device", headers=mobile).content == b"mobile page #1"
    assert b.get("/device", headers=desktop).content == b"desktop page #2"
    assert Client().get("/device", headers=mobile).content == b"mobile page #1"
    assert Client().get("/device", headers=desktop).content == b"desktop page #2"


# A site without sessions: no "Vary: Cookie" keys every page by the whole Cookie header.
@override_settings(
    MIDDLEWARE=[
        CACHE_MIDDLEWARE,
        "django.middleware.csrf.CsrfViewMiddleware",
        "tests.cache_urls.SkinMiddleware",
    ]
)
def test_with_the_middleware_a_cookie_a_middleware_read_before_the_view_is_in_the_key():
    a, b, c = Client(), Client(), Client()
    a.cookies["skin"] = "dark"
    b.cookies["skin"] = "light"
    assert a.get("/skinned").content == b"skin dark #1"
    assert b.get("/skinned").content == b"skin light #2"
    assert c.get("/skinned").content == b"skin plain #3"
    assert a.get("/skinned").content == b"skin dark #1"
    assert c.get("/skinned").content == b"skin plain #3"
    # The CSRF cookie, which CsrfViewMiddleware reads on every request, keys nothing of its own.
    d = Client()
    d.cookies["csrftoken"] = "x" * 32
    assert d.get("/skinned").content == b"skin plain #3"


@override_settings(MIDDLEWARE=[CACHE_MIDDLEWARE, *SITE])
def test_with_the_middleware_the_cases_above_still_hold():
    a, b = Client(), Client()
    a.post("/thanks")
    assert b"Thanks" in a.get("/board").content
    assert b"Thanks" not in b.get("/board").content
    assert b.get("/whoami").content != a.get("/whoami", headers={"authorization": "Bearer A"}).content
    assert Client().get("/basket").content != Client().get("/basket").content
    c = Client()
    c.cookies["django_language"] = "fr"
    assert c.get("/hello-vary").content.startswith(b"fr ")
    assert Client().get("/hello-vary").content.startswith(b"en")


@override_settings(MIDDLEWARE=[CACHE_MIDDLEWARE, *SITE], DEBUG=True)
def test_with_the_middleware_a_page_is_stored_once_the_response_is_built():
    a, b = Client(), Client()
    first = a.get("/hello")
    assert first["X-Cache"] == "MISS"
    assert "max-age=" in first["Cache-Control"]
    hit = b.get("/hello")
    assert hit["X-Cache"] == "HIT"
    assert hit.content == first.content
    assert hit["ETag"] == first["ETag"]
    assert b.get("/hello", headers={"if-none-match": first["ETag"]}).status_code == 304
    assert runs("hello") == 1


@override_settings(MIDDLEWARE=[CACHE_MIDDLEWARE, *SITE], DEBUG=True)
def test_with_the_middleware_a_cookie_set_by_any_middleware_prevents_storing():
    a, b = Client(), Client()
    assert a.get("/form")["X-Cache"] == "BYPASS"
    assert b.get("/basket")["X-Cache"] == "BYPASS"
    assert runs("with_form") == 1


@override_settings(DEBUG=True)
def test_a_bypass_is_logged_once_per_view_and_reason(caplog):
    client = Client()
    with caplog.at_level(logging.INFO, logger="jobs"):
        for _ in range(3):
            assert client.get("/whoami", headers={"authorization": "Bearer A"})["X-Cache"] == "BYPASS"
    logged = [r.getMessage() for r in caplog.records if "is not cached" in r.getMessage()]
    assert len(logged) == 1
    assert "tests.cache_urls.whoami" in logged[0] and "credentials" in logged[0]
