import datetime
import decimal
import uuid

import pytest
from django.contrib.auth.models import User

from jobs.codec import decode_arguments, encode, encode_arguments
from jobs.exceptions import ArgumentNotSerializable


def test_plain_json_passes_through_and_tuples_become_lists():
    args, kwargs = encode_arguments((1, "a", None, True, 2.5, [1, {"x": (2, 3)}]), {"k": {"n": 1}})
    assert args == [1, "a", None, True, 2.5, [1, {"x": [2, 3]}]]
    assert kwargs == {"k": {"n": 1}}


def test_rich_values_round_trip():
    when = datetime.datetime(2026, 11, 23, 12, 30, tzinfo=datetime.UTC)
    values = [when, when.date(), datetime.time(8, 15), decimal.Decimal("1.10"), uuid.uuid4()]
    args, kwargs = encode_arguments(values, {"nested": {"when": when}})
    decoded_args, decoded_kwargs = decode_arguments(args, kwargs)
    assert decoded_args == values
    assert [type(v) for v in decoded_args] == [type(v) for v in values]
    assert decoded_kwargs == {"nested": {"when": when}}


@pytest.mark.django_db
def test_model_instance_travels_by_reference():
    user = User.objects.create(username="ada")
    args, _ = encode_arguments([user], {})
    assert args == [{"__jobs__": ["model", "auth.user", user.pk]}]
    User.objects.filter(pk=user.pk).update(username="ada2")
    (fetched,), _ = decode_arguments(args, {})
    assert fetched.username == "ada2"


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        ((1, {2, 3}), {}, "args[1] is of type set"),
        ((), {"blob": b"bytes"}, "argument 'blob' is of type bytes"),
        ((), {"deep": {"a": [1, object()]}}, "argument 'deep'['a'][1] is of type object"),
        (({1: "x"},), {}, "args[0] has a non-string key 1"),
        ((float("nan"),), {}, "args[0] is nan"),
        ((float("inf"),), {}, "args[0] is inf"),
        ((lambda: 1,), {}, "args[0] is of type function"),
        (({"__jobs__": 1},), {}, "reserved key"),
    ],
)
def test_unserialisable_arguments_are_refused_by_name(args, kwargs, named):
    with pytest.raises(ArgumentNotSerializable, match=named.replace("[", r"\[").replace("]", r"\]")):
        encode_arguments(args, kwargs)


def test_unsaved_model_is_refused():
    with pytest.raises(ArgumentNotSerializable, match="unsaved User"):
        encode(User(username="x"), "args[0]")
