"""Key safety: whatever the arguments, keys are short, ASCII, stable, and never hold user input raw."""

import datetime
import decimal
import enum
import uuid

import pytest
from django.contrib.auth.models import User
from django.http import QueryDict

from jobs.cache import cached
from jobs.cache.keys import digest, namespace_for
from jobs.exceptions import UncacheableArgument
from tests import cache_functions as fns


class Colour(enum.IntEnum):
    RED = 1


def stored_keys(redis):
    return redis.keys("jobsite:1:jobs-cache:2:entry:*")


@pytest.mark.parametrize(
    "argument",
    [
        "x" * 100_000,
        "ü€𝄞 unicode 漢字",
        "\x00\r\n *?[]{}:' \"; DROP TABLE",
        "jobsite:1:jobs-cache:tests.cache_functions.echo:v1:" + "0" * 32,
        b"\xff\x00bytes",
        {"nested": [1, {"deep": ("t", None)}], 2: {3, 4}},
        "\ud800",  # a lone surrogate
    ],
)
def test_hostile_arguments_give_short_ascii_keys_and_round_trip(redis, argument):
    first = fns.echo(argument, key=argument)
    assert fns.echo(argument, key=argument) == first
    assert fns.runs("echo") == 1
    (key,) = stored_keys(redis)
    assert key.isascii() and len(key) < 120
    assert b"DROP" not in key and b"\n" not in key


def test_different_arguments_never_share_a_key():
    values = [1, "1", 1.0, True, None, "None", [1], (1,), {1: 1}, b"1", [], "", {}, "s1", ["1"], {"1"}]
    digests = {digest([v]) for v in values}
    # Lists and tuples are one kind (a job's arguments come back from JSON as lists).
    assert len(digests) == len(values) - 1
    assert digest(["a", "b"]) != digest(["a\x1fb"]) != digest(["ab"])


def test_plain_value_types_are_accepted_and_stable():
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    values = [moment, moment.date(), moment.time(), decimal.Decimal("1.50"), uuid.UUID(int=7), Colour.RED]
    assert digest(values) == digest(list(values))
    assert digest([Colour.RED]) == digest([1])
    assert digest([decimal.Decimal("1.5")]) != digest([decimal.Decimal("1.50")])


@pytest.mark.django_db
def test_model_instances_are_keyed_by_their_primary_key(redis):
    alice = User.objects.create_user("alice")
    assert digest([alice]) == digest([User.objects.get(pk=alice.pk)])
    with pytest.raises(UncacheableArgument, match="unsaved User"):
        digest([User(username="bob")])


def test_arguments_without_a_stable_form_are_refused_with_their_position():
    with pytest.raises(UncacheableArgument, match=r"argument 'args'\[1\]\[0\] is a object"):
        fns.echo(1, [object()])
    with pytest.raises(UncacheableArgument, match=r"argument 'kwargs'\['k'\] is a function"):
        fns.echo(k=lambda: 1)
    with pytest.raises(UncacheableArgument, match="argument 'x' is a object"):
        fns.square(object())


def test_wrong_arguments_raise_as_the_function_would():
    with pytest.raises(TypeError):
        fns.square(1, 2, 3)


def función():
    return 1


def test_long_or_unicode_namespaces_are_shortened_or_refused():
    long_default = namespace_for(None, "module." + "f" * 300)
    assert len(long_default) <= 120 and long_default.isascii()
    unicode_default = namespace_for(None, "módulo.función")
    assert unicode_default.isascii() and unicode_default != namespace_for(None, "m_dulo.funci_n")

    assert cached(función).namespace.isascii()


def test_query_dicts_are_keyed_by_every_value_of_each_name():
    assert digest([QueryDict("a=1&a=2")]) != digest([QueryDict("a=2")])
    assert digest([QueryDict("a=1&a=2")]) != digest([QueryDict("a=2&a=1")])
    assert digest([QueryDict("b=2&a=1")]) == digest([QueryDict("a=1&b=2")])
    assert digest([QueryDict("a=1")]) != digest([{"a": "1"}]) != digest([{"a": ["1"]}])


class Shade(str, enum.Enum):  # noqa: UP042 - the case: str() of its member is "Shade.RED"
    RED = "red"


class Ratio(float, enum.Enum):
    HALF = 0.5


def test_members_of_str_and_float_enums_are_keyed_by_their_value():
    # As a job's JSON arguments carry them (a refresh job calls with "red"); never by str(): "Shade.RED".
    assert digest([Shade.RED]) == digest(["red"])
    assert digest([Shade.RED]) != digest(["Shade.RED"])
    assert digest([Ratio.HALF]) == digest([0.5])


def test_ints_too_long_for_decimal_text_are_keyed(redis):
    long = 10**5000 + 1
    assert digest([long]) == digest([long]) != digest([long + 1])
    # A long int in hex, a short one in decimal: the hex text of one is never the decimal text of another.
    assert digest([2**2000]) != digest([int(f"{2**2000:x}")])
    assert fns.square(long, 1) == long
    assert fns.square(long, 1) == long
    assert fns.runs("square") == 1
