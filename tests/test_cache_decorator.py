"""@cached against the real Redis: hits and misses, TTL and jitter, None, exceptions, the stampede."""

import functools
import threading

import pytest
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings

from jobs.cache import cached, invalidate_tags, stats
from jobs.cache.keys import digest
from jobs.cache.store import store
from jobs.exceptions import InvalidCacheDefinition, UncacheableArgument
from tests import cache_functions as fns


def entry_keys(redis, namespace_part=""):
    return [k.decode() for k in redis.keys(f"jobsite:1:jobs-cache:2:entry:*{namespace_part}*")]


def test_second_call_is_a_hit_and_arguments_are_normalised(redis):
    assert fns.square(3) == 9
    assert fns.square(3) == 9
    assert fns.square(3, 2) == 9
    assert fns.square(x=3, power=2) == 9
    assert fns.runs("square") == 1
    assert fns.square(3, 3) == 27
    assert fns.runs("square") == 2


def test_key_has_the_cache_prefix_app_prefix_namespace_and_version(redis):
    fns.square(4)
    (key,) = entry_keys(redis, "square")
    assert key.startswith("jobsite:1:jobs-cache:2:entry:tests.cache_functions.square:v1:")
    assert len(key.rsplit(":", 1)[1]) == 32


def test_version_bump_uses_new_entries(redis):
    def compute(x):
        return x

    old = cached(ttl=60, namespace="versioned", version=1)(compute)
    new = cached(ttl=60, namespace="versioned", version=2)(compute)
    old(1)
    new(1)
    assert sorted(k.split(":")[-2] for k in entry_keys(redis, "versioned")) == ["v1", "v2"]


