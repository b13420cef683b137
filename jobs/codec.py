"""JSON encoding of job arguments and results.

Plain JSON values pass through. Datetimes, dates, times, Decimals, UUIDs and saved model
instances are wrapped in a one-key marker object (``{"__jobs__": [type, value]}``); a model
instance travels by reference and is fetched again in the worker. Anything else is refused
with an error that names the argument.
"""

from __future__ import annotations

import datetime
import decimal
import math
import uuid
from typing import Any

from django.apps import apps
from django.db import models

from .exceptions import ArgumentNotSerializable

MARKER = "__jobs__"


def encode_arguments(args: tuple | list, kwargs: dict[str, Any]) -> tuple[list, dict[str, Any]]:
    """Encode positional and keyword arguments, naming the first one that cannot be stored."""
    encoded_args = [encode(value, f"args[{index}]") for index, value in enumerate(args)]
    encoded_kwargs = {}
    for name, value in kwargs.items():
        if not isinstance(name, str):
            raise ArgumentNotSerializable(f"keyword argument names must be strings, got {name!r}")
        encoded_kwargs[name] = encode(value, f"argument {name!r}")
    return encoded_args, encoded_kwargs


def decode_arguments(args: list, kwargs: dict[str, Any]) -> tuple[list, dict[str, Any]]:
    return [decode(value) for value in args], {name: decode(value) for name, value in kwargs.items()}


def encode(value: Any, where: str = "value") -> Any:  # noqa: C901 - one branch per supported type
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ArgumentNotSerializable(f"{where} is {value!r}, which JSON cannot represent")
        return value
    if isinstance(value, list | tuple):
        return [encode(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict):
        if MARKER in value:
            raise ArgumentNotSerializable(f"{where} uses the reserved key {MARKER!r}")
        encoded = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ArgumentNotSerializable(f"{where} has a non-string key {key!r}; JSON keys are strings")
            encoded[key] = encode(item, f"{where}[{key!r}]")
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
        return {MARKER: ["model", value._meta.label_lower, encode(value.pk, f"{where}.pk")]}
    raise ArgumentNotSerializable(
        f"{where} is of type {type(value).__name__}, which cannot be stored as JSON "
        "(allowed: JSON values, datetime, date, time, Decimal, UUID and saved model instances)"
    )


_DECODERS = {
    "datetime": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "time": datetime.time.fromisoformat,
    "decimal": decimal.Decimal,
    "uuid": uuid.UUID,
}


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(item) for item in value]
    if isinstance(value, dict):
        if MARKER in value and len(value) == 1:
            kind, *payload = value[MARKER]
            if kind == "model":
                label, pk = payload
                model = apps.get_model(label)
                return model._default_manager.get(pk=decode(pk))
            return _DECODERS[kind](payload[0])
        return {key: decode(item) for key, item in value.items()}
    return value
