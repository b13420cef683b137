"""Cache key names, built in one place: entries, their locks, refresh flags and generations, tag indexes
and tag generations, and the counts.

Every name is ``<CACHES KEY_PREFIX>:<version>:<JOBS CACHE_PREFIX>:2:<kind>:<rest>`` (the first two parts
are Django's ``make_key``); ``<kind>`` is a fixed word per kind of key, and what a caller chooses (a
namespace, a tag) comes only after it, so no tag, namespace or argument can spell another kind's key.
``2`` is the layout: no key of the first one (``<CACHE_PREFIX>:<namespace>:v<n>:...``,
``<CACHE_PREFIX>:tags:...``) can equal one of this. Arguments never go into a key raw: they are
normalised to a stable text and hashed, so a key stays short and valid whatever a caller passes.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from django.db import models, router
from django.utils.datastructures import MultiValueDict

from ..conf import jobs_settings
from ..exceptions import InvalidCacheDefinition, UncacheableArgument

#: The key layout's own segment; see the module's docstring.
LAYOUT = "2"
_SAFE_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]{1,120}")
#: A tag that reads so is its set's name as it is; any other (long, with spaces: from a URL, say) is
#: hashed, into a name with a space that no tag kept as it is can have.
_PLAIN_TAG = re.compile(r"[^\s]{1,200}")
#: An int this large or larger is keyed in hex, which has no length limit: a process may refuse the decimal
#: text of an int of more than 640 digits (``sys.set_int_max_str_digits``, 4,300 by default), and an int
#: must have one form in every process.
_LONG = 1 << 2000
#: A subclass of str, int or float (a ``(str, Enum)``, an ``IntEnum``) is keyed by its value, read by its
#: base class (``str(member)`` is the member's name), as a job's JSON arguments carry it.
_VALUE_OF: dict[type, Callable[[Any], Any]] = {int: int.__int__, float: float.__float__, str: str.__str__}


def namespace_for(explicit: str | None, default: str) -> str:
    """A caller's namespace is checked; a default one (a dotted path) is shortened if it must be."""
    if explicit is not None:
        if not isinstance(explicit, str) or not _SAFE_NAMESPACE.fullmatch(explicit):
            raise InvalidCacheDefinition(
                f"namespace must be 1 to 120 ASCII letters, digits, '_', '.' or '-', not {explicit!r}"
            )
        return explicit
    if _SAFE_NAMESPACE.fullmatch(default):
        return default
    ascii_part = re.sub(r"[^A-Za-z0-9_.\-]", "_", default)[:80]
    return f"{ascii_part}-{_digest(default.encode())[:12]}"


def check_tag(tag: Any) -> str:
    if not isinstance(tag, str) or not tag:
        raise InvalidCacheDefinition(f"a tag must be a non-empty string, not {tag!r}")
    return tag


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def digest(parts: Iterable[Any], names: Sequence[str] = ()) -> str:
    """A short, stable hash of values: equal arguments give equal digests, in any process.

    ``names`` name the values in the error raised for one that cannot be part of a key.
    """
    out: list[str] = []
    for index, value in enumerate(parts):
        kind = type(value)
        if kind is int and -_LONG < value < _LONG:  # the commonest arguments, without a call
            out.append(f"i{value}")
        elif kind is str and "\x1f" not in value and "\\" not in value:
            out.append("s" + value)
        else:
            where = f"argument {names[index]!r}" if index < len(names) else f"value {index}"
            try:
                _normalise(value, where, out)
            except RecursionError:
                raise UncacheableArgument(
                    f"{where} is nested too deeply, or holds itself, to be part of a cache key"
                ) from None
    return _digest("\x1f".join(out).encode("utf-8", "surrogatepass"))