def test_every_entry_has_a_ttl_with_jitter(redis):
    @cached(ttl=100, namespace="jittered")
    def ident(x):
        return x

    with override_settings(JOBS={"CACHE_JITTER": 0.5}):
        for i in range(40):
            ident(i)
        ttls = [redis.pttl(k) for k in entry_keys(redis, "jittered")]
    assert len(ttls) == 40
    assert all(0 < t <= 100_000 for t in ttls), ttls
    assert min(ttls) < 90_000, "jitter spreads expiries below the ttl"
    assert len({t // 1000 for t in ttls}) > 5, "entries written together do not expire together"


def test_default_ttl_comes_from_the_setting(redis):
    @cached(namespace="default-ttl")
    def ident(x):
        return x

    with override_settings(JOBS={"CACHE_TTL": 7, "CACHE_JITTER": 0}):
        ident(1)
        (key,) = entry_keys(redis, "default-ttl")
        assert 6_000 < redis.pttl(key) <= 7_000


def test_expired_entry_is_computed_again(redis):
    fns.square(5)
    (key,) = entry_keys(redis, "square")
    redis.delete(key)
    assert fns.square(5) == 25
    assert fns.runs("square") == 2


def test_none_is_not_cached_unless_asked(redis):
    fns.nothing()
    fns.nothing()
    assert fns.runs("nothing") == 2
    fns.nothing_cached()
    fns.nothing_cached()
    assert fns.runs("nothing_cached") == 1


def test_exceptions_are_never_cached(redis):
    for _ in range(2):
        with pytest.raises(ValueError, match="bad"):
            fns.explode("bad")
    assert fns.runs("explode") == 2
    assert entry_keys(redis, "explode") == []
    assert not redis.keys("*jobs-cache:2:lock:*explode*"), "the lock is released after an exception"


def test_invalidate_by_call(redis):
    fns.square(6)
    assert fns.square.invalidate(6) is True
    assert fns.square.invalidate(6) is False
    fns.square(6)
    assert fns.runs("square") == 2


def test_values_round_trip_through_django_redis_serializer(redis):
    value = fns.echo(1, "ü", [1, 2], k={"a": None})
    assert fns.echo(1, "ü", [1, 2], k={"a": None}) == value == [[1, "ü", [1, 2]], {"k": {"a": None}}]
    assert fns.runs("echo") == 1
    # The entry is django-redis's encoding of (fresh_until, value): readable with its own decoder.
    (key,) = entry_keys(redis, "echo")
    _fresh_until, stored = caches["default"].client.decode(redis.get(key))
    assert stored == value


def test_stampede_32_concurrent_callers_compute_once(redis):
    barrier = threading.Barrier(32)
    results, errors = [], []

    def call():
        try:
            barrier.wait(timeout=30)
            results.append(fns.slow_double(21, pause=0.5))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert results == [42] * 32
    assert fns.runs("slow_double") == 1


def test_a_crashed_lock_holder_does_not_block_others_past_the_lock_timeout(redis):
    key = fns.square.key(store(), 7)
    with override_settings(JOBS={"CACHE_LOCK_TIMEOUT": 1, "CACHE_LOCK_WAIT": 10}):
        assert store().lock(key).acquire(blocking=False)  # held by a "crashed" holder, never released
        assert fns.square(7) == 49
    assert fns.runs("square") == 1


def test_a_caller_that_waits_too_long_computes_uncached(redis):
    cache = store()
    key = fns.square.key(cache, 8)
    with override_settings(JOBS={"CACHE_LOCK_TIMEOUT": 30, "CACHE_LOCK_WAIT": 0.2}):
        assert store().lock(key).acquire(blocking=False)
        assert fns.square(8) == 64
        assert fns.square(8) == 64
    assert fns.runs("square") == 2
    assert entry_keys(redis, "square") == []


def test_counts_per_namespace(redis):
    stats.reset()
    fns.square(2)
    fns.square(2)
    fns.square(2)
    counts = stats.read()["tests.cache_functions.square"]
    expected = {"hits": 2, "misses": 1, "stale": 0, "refreshes": 0, "errors": 0}
    assert counts == {**expected, "bypasses": 0, "reasons": {}}


def test_counts_are_not_sent_on_every_hit(redis):
    stats.reset()
    stats.flush()
    fns.square(2)
    redis.config_resetstat()
    with override_settings(JOBS={"CACHE_STATS_INTERVAL": 3600}):
        for _ in range(20):
            fns.square(2)
    commands = {k: v["calls"] for k, v in redis.info("commandstats").items()}
    assert commands.get("cmdstat_get") == 20
    assert "cmdstat_hincrby" not in commands


@pytest.mark.parametrize(
    "options, message",
    [
        ({"ttl": 0}, "ttl must be"),
        ({"ttl": "60"}, "ttl must be"),
        ({"stale": -1}, "stale must be"),
        ({"version": -1}, "version must be"),
        ({"namespace": "has space"}, "namespace must be"),
        ({"namespace": "x" * 121}, "namespace must be"),
        ({"tags": "product"}, "tags must be a list"),
        ({"ttl": float("inf")}, "ttl must be"),
        ({"ttl": 10**20}, "ttl must be"),
        ({"stale": float("nan")}, "stale must be"),
        ({"tags": [""]}, "a tag must be"),
        ({"tags": [42]}, "a tag must be"),
        ({"models": [object]}, "models must be model classes"),
    ],
)
def test_bad_definitions_are_refused(options, message):
    with pytest.raises(InvalidCacheDefinition, match=message):
        cached(**options)(nothing)


def nothing():
    return None


def test_stale_needs_a_module_level_function():
    def local():
        return 1

    with pytest.raises(InvalidCacheDefinition, match="module level"):
        cached(stale=10)(local)


def test_decorating_twice_is_refused():
    with pytest.raises(InvalidCacheDefinition, match="plain function"):
        cached(fns.square)


def test_digest_is_stable_across_equivalent_values():
    assert digest([(1, 2)]) == digest([[1, 2]])
    assert digest([{"b": 1, "a": 2}]) == digest([{"a": 2, "b": 1}])
    assert digest([1]) != digest(["1"]) != digest([1.0]) != digest([True])


class TwoPartValue:
    """Pickles with one argument but needs two to load: an entry that is stored and cannot be read."""

    def __init__(self, first, second):
        self.parts = (first, second)

    def __reduce__(self):
        return (TwoPartValue, (self.parts[0],))


TWO_PART_RUNS = []


@cached(ttl=60, namespace="two-part")
def two_part(n):
    TWO_PART_RUNS.append(n)
    return TwoPartValue(n, n)


def test_an_entry_that_cannot_be_read_counts_as_missing(redis, caplog):
    TWO_PART_RUNS.clear()
    assert two_part(1).parts == (1, 1)
    assert two_part(1).parts == (1, 1)  # stored, unreadable: computed again, not raised to the caller
    assert TWO_PART_RUNS == [1, 1]
    assert "cannot be read" in caplog.text


def test_an_argument_that_holds_itself_is_refused_by_name():
    looped = [1]
    looped.append(looped)
    with pytest.raises(UncacheableArgument, match="argument 'x' is nested too deeply, or holds itself"):
        fns.square(looped)


@pytest.mark.django_db
def test_text_primary_keys_that_look_alike_are_apart():
    from django.contrib.sessions.models import Session

    assert digest([Session(session_key="k\x1f[1"), 5], ("a", "b")) != digest(
        [Session(session_key="k"), [5]], ("a", "b")
    )


# A tags callable is given the parameters it names, by name, with the call's defaults filled in.

PRICES: list[tuple] = []


@cached(ttl=60, namespace="readme-price", tags=lambda product_id: [f"product:{product_id}"])
def price(product_id, currency="EUR"):
    PRICES.append((product_id, currency))
    return f"{product_id} in {currency}"


@cached(
    ttl=60, namespace="priced-in", tags=lambda currency, **call: [f"currency:{currency}", f"n:{call['n']}"]
)
def priced_in(n, *, currency="EUR"):
    return f"{n} {currency}"


def test_a_tags_callable_takes_the_parameters_it_names(redis):
    PRICES.clear()
    assert price(42) == "42 in EUR"
    assert price(42, currency="USD") == "42 in USD"  # a miss: the tags callable takes product_id alone
    assert price(product_id=43) == "43 in EUR"
    assert price(42, "EUR") == "42 in EUR"
    assert invalidate_tags("product:42") == 2
    assert priced_in(1) == "1 EUR"  # the default, by name, to a callable that takes **kwargs too
    assert invalidate_tags("currency:EUR") == 1
    assert PRICES == [(42, "EUR"), (42, "USD"), (43, "EUR")]


@pytest.mark.parametrize(
    "tags, message",
    [
        (
            lambda product: [],
            r"takes 'product', which is not a parameter of .*\(product_id, currency='EUR'\)",
        ),
        (lambda *args: [], r"by name, not \*args"),
    ],
)
def test_a_tags_callable_that_takes_what_the_function_has_not_is_refused(tags, message):
    with pytest.raises(InvalidCacheDefinition, match=message):
        cached(ttl=60, namespace="price-tags", tags=tags)(price.func)


def no_tags_for(x):
    raise LookupError(f"no tags for {x}")


@cached(ttl=60, namespace="tags-raise", tags=no_tags_for)
def tags_raise(x):
    PRICES.append(x)
    return x


def test_a_tags_callable_that_raises_runs_the_call_uncached(redis, caplog):
    PRICES.clear()
    stats.reset()
    assert tags_raise(1) == 1
    assert tags_raise(1) == 1
    assert PRICES == [1, 1]
    assert "tags-raise is not cached: its tags callable raised" in caplog.text
    assert "LookupError: no tags for 1" in caplog.text
    assert stats.read()["tags-raise"]["reasons"] == {"bad-tag": 2}
    assert entry_keys(redis, "tags-raise") == []


@cached(ttl=60, namespace="one-string-tag", tags=lambda item_id: f"item:{item_id}")
def item_name(item_id):
    return f"item {item_id}"


def test_a_tags_callable_that_returns_one_string_is_refused(redis):
    # Not taken for the tags "i", "t", "e", "m", ":", "1": refused as tags="item:1" is at decoration.
    with pytest.raises(
        InvalidCacheDefinition, match="must return a list of strings, not the string 'item:1'"
    ):
        item_name(1)
    assert redis.keys("*jobs-cache:2:tag:*") == []


async def fetch_async(x):
    return x


def numbers(n):
    yield from range(n)


class Rates:
    def __call__(self, currency):
        return 1.0


@pytest.mark.parametrize("function", [fetch_async, numbers, functools.partial(fns.square.func, 2), Rates()])
def test_what_returns_a_coroutine_a_generator_or_has_no_name_is_refused(function):
    with pytest.raises(InvalidCacheDefinition, match=r"a coroutine or a generator|plain function"):
        cached(ttl=60, namespace="refused")(function)


class RefusesPickling:
    def __reduce__(self):
        raise RuntimeError("this object cannot be pickled")


def nested(depth):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@cached(ttl=60, namespace="unstorable")
def unstorable(kind):
    PRICES.append(kind)
    return nested(100_000) if kind == "deep" else RefusesPickling()


@pytest.mark.parametrize("kind, error", [("deep", "RecursionError"), ("refuses", "RuntimeError")])
def test_a_result_that_cannot_be_stored_is_returned_uncached(redis, caplog, kind, error):
    PRICES.clear()
    assert unstorable(kind) is not None
    assert unstorable(kind) is not None
    assert [kind, kind] == PRICES
    assert f"A result of unstorable cannot be cached: {error}" in caplog.text
    assert store().available()


def test_two_sites_on_one_redis_count_apart(redis):
    stats.reset()
    fns.square(2)
    stats.flush()
    site_b = {alias: {**config, "KEY_PREFIX": "site-b"} for alias, config in settings.CACHES.items()}
    with override_settings(CACHES=site_b):
        assert "tests.cache_functions.square" not in stats.read()
        stats.reset()
    assert stats.read()["tests.cache_functions.square"]["misses"] == 1, "site B reset site A's counts"
    with override_settings(JOBS={"CACHE_PREFIX": "other-cache"}):
        assert "tests.cache_functions.square" not in stats.read()
