"""Dropping entries by tag, and when a watched model is saved or deleted."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from django.db import connections, models, router, transaction
from django.db.models.signals import post_delete, post_save

from ..exceptions import InvalidCacheDefinition
from . import keys
from .store import ERRORS, store


def invalidate_tags(*tags: str, alias: str | None = None) -> int:
    """Drop every entry stored under any of ``tags``; returns how many. Never raises for Redis faults.

    A tag names what an entry depends on (``"product:42"``); give it to ``@cached(tags=...)`` or
    ``@cache_view(tags=...)``.
    """
    for tag in tags:
        keys.check_tag(tag)
    cache = store(alias)
    try:
        return cache.invalidate_tags(tags)
    except ERRORS as exc:
        cache.failed(exc)
        return 0


def invalidate_on_change(
    model: type[models.Model], tags: Callable[[Any], Iterable[str]], alias: str | None = None
) -> None:
    """Drop the entries tagged ``tags(instance)`` when an instance of ``model`` is saved or deleted.

    ``invalidate_on_change(Product, lambda p: [f"product:{p.pk}"])``. The tags are dropped when the
    saving transaction commits, so that no reader caches the old row again in between.
    """
    if not (isinstance(model, type) and issubclass(model, models.Model)) or not callable(tags):
        raise TypeError("invalidate_on_change() takes a model class and a callable returning tags")
    _connect(model, tags, alias, uid=f"jobs.cache:{model._meta.label_lower}:{id(tags)}:{alias}")


def watch_model(model: type[models.Model], alias: str | None = None) -> None:
    """Drop every entry tagged with the model's own tag when any instance is saved or deleted."""
    tags = functools.partial(_constant, (keys.model_tag(model),))
    _connect(model, tags, alias, uid=f"jobs.cache:{model._meta.label_lower}:model:{alias}")


def _connect(model: type[models.Model], tags: Callable, alias: str | None, uid: str) -> None:
    receiver = functools.partial(_changed, tags=tags, alias=alias)
    post_save.connect(receiver, sender=model, weak=False, dispatch_uid=uid)
    post_delete.connect(receiver, sender=model, weak=False, dispatch_uid=uid)


def _constant(value: tuple[str, ...], instance: Any) -> tuple[str, ...]:
    return value


def _changed(
    sender: type[models.Model], instance: Any, *, tags: Callable, alias: str | None, **kwargs: Any
) -> None:
    names = tags(instance)
    if isinstance(names, str | bytes):
        raise InvalidCacheDefinition(
            f"the tags callable of {sender.__name__} must return a list of strings, not the string {names!r}"
        )
    using = kwargs.get("using") or router.db_for_write(sender)
    transaction.on_commit(functools.partial(invalidate_tags, *tuple(names), alias=alias), using=using)


def pending(tags: Iterable[str]) -> bool:
    """Whether a transaction open in this thread is to drop one of ``tags`` when it commits (a watched
    row changed in it): a value computed now may hold that change, which a rollback would undo while
    the value stayed cached."""
    wanted = set(tags)
    if not wanted:
        return False
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            continue
        for _savepoints, callback, *_ in connection.run_on_commit:
            if (
                isinstance(callback, functools.partial)
                and callback.func is invalidate_tags
                and wanted.intersection(callback.args)
            ):
                return True
    return False
