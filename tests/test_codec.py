import datetime
import decimal
import json
import uuid

import pytest
from django.contrib.auth import login
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.auth.models import User
from django.contrib.sessions.middleware import SessionMiddleware
from django.core.checks import run_checks
from django.test import override_settings
from django.utils.functional import SimpleLazyObject

from jobs.codec import decode, decode_arguments, encode, encode_arguments, plain
from jobs.exceptions import ArgumentNotSerializable, ArgumentUnavailable, InvalidArguments
from jobs.models import Job, Status
from tests import jobs
from tests.helpers import drain
from tests.jobs import echo_types


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


@pytest.mark.django_db(databases=["default", "other"])
def test_a_model_instance_from_another_database_is_read_again_from_that_database():
    User.objects.using("default").create(pk=4242, username="on-default")
    theirs = User.objects.db_manager("other").create(pk=4242, username="on-other")
    args, _ = encode_arguments([theirs], {})
    assert args == [{"__jobs__": ["model", "auth.user", 4242, "other"]}]
    (fetched,), _ = decode_arguments(args, {})
    assert (fetched.username, fetched._state.db) == ("on-other", "other")
    with pytest.raises(ArgumentUnavailable, match="database 'gone'"):
        decode_arguments([{"__jobs__": ["model", "auth.user", 4242, "gone"]}], {})


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


def nested(depth, leaf=1):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("args", "kwargs", "field", "named"),
    [
        (("a\x00b",), {}, "args", "args[0] holds the character '\\x00' at position 1"),
        (([{"k": "\x00"}],), {}, "args", "args[0][0]['k'] holds the character '\\x00'"),
        (({"k\x00": 1},), {}, "args", "a key of args[0] holds the character '\\x00'"),
        ((), {"a\x00": 1}, "kwargs", "a keyword argument name holds the character '\\x00'"),
        (("\udc80",), {}, "args", "args[0] holds the character '\\udc80'"),
        ((nested(65),), {}, "args", "is nested more than 64 lists or objects deep"),
        ((), {"deep": nested(30, {"a": nested(40)})}, "kwargs", "nested more than 64"),
        ((10**5000,), {}, "args", "args[0] is an int of more than 4300 digits"),
    ],
)
def test_what_not_every_database_stores_is_refused_on_all_by_name(args, kwargs, field, named):
    with pytest.raises(ArgumentNotSerializable) as raised:
        encode_arguments(args, kwargs)
    assert named in str(raised.value)
    assert raised.value.field == field
    assert isinstance(raised.value, InvalidArguments)


def test_nesting_up_to_the_bound_and_paired_surrogates_pass():
    args, _ = encode_arguments([nested(64), "emoji \U0001f600", "tab\t"], {})
    assert args[1] == "emoji \U0001f600"
    assert decode_arguments(args, {})[0][0] == nested(64)


def test_arguments_are_bounded_by_max_arguments_bytes():
    with override_settings(JOBS={"MAX_ARGUMENTS_BYTES": 22}):
        encode_arguments(["é" * 8], {})  # ["éééééééé"] is 20 bytes of UTF-8, {} two more
        with pytest.raises(InvalidArguments, match=r"more than 22 bytes as JSON") as raised:
            encode_arguments(["é" * 8], {"k": 1})
        assert raised.value.field == "kwargs"
    with override_settings(JOBS={"MAX_ARGUMENTS_BYTES": None}):
        encode_arguments(["x" * 1_000_000], {})
    with pytest.raises(InvalidArguments, match="MAX_ARGUMENTS_BYTES"):
        encode_arguments(["x" * 256 * 1024], {})


@pytest.mark.parametrize("value", [0, -1, "256k", True, 1.5])
def test_a_bad_size_bound_fails_the_checks(value):
    with override_settings(JOBS={"MAX_ARGUMENTS_BYTES": value}):
        assert "jobs.E070" in [e.id for e in run_checks(databases=[])]
    with override_settings(JOBS={"MAX_ARGUMENTS_BYTES": None}):
        assert "jobs.E070" not in [e.id for e in run_checks(databases=[])]


def _request_through_auth_middleware(rf, user=None):
    """A request as a view sees it: ``request.user`` is the SimpleLazyObject that Django's middleware sets."""
    request = rf.get("/")
    SessionMiddleware(lambda r: None).process_request(request)
    if user is not None:
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    AuthenticationMiddleware(lambda r: None).process_request(request)
    assert type(request.user) is SimpleLazyObject
    return request