def _normalise(value: Any, where: str, out: list[str]) -> None:  # noqa: C901 - one branch per type
    # Type tags keep 1, "1", 1.0 and True apart; lists and tuples are one kind, as after a JSON round trip.
    kind = type(value)
    if value is None or kind is bool:
        out.append(repr(value))
    elif kind is str:
        out.append("s" + value.replace("\\", "\\\\").replace("\x1f", "\\x1f"))
    elif kind is int:
        out.append(f"i{value}" if -_LONG < value < _LONG else f"x{value:x}")
    elif kind is float:
        out.append(f"f{value!r}")
    elif kind is bytes:
        out.append("b" + value.hex())
    elif isinstance(value, list | tuple):
        out.append(f"[{len(value)}")
        for index, item in enumerate(value):
            _normalise(item, f"{where}[{index}]", out)
    elif isinstance(value, MultiValueDict):  # a QueryDict: every value of each name, in their order
        out.append(f"{{*{len(value)}")
        for key in sorted(value, key=repr):
            _normalise(key, f"{where} key", out)
            _normalise(value.getlist(key), f"{where}[{key!r}]", out)
    elif isinstance(value, Mapping):
        out.append(f"{{{len(value)}")
        for key in sorted(value, key=repr):
            _normalise(key, f"{where} key", out)
            _normalise(value[key], f"{where}[{key!r}]", out)
    elif isinstance(value, set | frozenset):
        out.append(f"<{len(value)}")
        for item in sorted(value, key=repr):
            _normalise(item, f"{where} item", out)
    elif isinstance(value, models.Model):
        if value.pk is None:
            raise UncacheableArgument(f"{where} is an unsaved {kind.__name__}: it has no key to cache by")
        out.append(f"m{value._meta.label_lower}")
        _normalise(value.pk, f"{where}.pk", out)  # a text key is escaped as any text
        out.append(_database_of(value))
    elif isinstance(value, datetime.date | datetime.time | decimal.Decimal | uuid.UUID):
        out.append(f"{kind.__name__}:{value.isoformat() if hasattr(value, 'isoformat') else value}")
    elif isinstance(value, int | float | str):  # subclasses: IntEnum, StrEnum, (str, Enum)
        base = next(b for b in _VALUE_OF if isinstance(value, b))
        _normalise(_VALUE_OF[base](value), where, out)
    else:
        raise UncacheableArgument(
            f"{where} is a {kind.__qualname__}, which cannot be part of a cache key; pass plain values "
            "(str, int, float, bool, None, bytes, lists, dicts, sets, dates, Decimal, UUID, model instances)"
        )


def _database_of(instance: models.Model) -> str:
    """The database a row was read from, when it is not where the router reads its model: one pk names
    another row there (a database per tenant, say). As the job codec sends it."""
    database = instance._state.db
    if database is None or database == router.db_for_read(type(instance)):
        return "@"
    return "@" + database


def _kind(kind: str, rest: str) -> str:
    return f"{jobs_settings.CACHE_PREFIX}:{LAYOUT}:{kind}:{rest}"


def entry(namespace: str, version: int, hashed: str) -> str:
    return _kind("entry", f"{namespace}:v{version}:{hashed}")


def lock(entry_key: str) -> str:
    """The lock of one entry's computation, named after the entry's (made) key."""
    return _kind("lock", entry_key)


def refresh_flag(entry_key: str) -> str:
    """Set while a refresh of one stale entry is on its way, named after the entry's (made) key."""
    return _kind("refresh", entry_key)


def tag(name: str) -> str:
    """A sorted set of the entries stored under a tag, scored by when each expires."""
    return _kind("tag", _tag_name(name))


def tag_generation(name: str) -> str:
    """A token drawn anew at each invalidation of a tag: a value computed meanwhile is not stored."""
    return _kind("generation", _tag_name(name))


def entry_generation(entry_key: str) -> str:
    """A token drawn anew when one entry is invalidated while it is computed, named after its (made) key."""
    return _kind("entry-generation", entry_key)


def stats(namespace: str) -> str:
    """A hash of one namespace's counts: kind -> count."""
    return _kind("stats", namespace)


def stats_namespaces() -> str:
    """The set of namespaces with counts."""
    return _kind("stats-namespaces", "all")


def stats_batch(process: str) -> str:
    """The last batch of counts a process added, so that a batch sent again is not added twice."""
    return _kind("stats-batch", process)


def _tag_name(name: str) -> str:
    if _PLAIN_TAG.fullmatch(name):
        return name
    return f"hashed {_digest(name.encode())}"


def model_tag(model: type[models.Model]) -> str:
    return f"model:{model._meta.label_lower}"
