"""Invalidation by tag and on a model's save or delete, against the real Redis and database."""

import contextlib
import threading

import pytest
from django.contrib.auth.models import Group, User
from django.db import connections, transaction
from django.db.models.signals import post_delete, post_save

from jobs.cache import cached, invalidate_on_change, invalidate_tags
from jobs.exceptions import InvalidCacheDefinition
from tests import cache_functions as fns
from tests.helpers import wait_for

pytestmark = pytest.mark.django_db

seen: list[str] = []


@cached(ttl=60, namespace="user-count", models=[User])
def user_count():
    seen.append("count")
    return User.objects.count()


@cached(ttl=60, namespace="group-name", tags=lambda pk: [f"group:{pk}"])
def group_name(pk):
    seen.append(f"group:{pk}")
    return Group.objects.get(pk=pk).name


invalidate_on_change(Group, lambda group: [f"group:{group.pk}"])


@cached(ttl=2, namespace="short-lived", tags=["everything"])
def short_lived(n):
    return n


#: Set by a test: the reader waits on it after it read the row, before its value is stored.
READ_GATE: dict[str, threading.Event] = {}


@cached(ttl=60, namespace="slow-group-name", tags=lambda pk: [f"group:{pk}"])
def slow_group_name(pk):
    name = Group.objects.get(pk=pk).name
    if "read" in READ_GATE:
        READ_GATE["read"].set()
        assert READ_GATE["go on"].wait(timeout=30)
    return name


@pytest.fixture(autouse=True)
def _reset():
    seen.clear()


def test_invalidate_by_tag_drops_only_tagged_entries(redis):
    assert fns.product_price(1) == 10
    assert fns.product_price(2) == 20
    assert invalidate_tags("product:1") == 1
    fns.product_price(1)
    fns.product_price(2)
    assert fns.runs("product_price") == 3
    assert invalidate_tags("product:404") == 0


def test_invalidate_many_tags_at_once(redis):
    fns.product_price(1)
    fns.product_price(2)
    first = fns.catalogue_size()
    assert invalidate_tags("product:1", "product:2", "catalogue") == 3
    assert fns.catalogue_size() == first + 1


def test_tag_sets_expire_with_their_entries(redis):
    fns.product_price(3)
    (tag_key,) = redis.keys("*jobs-cache:2:tag:product:3")
    assert 0 < redis.ttl(tag_key) <= 61


def test_a_tag_written_for_ever_holds_only_its_live_entries(redis):
    for n in range(20):
        short_lived(n)
    (tag_key,) = redis.keys("*jobs-cache:2:tag:everything")
    assert redis.zcard(tag_key) == 20
    wait_for(lambda: not redis.keys("*short-lived*"), timeout=10, message="the entries to expire")
    short_lived(100)
    assert redis.zcard(tag_key) == 1


def test_bad_tags_are_refused(redis):
    with pytest.raises(InvalidCacheDefinition, match="a tag must be"):
        invalidate_tags(42)
    with pytest.raises(InvalidCacheDefinition, match="a tag must be"):
        invalidate_tags("")


def test_saving_or_deleting_a_watched_model_drops_its_entries(django_capture_on_commit_callbacks):
    assert user_count() == 0
    assert user_count() == 0
    assert seen == ["count"]
    with django_capture_on_commit_callbacks(execute=True):
        alice = User.objects.create_user("alice")
    assert user_count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        alice.delete()
    assert user_count() == 0
    assert seen == ["count"] * 3


def test_invalidation_waits_for_the_commit(django_capture_on_commit_callbacks):
    user_count()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        User.objects.create_user("bob")
        assert user_count() == 0, "until the transaction commits, readers may still see the old value"
    assert len(callbacks) == 1
    callbacks[0]()
    assert user_count() == 1


# Committed for real: a value computed in a transaction that changed its rows is not stored.
@pytest.mark.django_db(transaction=True)
def test_instance_tags_drop_only_that_instances_entries():
    a = Group.objects.create(name="a")
    b = Group.objects.create(name="b")
    group_name(a.pk)
    group_name(b.pk)
    a.name = "A"
    a.save()
    assert group_name(a.pk) == "A"
    assert group_name(b.pk) == "b"
    assert seen == [f"group:{a.pk}", f"group:{b.pk}", f"group:{a.pk}"]


def test_invalidate_on_change_takes_a_model_and_a_callable():
    with pytest.raises(TypeError, match="model class and a callable"):
        invalidate_on_change(object, lambda o: [])
    with pytest.raises(TypeError, match="model class and a callable"):
        invalidate_on_change(Group, ["group"])