@pytest.mark.django_db
def test_request_user_of_an_anonymous_visitor_is_refused_saying_so(rf):
    request = _request_through_auth_middleware(rf)
    with pytest.raises(ArgumentNotSerializable) as refused:
        echo_types.enqueue(request.user, "2026-11")
    message = str(refused.value)
    assert message.startswith("args[0] is an anonymous user")
    assert "request.user.is_authenticated" in message
    assert "SimpleLazyObject" not in message
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_request_user_of_a_signed_in_visitor_travels_by_reference(rf, restore_signal_handlers):
    user = User.objects.create_user("ann")
    request = _request_through_auth_middleware(rf, user)
    record = echo_types.enqueue(request.user, "2026-11")
    drain()
    record.refresh_from_db()
    assert record.status == Status.FINISHED, record.traceback
    assert record.result == {"args": ["User", "str"], "kwargs": {}}


def test_another_lazy_object_is_named_by_what_it_wraps():
    with pytest.raises(ArgumentNotSerializable, match=r"args\[0\] is of type set"):
        encode_arguments((SimpleLazyObject(lambda: {1}),), {})


LARGE_FLOATS = [1e16, 2.0**70, 1.5e300, 1.7976931348623157e308, -1e16, 1e-7, 0.1, 1e15]


@pytest.mark.django_db(transaction=True)
def test_floats_come_back_floats_from_the_database(redis):
    """JSON writes a float from 1e16 on with an exponent (``1e+16``), which PostgreSQL's ``jsonb`` keeps
    as a whole number: it came back an int (``2.0**70`` as 1180591620717411300000). Such floats travel
    in a marker, in arguments and in results, on every database."""
    record = jobs.given.enqueue(LARGE_FLOATS)
    assert json.loads(json.dumps(Job.objects.get(pk=record.pk).args)) == Job.objects.get(pk=record.pk).args
    drain()
    record.refresh_from_db()
    assert record.status == Status.FINISHED
    result = decode(record.result)
    assert result == LARGE_FLOATS
    assert [type(value) for value in result] == [float] * len(LARGE_FLOATS)
    types = jobs.echo_types.enqueue(*LARGE_FLOATS)
    drain()
    types.refresh_from_db()
    assert types.result["args"] == ["float"] * len(LARGE_FLOATS)


def test_an_int_too_long_for_json_is_refused_naming_it(settings):
    settings.JOBS = {**settings.JOBS, "MAX_ARGUMENTS_BYTES": None}
    with pytest.raises(ArgumentNotSerializable, match=r"args\[1\] is an int of more than 4300 digits"):
        encode_arguments([1, 10**5000], {})
    assert encode_arguments([10**4299], {})[0] == [10**4299]


RESULT_WORKERS = pytest.mark.parametrize(
    "worker_class", ["jobs.worker.SimpleWorker", "jobs.worker.LeanWorker", "jobs.worker.ThreadedWorker"]
)


@pytest.mark.django_db(transaction=True)
@RESULT_WORKERS
def test_a_result_neither_json_nor_printable_ends_the_job_with_a_note_of_its_type(worker_class):
    """The codec refuses an int of more than 4,300 digits, and so does ``repr()``; a ``__repr__`` may
    raise. The job ran: it ends finished all the same, never left ``started`` for the reaper."""
    long_int, unrepresentable = jobs.returns_a_long_int.enqueue(), jobs.returns_unrepresentable.enqueue()
    drain(worker_class)
    long_int.refresh_from_db()
    unrepresentable.refresh_from_db()
    assert (long_int.status, unrepresentable.status) == (Status.FINISHED, Status.FINISHED)
    assert long_int.result.startswith("<int whose repr() cannot be read: Exceeds the limit")
    assert unrepresentable.result == "<Unrepresentable whose repr() cannot be read: no repr for this one>"


@pytest.mark.django_db(transaction=True)
def test_a_result_the_codec_refuses_is_kept_as_its_repr():
    record = jobs.returns_a_set.enqueue()
    drain()
    record.refresh_from_db()
    assert (record.status, record.result) == (Status.FINISHED, "{1, 2}")


def test_plain_gives_stored_values_as_json_without_reading_the_database():
    when = datetime.datetime(2026, 11, 23, 12, 30, tzinfo=datetime.UTC)
    stored = encode(
        [1e16, 0.5, when, decimal.Decimal("1.10"), uuid.UUID(int=7), {"nested": [2.0**70]}, "text"], "result"
    )
    assert plain(stored) == [
        1e16,
        0.5,
        when.isoformat(),
        "1.10",
        str(uuid.UUID(int=7)),
        {"nested": [2.0**70]},
        "text",
    ]
    assert plain({"__jobs__": ["model", "auth.user", 42]}) == 42  # no such row: nothing is read
    assert json.loads(json.dumps(plain(stored))) == plain(stored)
