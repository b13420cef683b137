"""``@cache_view``: whole responses cached in one Redis entry, safe for users, with ETags and 304s.

A response is stored only when it is safe to give to anyone who sends the same request: a ``GET``
answered with a cacheable status, no cookie set, no ``private``/``no-store``/``no-cache``, no CSRF token
used, no ``Vary: *``, and no authenticated user (unless ``per_user=True``, which keys by user and marks
the response ``private``). The key is the scheme, host, path, the query string with its parameters
sorted, and the values of the request headers the response varies on.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_plus

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.cache import get_conditional_response, patch_cache_control

from ..exceptions import InvalidCacheDefinition
from . import keys, stats
from .decorator import UNSTORABLE, CachePolicy, Tags
from .store import ERRORS, FRESH, MISSING, CacheStore, release, store

logger = logging.getLogger("jobs")
#: How Cache-Control and Vary separate their items (as django.utils.cache splits them).
_COMMA = re.compile(r"\s*,\s*")

View = Callable[..., HttpResponseBase]
UNSAFE_DIRECTIVES = {"private", "no-store", "no-cache"}
#: Headers never stored with a response.
NOT_STORED = {"set-cookie", "x-cache"}


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
        statuses: Iterable[int],
        alias: str | None,
    ) -> None:
        super().__init__(
            f"{view.__module__}.{getattr(view, '__qualname__', type(view).__qualname__)}",
            ttl=ttl,
            stale=stale,
            namespace=namespace,
            version=version,
            tags=tags,
            alias=alias,
        )
        if isinstance(vary_on, str) or not all(isinstance(h, str) and h for h in vary_on):
            raise InvalidCacheDefinition("vary_on must be a list of header names")
        self.view = view
        self.per_user = per_user
        self.statuses = frozenset(statuses)
        # Headers the key varies on: those declared, and those responses were seen to vary on.
        self.vary = frozenset(h.lower() for h in vary_on)

    def key(self, cache: CacheStore, request: HttpRequest, vary: frozenset[str]) -> str:
        """The Redis key of a request's entry.

        The host parts are read raw (hashed, never validated here): Django's ``get_host()`` has
        rejected a host not in ``ALLOWED_HOSTS`` before a response is used, and every part that
        ``get_host()`` or ``build_absolute_uri()`` may read is in the key.
        """
        meta = request.META
        user = getattr(request, "user", None)
        owner = str(user.pk) if self.per_user and user is not None and user.is_authenticated else ""
        parts: list[str] = [
            request.scheme or "",
            meta.get("HTTP_X_FORWARDED_HOST", ""),
            meta.get("HTTP_HOST", ""),
            meta.get("SERVER_NAME", ""),
            meta.get("SERVER_PORT", ""),
            request.path,
            _normalised_query(meta.get("QUERY_STRING", "")),
            owner,
        ]
        for header in sorted(vary):
            parts += [header, request.headers.get(header, "")]
        return cache.entry_key(self.namespace, self.version, keys.digest(parts))

    def __call__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method not in ("GET", "HEAD"):
            return self.view(request, *args, **kwargs)
        user = getattr(request, "user", None)
        if not self.per_user and user is not None and user.is_authenticated:
            return _mark(self.view(request, *args, **kwargs), "BYPASS")
        cache = store(self.alias)
        if not cache.available():
            stats.count(self.namespace, "errors")
            return _mark(self.view(request, *args, **kwargs), "ERROR")
        key = self.key(cache, request, self.vary)
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
                return self._compute(cache, key, request, args, kwargs)
            finally:
                _quietly(cache, cache.release_refresh, key)
        stats.count(self.namespace, "misses")
        return self._compute(cache, key, request, args, kwargs)

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

    def _compute(self, cache: CacheStore, key: str, request: HttpRequest, args: Any, kwargs: Any):
        lock = cache.lock(key)
        try:
            acquired = lock.acquire()
        except ERRORS as exc:
            return self._uncached(cache, exc, request, args, kwargs)
        try:
            if acquired:
                try:
                    state, payload, fresh_until = cache.get(key)
                except ERRORS as exc:
                    return self._uncached(cache, exc, request, args, kwargs)
                if state is FRESH:
                    return self._respond(request, payload, fresh_until, "HIT")
            response, used_session = _run_watching_session(self.view, request, args, kwargs)
            if acquired and isinstance(response, HttpResponse) and self._storable(request, response):
                return self._store(cache, request, response, args, kwargs, used_session)
            return _mark(response, "MISS")
        finally:
            if acquired:
                release(lock)

    def _storable(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        if request.method != "GET" or response.status_code not in self.statuses or response.streaming:
            return False
        if response.cookies or request.META.get("CSRF_COOKIE_NEEDS_UPDATE"):
            return False
        session = getattr(request, "session", None)
        if session is not None and not self.per_user and session.modified:
            return False
        control = _COMMA.split(response.get("Cache-Control", ""))
        if {d.split("=", 1)[0].strip().lower() for d in control} & UNSAFE_DIRECTIVES:
            return False
        return "*" not in _vary(response)

    def _store(
        self,
        cache: CacheStore,
        request: HttpRequest,
        response: HttpResponse,
        args: Any,
        kwargs: Any,
        used_session: bool,
    ) -> HttpResponseBase:
        # A page that read the session may differ per visitor: SessionMiddleware will say
        # "Vary: Cookie" once the page is on its way out, so the key varies on the cookie now.
        vary = self.vary | _vary(response) | ({"cookie"} if used_session else set())
        if not vary <= self.vary:
            self.vary = vary  # learnt: later lookups in this process key on these headers too
        key = self.key(cache, request, vary)
        content = response.content
        etag = response.get("ETag") or f'"{hashlib.blake2b(content, digest_size=16).hexdigest()}"'
        headers = {k: v for k, v in response.items() if k.lower() not in NOT_STORED}
        headers["ETag"] = etag
        payload = (response.status_code, headers, content)
        tags = self._static_tags
        if tags is None:
            tags = tuple(keys.check_tag(t) for t in self._tags(request, *args, **kwargs))
        fresh = self.ttl
        try:
            fresh = cache.put(key, payload, self.ttl, self.stale, tags)
        except ERRORS as exc:
            cache.failed(exc)
            stats.count(self.namespace, "errors")
        except UNSTORABLE as exc:
            logger.error("A response of %s cannot be cached: %s", self.namespace, exc)
        response["ETag"] = etag
        self._headers(response, fresh)
        _mark(response, "MISS")
        return get_conditional_response(request, etag=etag, response=response) or response

    def _respond(self, request: HttpRequest, payload: Any, fresh_until: float, state: str):
        status, headers, content = payload
        response = HttpResponse(content, status=status, headers=headers)
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


def _run_watching_session(
    view: View, request: HttpRequest, args: Any, kwargs: Any
) -> tuple[HttpResponseBase, bool]:
    """Run the view; also say whether it read the session (our own check of the user does not count)."""
    session = getattr(request, "session", None)
    if session is None or not hasattr(session, "accessed"):
        return view(request, *args, **kwargs), False
    accessed_before = session.accessed
    session.accessed = False
    try:
        response = view(request, *args, **kwargs)
        used = session.accessed
    finally:
        session.accessed = session.accessed or accessed_before
    return response, used


def _normalised_query(query: str) -> str:
    """Parameters sorted by their decoded name, as ``QueryDict`` splits them (on ``&`` only).

    The sort is stable, so the values of one name keep their order (``getlist()`` and ``GET[name]``
    see it), also when the name is spelled two ways (``a`` and ``%61``).
    """
    if "&" not in query:
        return query
    pairs = [pair for pair in query.split("&") if pair]
    return "&".join(sorted(pairs, key=lambda pair: unquote_plus(pair.partition("=")[0])))


def _vary(response: HttpResponseBase) -> frozenset[str]:
    if not response.has_header("Vary"):
        return frozenset()
    return frozenset(h.strip().lower() for h in _COMMA.split(response["Vary"]) if h.strip())


def _mark(response: HttpResponseBase, state: str) -> HttpResponseBase:
    if settings.DEBUG:
        response["X-Cache"] = state
    return response


def _quietly(cache: CacheStore, action: Callable[..., Any], *args: Any) -> None:
    try:
        action(*args)
    except ERRORS as exc:
        cache.failed(exc)


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
    statuses: Iterable[int] = (200,),
    alias: str | None = None,
) -> Any:
    """Cache a view's responses: ``@cache_view`` or ``@cache_view(ttl=60, vary_on=["Accept-Language"])``.

    ``ttl`` and ``stale`` as for ``@cached``; past ``ttl``, within ``stale``, one request recomputes the
    page while the others get the stale one at once. ``tags``: strings, or a callable of
    ``(request, *args, **kwargs)``. ``per_user``: cache pages of signed-in users too, one per user,
    marked ``private``. ``vary_on``: request headers the page depends on (headers named in the
    response's ``Vary`` are added by themselves). ``statuses``: which status codes are stored.
    """

    def decorate(v: View) -> View:
        if not callable(v):
            raise InvalidCacheDefinition(f"@cache_view decorates a view function, not {v!r}")
        cached_view = CachedView(
            v,
            ttl=ttl,
            stale=stale,
            namespace=namespace,
            version=version,
            tags=tags,
            per_user=per_user,
            vary_on=vary_on,
            statuses=statuses,
            alias=alias,
        )

        @functools.wraps(v)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            return cached_view(request, *args, **kwargs)

        wrapper.cache = cached_view  # type: ignore[attr-defined]
        return wrapper

    return decorate(view) if view is not None else decorate
