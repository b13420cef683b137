"""What a caller or a visitor chooses (a tag, a namespace, an argument, a function) never makes one cache
key stand for another: another kind's key, another function's entries, another database's row."""

import logging
import time

import pytest
from django.contrib.auth.models import User

from jobs.cache import cached, invalidate_tags, keys
from jobs.cache.refresh import refresh_entry
from jobs.cache.store import store
from jobs.exceptions import InvalidCacheDefinition
from jobs.models import Job
from tests import cache_functions as fns

DIGEST = "0" * 32


def test_no_tag_or_namespace_spells_another_kinds_key():
    names = ["x", "x:generation", "x:lock", f"v1:{DIGEST}", "tags", "tag", "entry", "generation", "2"]
    names += ["stats", "stats-namespaces", "stats-namespaces:all", "entry-generation", "all"]
    names += [f"{kind}:{name}" for kind in ("tag", "entry", "generation", "tags") for name in names]
    made = [keys.tag(name) for name in names] + [keys.tag_generation(name) for name in names]
    entries = [keys.entry(namespace, 1, DIGEST) for namespace in ("tags", "tag", "generation", "entry", "x")]
    made += entries + [keys.lock(e) for e in entries] + [keys.refresh_flag(e) for e in entries]
    made += [keys.entry_generation(e) for e in entries]
    made += [keys.stats(name) for name in [*names, "namespaces"]]
    made += [keys.stats_namespaces(), keys.stats_batch("all"), keys.stats_batch("stats")]
    assert len(set(made)) == len(made), "two kinds of key, or two names, share a key"


def test_a_tag_that_names_another_tags_generation_cannot_turn_the_cache_off(redis):
    assert fns.document("readme") == "readme #1"
    assert invalidate_tags("doc:readme") == 1
    assert fns.document("readme") == "readme #2"
    fns.document("readme:generation")  # a visitor's choice of name, tagged doc:readme:generation
    assert store().available(), "a visitor's URL turned the cache off"
    assert invalidate_tags("doc:readme") == 1
    assert fns.document("readme") == "readme #4"


def test_a_tag_that_names_another_tags_generation_cannot_keep_its_entries(redis):
    assert fns.document("readme") == "readme #1"
    fns.document("readme:generation")  # before doc:readme was ever invalidated
    assert invalidate_tags("doc:readme") == 1
    assert fns.document("readme") == "readme #3", "the stale entry outlived its invalidation"


def test_a_command_redis_refuses_leaves_the_cache_on(redis, caplog):
    redis.set(store().key(keys.tag("product:5")), "not a sorted set")  # written by someone else
    with caplog.at_level(logging.WARNING, logger="jobs"):
        assert fns.product_price(5) == 50
    assert store().available(), "a data error is not Redis down"
    assert "refused a command" in caplog.text
    assert "unreachable" not in caplog.text


def test_an_invalidation_redis_refuses_changes_nothing(redis):
    assert fns.product_price(6) == 60
    redis.rpush(store().key(keys.tag("product:7")), "not a sorted set")
    assert invalidate_tags("product:6", "product:7") == 0
    assert redis.exists(store().key(keys.tag("product:6"))), "the tag's index was dropped, its entries kept"
    assert store().available()
    assert fns.product_price(6) == 60
    assert fns.runs("product_price") == 1


def test_lambdas_need_a_namespace_of_their_own(redis):
    with pytest.raises(InvalidCacheDefinition, match=r"is a lambda.*give it namespace="):
        cached(ttl=60)(lambda x: x * x)
    square = cached(ttl=60, namespace="square-lambda")(lambda x: x * x)
    cube = cached(ttl=60, namespace="cube-lambda")(lambda x: x * x * x)
    assert (square(3), cube(3)) == (9, 27)


def rates_for(currency):
    def rate(day):
        return f"{currency} rate on {day}"

    return rate


def test_functions_defined_in_a_function_need_a_namespace_of_their_own(redis):
    with pytest.raises(InvalidCacheDefinition, match=r"defined inside a function.*give it namespace="):
        cached(ttl=60)(rates_for("EUR"))
    disguised = rates_for("EUR")
    disguised.__qualname__ = "rate"  # as functools.wraps would name it
    with pytest.raises(InvalidCacheDefinition, match="closure over currency"):
        cached(ttl=60)(disguised)
    eur = cached(ttl=60, namespace="rate-EUR")(rates_for("EUR"))
    usd = cached(ttl=60, namespace="rate-USD")(rates_for("USD"))
    assert (eur("monday"), usd("monday")) == ("EUR rate on monday", "USD rate on monday")


@pytest.mark.django_db(databases=["default", "other"], transaction=True)
def test_one_primary_key_on_another_database_is_another_key(redis):
    ada = User.objects.using("default").create(pk=7, username="ada")
    bob = User.objects.using("other").create(pk=7, username="bob")
    assert fns.greeting(ada) == "hello ada"
    assert fns.greeting(bob) == "hello bob"
    assert fns.greeting(User.objects.get(pk=7)) == "hello ada", "a row of the router's database: its key"


@pytest.mark.django_db(transaction=True)
def test_each_cache_of_one_function_refreshes_its_own_entries(redis):
    fns.RATES["EUR"] = 1.0
    assert (fns.checkout_rate("EUR"), fns.report_rate("EUR")) == (1.0, 1.0)
    fns.RATES["EUR"] = 2.0
    time.sleep(1.05)  # their ttl is 1 s: both stale now
    assert (fns.checkout_rate("EUR"), fns.report_rate("EUR")) == (1.0, 1.0)
    refreshes = Job.objects.filter(function="jobs.cache.refresh.refresh_entry")
    assert refreshes.count() == 2, "one refresh for each cache"
    (checkout,) = [job for job in refreshes if "checkout-rate" in job.args]
    refresh_entry(*checkout.args)  # what a worker runs
    assert fns.checkout_rate("EUR") == 2.0, "the refresh stored another cache's entry"
    assert fns.report_rate("EUR") == 1.0
