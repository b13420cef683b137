"""Cached functions for the cache tests, importable by worker processes (for stale-while-revalidate).

Each one counts its runs in Redis, so that runs in threads, in other processes and on workers add up.
"""

import time

from django_redis import get_redis_connection

from jobs.cache import cached

RUNS = "test:runs:"


def runs(name: str) -> int:
    return int(get_redis_connection("default").get(RUNS + name) or 0)


def _ran(name: str) -> int:
    return get_redis_connection("default").incr(RUNS + name)


@cached(ttl=60)
def square(x, power=2):
    _ran("square")
    return x**power


@cached(ttl=60)
def slow_double(x, pause=0.3):
    _ran("slow_double")
    time.sleep(pause)
    return 2 * x


@cached(ttl=60)
def echo(*args, **kwargs):
    _ran("echo")
    return [list(args), kwargs]


@cached(ttl=60)
def nothing():
    _ran("nothing")


@cached(ttl=60, cache_none=True)
def nothing_cached():
    _ran("nothing_cached")


@cached(ttl=60)
def explode(message):
    _ran("explode")
    raise ValueError(message)


@cached(ttl=1, stale=60)
def generation(name):
    """A new value on every run: the run number."""
    return _ran("generation")


@cached(ttl=60, tags=lambda product_id: [f"product:{product_id}"])
def product_price(product_id):
    _ran("product_price")
    return product_id * 10


@cached(ttl=60, tags=["catalogue"])
def catalogue_size():
    return _ran("catalogue_size")


@cached(ttl=60, tags=lambda name: [f"doc:{name}"])
def document(name):
    """A document's page, tagged with its name, which a visitor chooses (``/doc/<name>``)."""
    return f"{name} #{_ran('document')}"


RATES = {"EUR": 1.0}


def fetch_rate(currency):
    return RATES[currency]


# One function cached twice, with two policies: each cache refreshes its own entries.
checkout_rate = cached(ttl=1, stale=60, namespace="checkout-rate")(fetch_rate)
report_rate = cached(ttl=1, stale=60, namespace="report-rate")(fetch_rate)


@cached(ttl=60)
def greeting(user):
    return f"hello {user.username}"
