"""Lua scripts sent by their hash: each is registered (hashed) once per process, and redis-py loads it
into Redis again when Redis no longer holds it (a restart, ``SCRIPT FLUSH``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.commands.core import Script

_registered: dict[str, Script] = {}


def run(connection: Redis, text: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """Run the script ``text`` on ``connection`` with ``keys`` and ``args``; returns its reply."""
    script = _registered.get(text)
    if script is None:
        script = _registered[text] = connection.register_script(text)
    return script(keys=keys, args=args, client=connection)
