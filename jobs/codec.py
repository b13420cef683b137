"""JSON encoding of job arguments and results.

Plain JSON values pass through. Datetimes, dates, times, Decimals, UUIDs and saved model
instances are wrapped in a one-key marker object (``{"__jobs__": [type, value]}``); a model
instance travels by reference and is fetched again in the worker. So is a float that JSON writes with
a positive exponent (``1e+16``): PostgreSQL's ``jsonb`` keeps it as a whole number, which would come
back as an int. Anything else is refused
with an error that names the argument.

What one database stores and another refuses is refused on all of them, so that a job behaves
the same everywhere: NUL characters and lone surrogates in strings and keys (PostgreSQL's
``jsonb`` takes neither), values nested deeper than ``MAX_DEPTH``, and arguments whose JSON
is longer than ``JOBS["MAX_ARGUMENTS_BYTES"]``.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import re
import uuid
from typing import Any

from django.apps import apps
from django.db import connections, models, router

from .conf import jobs_settings
from .exceptions import ArgumentNotSerializable, ArgumentUnavailable

MARKER = "__jobs__"

#: Lists and objects nested deeper than this are refused (the JSON of every database can hold them,
#: and decoding them cannot exhaust the stack).
MAX_DEPTH = 64

#: Ints of this many digits or more are refused: Python writes at most ``sys.get_int_max_str_digits()``
#: (4,300 by default) as text, and no database's JSON reads more back as a number.
_INT_DIGITS = 4300
_LONGEST_INT = 10**_INT_DIGITS
#: Characters PostgreSQL's jsonb cannot hold: NUL, and halves of a surrogate pair not written as a pair.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def encode_arguments(args: tuple | list, kwargs: dict[str, Any]) -> tuple[list, dict[str, Any]]:
    """Encode positional and keyword arguments, naming the first one that cannot be stored."""
    try:
        encoded_args = [encode(value, f"args[{index}]") for index, value in enumerate(args)]
    except ArgumentNotSerializable as exc:
        exc.field = "args"
        raise
    encoded_kwargs = {}
    try:
        for name, value in kwargs.items():
            if not isinstance(name, str):
                raise ArgumentNotSerializable(f"keyword argument names must be strings, got {name!r}")
            _check_text(name, "a keyword argument name")
            encoded_kwargs[name] = encode(value, f"argument {name!r}")
    except ArgumentNotSerializable as exc:
        exc.field = "kwargs"
        raise
    _check_size(encoded_args, encoded_kwargs)
    return encoded_args, encoded_kwargs


def _check_size(args: list, kwargs: dict[str, Any]) -> None:
    """Refuse arguments whose JSON is longer than ``MAX_ARGUMENTS_BYTES`` (None: no bound)."""
    bound = jobs_settings.MAX_ARGUMENTS_BYTES
    if bound is None:
        return
    size = 0
    for field, value in (("args", args), ("kwargs", kwargs)):
        try:
            size += len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
        except ValueError as exc:  # an int of more digits than Python converts to text
            raise ArgumentNotSerializable(f"{field} cannot be written as JSON: {exc}", field) from exc
        if size > bound:
            raise ArgumentNotSerializable(
                f"the arguments take more than {bound} bytes as JSON (JOBS['MAX_ARGUMENTS_BYTES']); "
                "store large data elsewhere and pass its id",
                field,
            )


def _check_text(text: str, where: str) -> None:
    found = UNSTORABLE.search(text)
    if found is not None:
        raise ArgumentNotSerializable(
            f"{where} holds the character {found.group()!r} at position {found.start()}, "
            "which not every database can store"
        )


def decode_arguments(args: list, kwargs: dict[str, Any]) -> tuple[list, dict[str, Any]]:
    return [decode(value) for value in args], {name: decode(value) for name, value in kwargs.items()}


def encode(value: Any, where: str = "value", depth: int = 0) -> Any:  # noqa: C901 - one branch per type
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        _check_text(value, where)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ArgumentNotSerializable(f"{where} is {value!r}, which JSON cannot represent")
        text = repr(value)
        return {MARKER: ["float", text]} if "e+" in text else value
    if isinstance(value, int):
        if abs(value) >= _LONGEST_INT:
            raise ArgumentNotSerializable(
                f"{where} is an int of more than {_INT_DIGITS} digits, which JSON cannot represent here"
            )
        return value
    if isinstance(value, list | tuple | dict) and depth >= MAX_DEPTH:
        raise ArgumentNotSerializable(f"{where} is nested more than {MAX_DEPTH} lists or objects deep")
    if isinstance(value, list | tuple):
        return [encode(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value)]
    if isinstance(value, dict):
        if MARKER in value:
            raise ArgumentNotSerializable(f"{where} uses the reserved key {MARKER!r}")
        encoded = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ArgumentNotSerializable(f"{where} has a non-string key {key!r}; JSON keys are strings")
            _check_text(key, f"a key of {where}")
            encoded[key] = encode(item, f"{where}[{key!r}]", depth + 1)
        return encoded
    if isinstance(value, datetime.datetime):
        return {MARKER: ["datetime", value.isoformat()]}
    if isinstance(value, datetime.date):
        return {MARKER: ["date", value.isoformat()]}
    if isinstance(value, datetime.time):
        return {MARKER: ["time", value.isoformat()]}
    if isinstance(value, decimal.Decimal):
        return {MARKER: ["decimal", str(value)]}
    if isinstance(value, uuid.UUID):
        return {MARKER: ["uuid", str(value)]}
    if isinstance(value, models.Model):
        if value.pk is None:
            raise ArgumentNotSerializable(f"{where} is an unsaved {type(value).__name__}; save it first")
        reference = ["model", value._meta.label_lower, encode(value.pk, f"{where}.pk")]
        # A row read from another database than the model's own (router's) is read again from there.
        database = value._state.db
        if database is not None and database != router.db_for_read(type(value)):
            reference.append(database)
        return {MARKER: reference}
    if getattr(value, "is_anonymous", False) is True:
        # AnonymousUser, which request.user wraps in a SimpleLazyObject for a visitor not signed in.
        raise ArgumentNotSerializable(
            f"{where} is an anonymous user (request.user of a visitor who is not signed in), which has no "
            "row in the database to send; check request.user.is_authenticated first, or pass None"
        )
    # value.__class__, not type(value): through a lazy object (request.user), the class of what it wraps.
    raise ArgumentNotSerializable(
        f"{where} is of type {value.__class__.__name__}, which cannot be stored as JSON "
        "(allowed: JSON values, datetime, date, time, Decimal, UUID and saved model instances)"
    )


_DECODERS = {
    "datetime": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "time": datetime.time.fromisoformat,
    "decimal": decimal.Decimal,
    "uuid": uuid.UUID,
    "float": float,
}


def _model_instance(label: str, pk: Any, database: str | None = None) -> models.Model:
    """The row a model argument refers to, read again (from the database it was read from, when that
    was not the model's own); one that is gone can never come back."""
    try:
        model = apps.get_model(label)
    except LookupError as exc:
        raise ArgumentUnavailable(f"the model {label} of an argument no longer exists") from exc
    if database is not None and database not in connections.databases:
        raise ArgumentUnavailable(f"the database {database!r} of an argument is not configured here")
    manager = model._default_manager if database is None else model._default_manager.db_manager(database)
    try:
        return manager.get(pk=decode(pk))
    except model.DoesNotExist as exc:
        raise ArgumentUnavailable(
            f"the {label} with primary key {pk!r} given as an argument no longer exists"
        ) from exc


def plain(value: Any) -> Any:
    """A stored value as plain JSON, for readers outside Python (the JSON API) and for Django's tasks,
    whose values are JSON: floats as numbers, and the other markers as ``DjangoJSONEncoder`` writes their
    values (datetimes, dates, times, Decimals and UUIDs as text), a model instance as its primary key.
    Reads nothing from the database."""
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        if MARKER in value and len(value) == 1:
            kind, *payload = value[MARKER]
            if kind == "model":
                return payload[1]
            return float(payload[0]) if kind == "float" else payload[0]
        return {key: plain(item) for key, item in value.items()}
    return value


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(item) for item in value]
    if isinstance(value, dict):
        if MARKER in value and len(value) == 1:
            kind, *payload = value[MARKER]
            if kind == "model":
                return _model_instance(*payload)
            return _DECODERS[kind](payload[0])
        return {key: decode(item) for key, item in value.items()}
    return value
