"""``@cache_view``: whole responses cached in one Redis entry, safe for users, with ETags and 304s.

A page is stored only when it provably depends on nothing its key does not hold. The key is the scheme,
host (every part ``build_absolute_uri()`` reads), path, the query as ``request.GET`` decodes it with its
names sorted, the user with ``per_user=True``, the language the request resolves to and the active
language and time zone (as Django's page cache keys them), the request headers the response varies on,
the ``Cookie`` header when the view used the session in any way, and the cookies the view read. A
request or a page that may depend on anything else is passed through, counted as a bypass with its
reason (``REASONS``). Responses say in ``Vary`` what the key holds beyond the URL, for shared caches.

Middleware that runs after the view (it sets cookies, adds ``Vary``) is out of the decorator's sight;
``jobs.cache.middleware.CacheViewMiddleware``, first in ``MIDDLEWARE``, makes the decision once the whole
response is built.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.contrib.messages.storage.cookie import CookieStorage
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.messages.storage.session import SessionStorage
from django.core.exceptions import TooManyFieldsSent
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone, translation
from django.utils.cache import (
    get_conditional_response,
    get_max_age,
    has_vary_header,
    patch_cache_control,
    patch_vary_headers,
)
from django.utils.translation import gettext_lazy as _
from redis.lock import Lock

from ..exceptions import InvalidCacheDefinition
from . import invalidation, keys, stats
from .decorator import CachePolicy, Tags, computed_tags
from .store import ERRORS, FRESH, MISSING, CacheStore, Unstorable, release, store

logger = logging.getLogger("jobs")

View = Callable[..., HttpResponseBase]
UNSAFE_DIRECTIVES = {"private", "no-store", "no-cache"}
#: Headers never stored with a response.
NOT_STORED = {"set-cookie", "x-cache"}
#: Request headers that carry credentials: such a request is not cached, unless the header is in
#: ``vary_on`` (then each credential has entries of its own).
CREDENTIAL_HEADERS = ("Authorization", "Proxy-Authorization", "X-Api-Key", "X-Auth-Token")
#: What a web server that authenticated the visitor itself (Apache Basic auth, Kerberos) passes on.
SERVER_CREDENTIALS = ("REMOTE_USER", "AUTH_TYPE")
#: What ``get_host()`` and ``build_absolute_uri()`` may read of ``request.META`` besides the scheme.
HOST_META = ("HTTP_X_FORWARDED_HOST", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "HTTP_X_FORWARDED_PORT")
#: The cookie of Django's cookie message storage: a request that carries it has messages pending.
MESSAGES_COOKIE = CookieStorage.cookie_name
#: Message storages whose empty read depends only on the messages cookie (absent) and the session (keyed).
KNOWN_MESSAGE_STORAGES = (CookieStorage, SessionStorage, FallbackStorage)
#: The attribute by which CacheViewMiddleware asks the view's cache to leave the decision to it.
DEFERRED = "_jobs_cache_deferred"
#: Marks a header or cookie absent from the request, apart from present and empty (RFC 9111, 4.1).
ABSENT = None

#: Why a page was passed through, by the reason counted in the stats.
REASONS = {
    "signed-in": _("the user is signed in (per_user=True keeps one page per user)"),
    "credentials": _(
        "the request carries credentials, or the web server authenticated it "
        "(name the header in vary_on= to keep one page per credential)"
    ),
    "messages": _("the request carries flash messages, or the page read or added some"),
    "session-modified": _("the page changed the session"),
    "set-cookie": _("the response sets a cookie"),
    "csrf": _("the page used a CSRF token"),
    "csp-nonce": _("the page used the CSP nonce"),
    "cache-control": _("the response says private, no-store, no-cache or max-age=0"),
    "vary-star": _("the response says Vary: *"),
    "language": _("the page changed the active language or time zone"),
    "status": _("the status code is not one of statuses="),
    "streaming": _("the response is streamed"),
    "bad-tag": _("the tags computed from the request are not non-empty strings, or could not be computed"),
}


@dataclass
class Watch:
    """What a view touched while it ran, beyond the request's path and query."""

    session_read: bool = False
    cookies_read: frozenset[str] = frozenset()
    all_cookies_read: bool = False
    locale_changed: bool = False


