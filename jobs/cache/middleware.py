"""``CacheViewMiddleware``: ``@cache_view`` pages stored only once every middleware has had its say.

The decorator sees the response as the view returns it; middleware below it in ``MIDDLEWARE`` may then
set cookies (sessions, messages, CSRF), add ``Vary`` headers or a CSP nonce, which the decorator cannot
see. With this middleware first in ``MIDDLEWARE`` (the outermost), a cached view still looks its page up
(after the other middleware's request phase, so the session, the user and the language are known), but
stores a page only when the whole response, as it leaves the site, is proven the same for everyone its
key holds: no cookie set, no ``Vary: *``, its ``Vary`` headers in the key, and the cookies that any
middleware read, before the view or after it, in the key as those the view read.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from .views import DEFERRED, Deferred

PATH = "jobs.cache.middleware.CacheViewMiddleware"


class CacheViewMiddleware:
    """Leaves the decision to store a cached view's page to the end of the response phase."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        deferred = Deferred(request)
        setattr(request, DEFERRED, deferred)
        try:
            response = self.get_response(request)
        except BaseException:
            if deferred.pending is not None:
                deferred.pending.drop()
            raise
        if deferred.pending is None:
            return response
        return deferred.pending.finish(request, response)