@pytest.mark.django_db(transaction=True)
def test_a_value_read_before_a_change_committed_is_not_stored_after_its_invalidation():
    group = Group.objects.create(name="old")
    READ_GATE.update({"read": threading.Event(), "go on": threading.Event()})
    results = []

    def read():
        try:
            results.append(slow_group_name(group.pk))
        finally:
            connections.close_all()  # this thread's own

    reader = threading.Thread(target=read)
    try:
        reader.start()
        assert READ_GATE["read"].wait(timeout=30)  # the reader has the old row
        group.name = "new"
        group.save()  # commits, and drops the tag: nothing is stored yet
        READ_GATE["go on"].set()
        reader.join(timeout=30)
    finally:
        READ_GATE.clear()
    assert results == ["old"]  # what that reader read, computed before the change
    assert slow_group_name(group.pk) == "new"  # not the old value, stored after the invalidation


@pytest.mark.django_db(transaction=True)
def test_a_value_computed_in_a_transaction_that_changed_its_row_is_not_stored():
    group = Group.objects.create(name="committed")
    with contextlib.suppress(RuntimeError), transaction.atomic():
        group.name = "never-committed"
        group.save()
        assert group_name(group.pk) == "never-committed"
        raise RuntimeError("rolled back")
    assert group_name(group.pk) == "committed"


def test_a_tags_callable_of_a_model_that_returns_one_string_is_refused(django_capture_on_commit_callbacks):
    def user_tag(user):
        return f"user:{user.pk}"

    invalidate_on_change(User, user_tag)
    try:
        refused = pytest.raises(InvalidCacheDefinition, match="not the string 'user:")
        with refused, django_capture_on_commit_callbacks(execute=True) as callbacks:
            User.objects.create_user("carol")
        assert not [c for c in callbacks if "u" in c.args], "the tags 'u', 's', 'e', 'r', ':'..."
    finally:
        for signal in (post_save, post_delete):
            signal.disconnect(sender=User, dispatch_uid=f"jobs.cache:auth.user:{id(user_tag)}:None")


SOURCE = {"value": "old"}


@cached(ttl=60, namespace="gated", tags=["gated"])
def gated(n):
    """The source's value, read before the gate (if a test set one): a reader in flight."""
    value = SOURCE["value"]
    if "read" in READ_GATE:
        READ_GATE["read"].set()
        assert READ_GATE["go on"].wait(timeout=30)
    return value


def in_flight(read, invalidate):
    """``read()`` in a thread, which reads the old source, then ``invalidate()`` before it stores."""
    SOURCE["value"] = "old"
    READ_GATE.update({"read": threading.Event(), "go on": threading.Event()})
    results = []
    reader = threading.Thread(target=lambda: results.append(read()))
    try:
        reader.start()
        assert READ_GATE["read"].wait(timeout=30)
        SOURCE["value"] = "new"
        invalidate()
    finally:
        READ_GATE["go on"].set()
        reader.join(timeout=30)
        READ_GATE.clear()
    return results


def test_invalidating_one_call_holds_against_a_reader_in_flight(redis):
    assert in_flight(lambda: gated(1), lambda: gated.invalidate(1)) == ["old"]
    assert gated(1) == "new", "the value read before the invalidation was stored after it"
    (generation,) = redis.keys("*jobs-cache:2:entry-generation:*")
    assert 0 < redis.ttl(generation) <= 24 * 3600
    before = redis.get(generation)
    assert gated.invalidate(1) is True  # nobody computes it: the entry is dropped, nothing else written
    assert gated.invalidate(4) is False
    assert redis.keys("*jobs-cache:2:entry-generation:*") == [generation]
    assert redis.get(generation) == before


def test_invalidating_one_call_holds_against_its_refresh_in_flight(redis):
    gated(2)
    assert in_flight(lambda: gated.refresh(2), lambda: gated.invalidate(2)) == ["old"]
    assert gated(2) == "new", "the refresh stored what it read before the invalidation"


def test_a_tag_generation_that_expired_does_not_come_back_for_a_reader_in_flight(redis):
    invalidate_tags("gated")  # the tag's generation is set, for a day

    def expire_and_invalidate():
        (generation,) = redis.keys("*jobs-cache:2:generation:gated")
        redis.delete(generation)  # as its expiry does
        invalidate_tags("gated")  # a counter would start again at the value the reader read

    assert in_flight(lambda: gated(3), expire_and_invalidate) == ["old"]
    assert gated(3) == "new", "the value read before the invalidation was stored after it"
