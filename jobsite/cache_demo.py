"""The cache demo: a slow view, cached with ``@cache_view``; the home page times it cold and warm."""

from __future__ import annotations

import time
from http import HTTPStatus

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from jobs.cache import cache_view, cached

#: What the slow computation pretends to wait for: a slow query or a remote API.
PAUSE_SECONDS = 0.8
MAX_N = 100_000


@cached(ttl=60, namespace="demo.primes")
def primes_below(n: int) -> int:
    """Counts primes below ``n`` the slow way (a sieve would be fast; this is a demo)."""
    time.sleep(PAUSE_SECONDS)
    return sum(1 for k in range(2, n) if all(k % d for d in range(2, int(k**0.5) + 1)))


@require_GET
@cache_view(ttl=30, namespace="demo.slow")
def slow(request: HttpRequest) -> JsonResponse:
    """``/demo/slow?n=1000``: about a second the first time, a millisecond or two while cached."""
    raw = request.GET.get("n", "1000")
    try:
        n = int(raw)
    except ValueError:
        return _bad(f"n must be a whole number, not {raw!r}")
    if not 2 <= n <= MAX_N:
        return _bad(f"n must be from 2 to {MAX_N}")
    started = time.perf_counter()
    count = primes_below(n)
    return JsonResponse(
        {
            "n": n,
            "primes": count,
            "computed_in_ms": round((time.perf_counter() - started) * 1000, 1),
            "computed_at": timezone.now().isoformat(),
        }
    )


def _bad(message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=HTTPStatus.BAD_REQUEST)