@dataclass
class Pending:
    """A page the view's cache would store, waiting for CacheViewMiddleware to see the whole response."""

    view: CachedView
    cache: CacheStore
    base: list[Any]
    watch: Watch
    payload: tuple[int, dict[str, str], bytes]
    tags: tuple[str, ...]
    generations: list[Any]
    lock: Lock
    inner: HttpResponse = field(repr=False)

    def finish(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        try:
            return self.view.finish(self, request, response)
        finally:
            release(self.cache, self.lock)

    def drop(self) -> None:
        release(self.cache, self.lock)


class Deferred:
    """Set on a request by CacheViewMiddleware: the page to store, if any, once the response is built, and
    the cookies read meanwhile by any middleware as well as by the view."""

    __slots__ = ("cookies", "pending")

    def __init__(self, request: HttpRequest) -> None:
        self.pending: Pending | None = None
        self.cookies = _WatchedCookies(request.COOKIES)
        request.COOKIES = self.cookies

    def cookies_read(self) -> tuple[frozenset[str], bool]:
        """The cookies read during the request but those whose use is in the key or refused otherwise
        (the session's, CSRF's, the language's, the messages'), and whether all were read."""
        accounted = {
            settings.SESSION_COOKIE_NAME,
            settings.CSRF_COOKIE_NAME,
            settings.LANGUAGE_COOKIE_NAME,
            MESSAGES_COOKIE,
        }
        return frozenset(self.cookies.read - accounted), self.cookies.all

    def hand_over(self, pending: Pending) -> None:
        # A cached view called by another one: the outer view's page is the response.
        if self.pending is not None:
            self.pending.drop()
        self.pending = pending


class CachedView(CachePolicy):
    """The cache of one view; see ``cache_view()``."""

    def __init__(
        self,
        view: View,
        *,
        ttl: float | None,
        stale: float | None,
        namespace: str | None,
        version: int,
        tags: Tags,
        per_user: bool,
        vary_on: Iterable[str],
        credentials: Iterable[str],
        statuses: Iterable[int],
        alias: str | None,
    ) -> None:
        super().__init__(
            _dotted_path(view),
            ttl=ttl,
            stale=stale,
            namespace=namespace,
            version=version,
            tags=tags,
            alias=alias,
        )
        for name, headers in (("vary_on", vary_on), ("credentials", credentials)):
            if isinstance(headers, str) or not all(isinstance(h, str) and h for h in headers):
                raise InvalidCacheDefinition(f"{name} must be a list of header names")
        self.view = view
        self.per_user = per_user
        self.statuses = frozenset(statuses)
        self.declared = tuple(vary_on)
        # Headers the key varies on: those declared, and those responses were seen to vary on.
        self.vary = frozenset(h.lower() for h in vary_on)
        # Cookies the key holds: those the view was seen to read.
        self.cookies: frozenset[str] = frozenset()
        # Credential headers not opted into the key, as request.META names them.
        self.credential_meta = tuple(
            "HTTP_" + h.upper().replace("-", "_") for h in credentials if h.lower() not in self.vary
        )
        self._logged: set[str] = set()

    # The key

    def base(self, request: HttpRequest) -> list[Any]:
        """What every key of a request holds, read before the view runs.

        The host parts are read raw (hashed, never validated here): Django's ``get_host()`` has
        rejected a host not in ``ALLOWED_HOSTS`` before a response is used, and every part that
        ``get_host()`` or ``build_absolute_uri()`` may read is in the key. The language is the one the
        request resolves to (``LocaleMiddleware``'s, else ``get_language_from_request()``) and the active
        one, and the time zone the active one, as ``django.utils.cache`` suffixes its keys.
        """
        meta = request.META
        owner = ""
        if self.per_user:
            user = getattr(request, "user", None)
            owner = str(user.pk) if user is not None and user.is_authenticated else ""
        parts: list[Any] = [request.scheme or ""]
        parts += [meta.get(name, ABSENT) for name in HOST_META]
        parts += [request.path, _normalised_query(request), owner]
        return parts + _locale(request)

    def key(
        self,
        cache: CacheStore,
        request: HttpRequest,
        base: list[Any],
        vary: frozenset[str],
        cookies: frozenset[str] = frozenset(),
    ) -> str:
        """The Redis key of a request's entry: its base, and the headers and cookies it varies on."""
        parts = base
        if vary or cookies:
            parts = list(base)
            for header in sorted(vary):
                parts += [header, request.headers.get(header, ABSENT)]
            jar = request.COOKIES
            for name in sorted(cookies):
                parts += ["cookie:" + name, jar.get(name, ABSENT)]
        return cache.entry_key(self.namespace, self.version, keys.digest(parts))

    # A request

    def __call__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method not in ("GET", "HEAD"):
            return self.view(request, *args, **kwargs)
        # Read before our own look at the user (a middleware's): the page may depend on it.
        session_read = _session_accessed(request)
        reason = self.refusal_before(request)
        if reason is not None:
            return self.bypass(request, reason, self.view(request, *args, **kwargs))
        cache = store(self.alias)
        if not cache.available():
            stats.count(self.namespace, "errors")
            return _mark(self.view(request, *args, **kwargs), "ERROR")
        base = self.base(request)
        key = self.key(cache, request, base, self.vary, self.cookies)
        try:
            state, payload, fresh_until = cache.get(key)
        except ERRORS as exc:
            return self._uncached(cache, exc, request, args, kwargs)
        if state is FRESH:
            stats.count(self.namespace, "hits")
            return self._respond(request, payload, fresh_until, "HIT")
        if state is not MISSING and self.stale > 0:
            if not self._claim(cache, key):
                stats.count(self.namespace, "stale")
                return self._respond(request, payload, fresh_until, "STALE")
            # This request refreshes the entry; the others are served the stale one meanwhile.
            try:
                stats.count(self.namespace, "refreshes")
                return self._compute(cache, key, base, request, args, kwargs, session_read)
            finally:
                _quietly(cache, cache.release_refresh, key)
        stats.count(self.namespace, "misses")
        return self._compute(cache, key, base, request, args, kwargs, session_read)

    def refusal_before(self, request: HttpRequest) -> str | None:
        """Why a request may not be served from the cache nor fill it, if it may not (cheap checks first)."""
        meta = request.META
        for name in self.credential_meta:
            if name in meta:
                return "credentials"
        for name in SERVER_CREDENTIALS:
            if name in meta:
                return "credentials"
        user = getattr(request, "user", None)
        if not self.per_user and user is not None and user.is_authenticated:
            return "signed-in"
        if MESSAGES_COOKIE in meta.get("HTTP_COOKIE", "") and MESSAGES_COOKIE in request.COOKIES:
            return "messages"
        return None

    def bypass(self, request: HttpRequest, reason: str, response: HttpResponseBase) -> HttpResponseBase:
        """Pass a page through uncached: count it, and say why once per reason when ``DEBUG`` is on."""
        stats.count(self.namespace, "bypass:" + reason)
        if settings.DEBUG and reason not in self._logged:
            self._logged.add(reason)
            logger.info("%s is not cached for %s: %s", self.namespace, request.path, REASONS[reason])
        return _mark(response, "BYPASS")

    def _claim(self, cache: CacheStore, key: str) -> bool:
        try:
            return cache.claim_refresh(key)
        except ERRORS as exc:
            cache.failed(exc)
            return False

    def _uncached(self, cache: CacheStore, exc: BaseException, request: HttpRequest, args: Any, kwargs: Any):
        cache.failed(exc)
        stats.count(self.namespace, "errors")
        return _mark(self.view(request, *args, **kwargs), "ERROR")

    def _compute(
        self,
        cache: CacheStore,
        key: str,
        base: list[Any],
        request: HttpRequest,
        args: Any,
        kwargs: Any,
        session_read: bool,
    ) -> HttpResponseBase:
        lock = cache.lock(key)
        try:
            acquired = lock.acquire()
        except ERRORS as exc:
            return self._uncached(cache, exc, request, args, kwargs)
        handed_over = False
        try:
            storable = acquired and request.method == "GET"
            tags = self._request_tags(request, args, kwargs) if storable else ()
            if tags is None:
                return self.bypass(request, "bad-tag", self.view(request, *args, **kwargs))
            generations: list[Any] = []
            if acquired:
                try:
                    # The generations are read before the view runs: a tag invalidated while it runs
                    # keeps its page out.
                    state, payload, fresh_until, generations = cache.get_for_update(key, tags)
                except ERRORS as exc:
                    return self._uncached(cache, exc, request, args, kwargs)
                if state is FRESH:
                    return self._respond(request, payload, fresh_until, "HIT")
            response, watch = _run_watched(self, request, args, kwargs, render=storable)
            watch.session_read = watch.session_read or session_read
            if not storable:
                return _mark(response, "MISS")
            reason = self.refusal(request, response) or ("language" if watch.locale_changed else None)
            if reason is not None or not isinstance(response, HttpResponse):
                return self.bypass(request, reason or "streaming", response)
            deferred = getattr(request, DEFERRED, None)
            if deferred is None:
                return self._store(cache, request, response, base, watch, tags, generations)
            payload = self._payload(response)
            deferred.hand_over(Pending(self, cache, base, watch, payload, tags, generations, lock, response))
            handed_over = True
            return _mark(response, "MISS")
        finally:
            if acquired and not handed_over:
                release(cache, lock)

    def refusal(self, request: HttpRequest, response: HttpResponseBase) -> str | None:
        """Why a built page may not be stored, if it may not: what it used, set or says of itself."""
        if response.streaming or not isinstance(response, HttpResponse):
            return "streaming"
        if response.status_code not in self.statuses:
            return "status"
        return _used_refusal(request, response) or _said_refusal(response)

    def _varies(self, response: HttpResponseBase, watch: Watch) -> tuple[frozenset[str], frozenset[str]]:
        """The headers and cookies a page's key holds; learnt, so that later lookups hold them too."""
        vary = self.vary | _vary(response)
        # A page that read the session may differ per visitor: SessionMiddleware will say
        # "Vary: Cookie" once the page is on its way out, so the key varies on the cookie now.
        if watch.session_read or watch.all_cookies_read:
            vary |= {"cookie"}
        cookies = self.cookies | watch.cookies_read
        if not vary <= self.vary:
            self.vary = vary
        if not cookies <= self.cookies:
            self.cookies = cookies
        return vary, cookies

    def _request_tags(self, request: HttpRequest, args: Any, kwargs: Any) -> tuple[str, ...] | None:
        """The page's tags, or None if they cannot be had: tags made of request data (an empty query
        parameter) pass the page through, with a warning, and never break it."""
        tags = self._static_tags
        if tags is None:
            compute = functools.partial(self._tags, request, *args, **kwargs)
            tags = computed_tags(compute, self.namespace, f" for {request.path}")
        return tags

    def _payload(self, response: HttpResponse) -> tuple[int, dict[str, str], bytes]:
        if self.declared:
            patch_vary_headers(response, self.declared)
        content = response.content
        etag = response.get("ETag") or f'"{hashlib.blake2b(content, digest_size=16).hexdigest()}"'
        response["ETag"] = etag
        headers = {k: v for k, v in response.items() if k.lower() not in NOT_STORED}
        return response.status_code, headers, content

    def _put(
        self,
        cache: CacheStore,
        key: str,
        payload: tuple[int, dict[str, str], bytes],
        tags: tuple[str, ...],
        generations: list[Any],
    ) -> float:
        """Store a page; returns how long it is fresh (0: not stored, a tag of it was invalidated while
        it was built, or is to be when the transaction it was built in commits)."""
        if invalidation.pending(tags):
            return 0.0
        if not cache.available():
            return self.ttl  # Redis failed meanwhile: another timeout would tell nothing
        try:
            return cache.put(key, payload, self.ttl, self.stale, tags, generations)
        except ERRORS as exc:
            cache.failed(exc)
            stats.count(self.namespace, "errors")
        except Unstorable as exc:
            logger.error("A response of %s cannot be cached: %s", self.namespace, exc)
        return self.ttl

    def _store(
        self,
        cache: CacheStore,
        request: HttpRequest,
        response: HttpResponse,
        base: list[Any],
        watch: Watch,
        tags: tuple[str, ...],
        generations: list[Any],
    ) -> HttpResponseBase:
        vary, cookies = self._varies(response, watch)
        _announce(response, request, vary, cookies)
        payload = self._payload(response)
        fresh = self._put(cache, self.key(cache, request, base, vary, cookies), payload, tags, generations)
        self._headers(response, fresh)
        _mark(response, "MISS")
        return get_conditional_response(request, etag=response["ETag"], response=response) or response

    def finish(self, pending: Pending, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        """Store a page once every middleware has had its say (``CacheViewMiddleware``)."""
        if response is not pending.inner:
            # A middleware answered with a page of its own (an error, a redirect): nothing is stored.
            return response
        reason = self.refusal(request, response)
        if reason is not None:
            return self.bypass(request, reason, response)
        deferred: Deferred = getattr(request, DEFERRED)
        read, all_read = deferred.cookies_read()
        pending.watch.cookies_read |= read
        pending.watch.all_cookies_read |= all_read
        vary, cookies = self._varies(response, pending.watch)
        _announce(response, request, vary, cookies)
        if response.has_header("Vary"):
            pending.payload[1]["Vary"] = response["Vary"]
        key = self.key(pending.cache, request, pending.base, vary, cookies)
        fresh = self._put(pending.cache, key, pending.payload, pending.tags, pending.generations)
        self._headers(response, fresh)
        return get_conditional_response(request, etag=response.get("ETag"), response=response) or response

    def _respond(self, request: HttpRequest, payload: Any, fresh_until: float, state: str):
        status, headers, content = payload
        response = HttpResponse(content, status=status, headers=headers)
        # Its stored headers say what its key holds (``_store``), but for this request's language cookie.
        if settings.USE_I18N and _has_language_cookie(request):
            patch_vary_headers(response, ["Cookie"])
        self._headers(response, fresh_until - time.time())
        _mark(response, state)
        if "HTTP_IF_NONE_MATCH" in request.META or "HTTP_IF_MODIFIED_SINCE" in request.META:
            return get_conditional_response(request, etag=headers["ETag"], response=response) or response
        return response

    def _headers(self, response: HttpResponseBase, fresh: float) -> None:
        max_age = max(0, int(fresh))
        if not response.has_header("Cache-Control"):
            response.headers["Cache-Control"] = (
                f"private, max-age={max_age}" if self.per_user else f"max-age={max_age}"
            )
        elif self.per_user:
            patch_cache_control(response, private=True, max_age=max_age)
        else:
            patch_cache_control(response, max_age=max_age)


def _used_refusal(request: HttpRequest, response: HttpResponse) -> str | None:
    """Why a page may not be stored for what it used or changed of the visitor's state."""
    session = _real_session(request)
    if session is not None and getattr(session, "modified", False):
        return "session-modified"
    if response.cookies or response.has_header("Set-Cookie"):
        return "set-cookie"
    if request.META.get("CSRF_COOKIE_NEEDS_UPDATE"):
        return "csrf"
    if _messages_used(request):
        return "messages"
    if getattr(request, "_csp_nonce", None):  # Django 6's LazyNonce is true once generated
        return "csp-nonce"
    return None


def _said_refusal(response: HttpResponse) -> str | None:
    """Why a page may not be stored for what it says of itself (as UpdateCacheMiddleware reads it)."""
    control = response.get("Cache-Control")
    if control:
        directives = {d.split("=", 1)[0].strip().lower() for d in control.split(",")}
        if directives & UNSAFE_DIRECTIVES or get_max_age(response) == 0:
            return "cache-control"
    if has_vary_header(response, "*"):
        return "vary-star"
    return None


class _WatchedCookies(dict):
    """``request.COOKIES`` while a view runs: it remembers which cookies the view read."""

    def __init__(self, cookies: dict[str, str]) -> None:
        super().__init__(dict.items(cookies))  # not as a read of all of them, should they be watched too
        self.read: set[str] = set()
        self.all = False

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return super().get(name, default)

    def __contains__(self, name: object) -> bool:
        self.read.add(str(name))
        return super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        self.all = True
        return super().__iter__()

    def __len__(self) -> int:
        self.all = True
        return super().__len__()

    def keys(self):
        self.all = True
        return super().keys()

    def values(self):
        self.all = True
        return super().values()

    def items(self):
        self.all = True
        return super().items()


class _WatchedSession:
    """``request.session`` while a cached view runs: any use of it counts as a read, and marks the
    session ``accessed`` (so ``SessionMiddleware`` says ``Vary: Cookie``). Django marks it only when its
    data is loaded, yet a page found by ``session_key``, ``exists()`` or ``is_empty()`` is the visitor's."""

    __slots__ = ("_jobs_session",)

    def __init__(self, session: Any) -> None:
        object.__setattr__(self, "_jobs_session", session)

    def _used(self) -> Any:
        session = object.__getattribute__(self, "_jobs_session")
        session.accessed = True
        return session

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(request.session, SessionBase) still holds
        return type(object.__getattribute__(self, "_jobs_session"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._used(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._used(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._used(), name)

    def __getitem__(self, key: str) -> Any:
        return self._used()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._used()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._used()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._used()


def _real_session(request: HttpRequest) -> Any:
    """The request's session, looked at without counting as the page's use of it."""
    session = getattr(request, "session", None)
    if type(session) is _WatchedSession:
        return object.__getattribute__(session, "_jobs_session")
    return session


def _session_accessed(request: HttpRequest) -> bool:
    return bool(getattr(_real_session(request), "accessed", False))


def _run_watched(
    cached: CachedView, request: HttpRequest, args: Any, kwargs: Any, render: bool
) -> tuple[HttpResponseBase, Watch]:
    """Run the view (and render its template, which may read the session, messages or a token) and
    say what it touched; our own look at the user before it does not count."""
    watch = Watch()
    session = _real_session(request)
    if session is not None and not hasattr(session, "accessed"):
        session = None
    accessed_before = session is not None and session.accessed
    if session is not None:
        session.accessed = False
        outer_session = request.session
        request.session = _WatchedSession(session)  # type: ignore[assignment]
    cookies = request.COOKIES
    watched = _WatchedCookies(cookies)
    request.COOKIES = watched
    locale = _active_locale()
    try:
        response = cached.view(request, *args, **kwargs)
        if render and not getattr(response, "is_rendered", True):
            response.render()  # type: ignore[attr-defined]
        watch.locale_changed = _active_locale() != locale
    finally:
        request.COOKIES = cookies
        if session is not None:
            request.session = outer_session
            watch.session_read = session.accessed
            session.accessed = session.accessed or accessed_before
    watch.cookies_read = frozenset(watched.read)
    watch.all_cookies_read = watched.all
    return response, watch


def _active_locale() -> tuple[str | None, str | None]:
    return (
        translation.get_language() if settings.USE_I18N else None,
        timezone.get_current_timezone_name() if settings.USE_TZ else None,
    )


def _locale(request: HttpRequest) -> list[Any]:
    """The language the request resolves to and the active one, and the active time zone."""
    parts: list[Any] = []
    if settings.USE_I18N:
        requested = getattr(request, "LANGUAGE_CODE", None)
        if requested is None:
            meta = request.META
            name = settings.LANGUAGE_COOKIE_NAME
            cookie = request.COOKIES.get(name) if name in meta.get("HTTP_COOKIE", "") else None
            requested = _requested_language(cookie, meta.get("HTTP_ACCEPT_LANGUAGE", ""))
        parts += [requested, translation.get_language()]
    if settings.USE_TZ:
        parts.append(timezone.get_current_timezone_name())
    return parts


@functools.lru_cache(maxsize=1024)
def _requested_language(cookie: str | None, accept: str) -> str:
    """``get_language_from_request()`` of a request with this language cookie and ``Accept-Language``
    (all it reads without ``LocaleMiddleware``), worked out once per pair."""
    stand_in = HttpRequest()
    if cookie is not None:
        stand_in.COOKIES[settings.LANGUAGE_COOKIE_NAME] = cookie
    stand_in.META["HTTP_ACCEPT_LANGUAGE"] = accept
    return translation.get_language_from_request(stand_in)


@receiver(setting_changed)
def _forget_languages(*, setting: str, **kwargs: Any) -> None:
    if setting in {"LANGUAGES", "LANGUAGE_CODE", "LANGUAGE_COOKIE_NAME", "LOCALE_PATHS", "INSTALLED_APPS"}:
        _requested_language.cache_clear()


def _messages_used(request: HttpRequest) -> bool:
    """Whether the page read, showed or added flash messages that may not be every visitor's."""
    storage = getattr(request, "_messages", None)
    if storage is None:
        return False
    if getattr(storage, "used", False) or getattr(storage, "added_new", False):
        return True
    loaded = getattr(storage, "_loaded_data", None)
    if loaded is None:
        return False
    # Read and empty: with Django's storages, the state of every visitor without the messages cookie
    # (refused before) and with this session (in the key once read).
    return bool(loaded) or not isinstance(storage, KNOWN_MESSAGE_STORAGES)


def _normalised_query(request: HttpRequest) -> str:
    """The query as the view sees it (``request.GET``, decoded as Django decodes it), its names sorted
    and the values of one name in their order: two queries the view sees apart are two strings.

    A query with nothing to decode is its pairs sorted by name (a stable sort, as ``QueryDict`` splits
    them, on ``&`` only), without building a ``QueryDict`` on every hit; any other is ``request.GET``
    encoded again (``é`` and ``%C3%A9`` are one name). A query Django refuses to parse (too many
    fields) is kept as it came, which holds it as well.
    """
    query = request.META.get("QUERY_STRING", "")
    if "%" not in query and "+" not in query and query.isascii():  # nothing to decode
        if "&" not in query:
            return query
        return "&".join(sorted((pair for pair in query.split("&") if pair), key=_name_of))
    try:
        return urlencode(sorted(request.GET.lists()), doseq=True)
    except TooManyFieldsSent:
        return query


def _name_of(pair: str) -> str:
    return pair.partition("=")[0]


def _announce(
    response: HttpResponseBase, request: HttpRequest, vary: frozenset[str], cookies: frozenset[str]
) -> None:
    """Tell shared caches (a CDN, a proxy) what the key holds beyond the URL, as Django's page cache
    would: a page keyed by a cookie, the session or the requested language is not everyone's."""
    held: dict[str, None] = {}
    if cookies or "cookie" in vary:
        held["Cookie"] = None
    if settings.USE_I18N:
        held["Accept-Language"] = None
        if _has_language_cookie(request):
            held["Cookie"] = None
    if held:
        patch_vary_headers(response, list(held))


def _has_language_cookie(request: HttpRequest) -> bool:
    """Whether the request carries the language cookie (not a read of the page's: ``COOKIES`` itself)."""
    name = settings.LANGUAGE_COOKIE_NAME
    return name in request.META.get("HTTP_COOKIE", "") and dict.__contains__(request.COOKIES, name)


def _vary(response: HttpResponseBase) -> frozenset[str]:
    if not response.has_header("Vary"):
        return frozenset()
    return frozenset(h.strip().lower() for h in response.headers["Vary"].split(",") if h.strip())


def _mark(response: HttpResponseBase, state: str) -> HttpResponseBase:
    if settings.DEBUG:
        response["X-Cache"] = state
    return response


def _quietly(cache: CacheStore, action: Callable[..., Any], *args: Any) -> None:
    try:
        action(*args)
    except ERRORS as exc:
        cache.failed(exc)


def _dotted_path(view: View) -> str:
    """The view's name for its default namespace: a class-based view's class (every ``as_view()``
    function's own name is ``View.as_view.<locals>.view``)."""
    named = getattr(view, "view_class", view)
    return f"{named.__module__}.{getattr(named, '__qualname__', type(named).__qualname__)}"


def cache_view(
    view: View | None = None,
    /,
    *,
    ttl: float | None = None,
    stale: float | None = None,
    namespace: str | None = None,
    version: int = 1,
    tags: Tags = (),
    per_user: bool = False,
    vary_on: Iterable[str] = (),
    credentials: Iterable[str] = CREDENTIAL_HEADERS,
    statuses: Iterable[int] = (200,),
    alias: str | None = None,
) -> Any:
    """Cache a view's responses: ``@cache_view`` or ``@cache_view(ttl=60, vary_on=["Accept-Language"])``.

    ``ttl`` and ``stale`` as for ``@cached``; past ``ttl``, within ``stale``, one request recomputes the
    page while the others get the stale one at once. ``tags``: strings, or a callable of
    ``(request, *args, **kwargs)``. ``per_user``: cache pages of signed-in users too, one per user,
    marked ``private``. ``vary_on``: request headers the page depends on (headers named in the
    response's ``Vary`` are added by themselves); naming a credential header there keeps one page per
    credential. ``credentials``: request headers that carry credentials; a request with one that is
    not in ``vary_on`` is never cached. ``statuses``: which status codes are stored.
    """

    def decorate(v: View) -> View:
        if not callable(v):
            raise InvalidCacheDefinition(f"@cache_view decorates a view function, not {v!r}")
        # An async def, or the as_view() of an async class-based view (marked by asgiref before Python 3.12).
        if iscoroutinefunction(v):
            raise InvalidCacheDefinition(f"@cache_view decorates a synchronous view, not the async {v!r}")
        cached_view = CachedView(
            v,
            ttl=ttl,
            stale=stale,
            namespace=namespace,
            version=version,
            tags=tags,
            per_user=per_user,
            vary_on=vary_on,
            credentials=credentials,
            statuses=statuses,
            alias=alias,
        )

        @functools.wraps(v)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            return cached_view(request, *args, **kwargs)

        wrapper.cache = cached_view  # type: ignore[attr-defined]
        return wrapper

    return decorate(view) if view is not None else decorate
