"""Priorities within one RQ queue: each queue's list of waiting job ids is kept in order of priority.

RQ's worker takes the id at the head of a queue's list. A job's priority (``-100`` to ``100``, as in
``django.tasks``; ``0`` when none is given) travels in its RQ job's ``meta``, and every time `jobs` puts
an id on a list it puts it in its place, in one Lua script run by Redis: behind every waiting job of
higher or equal priority and ahead of every one of lower priority, so that jobs of one priority keep
their order (first in, first out). ``at_front`` places a job ahead of the waiting jobs of its own
priority, still behind those of a higher one.

The ids that RQ's own code puts back on a list (a due job moved from the scheduled registry, a retry
due at once) are appended at the tail by RQ and placed right after, by the same script: a job that
became due is taken by a worker in its place from that moment on.

A job that already sits in its place costs the script a few reads next to it; a job that must move
costs a walk from the head to its place. Redis Cluster is not supported (the script reads job hashes
it is not given as keys), as RQ's queues are not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue

#: Where a job's priority lives in its RQ job's ``meta``.
META_KEY = "priority"

_PLACE = """
local queue, prefix, front = KEYS[1], ARGV[1], ARGV[2] == '1'
local function priority(id)
    local meta = redis.call('HGET', prefix .. id, 'meta')
    if not meta then return 0 end
    local ok, decoded = pcall(cjson.decode, meta)
    if ok and type(decoded) == 'table' and tonumber(decoded['priority']) then
        return tonumber(decoded['priority'])
    end
    return 0
end
-- Whether a job of priority p belongs behind a waiting job of priority q.
local function behind(q, p)
    if front then return q > p end
    return q >= p
end
local ids, priorities = {}, {}
for i = 3, #ARGV, 2 do
    ids[#ids + 1] = ARGV[i]
    priorities[#ids] = tonumber(ARGV[i + 1]) or priority(ARGV[i])
end
-- The common case, ids just pushed at the tail in their order: in place if the job before them is.
if not front then
    local tail = redis.call('LRANGE', queue, -#ids, -1)
    local in_order = #tail == #ids
    for i = 1, #ids do
        in_order = in_order and tail[i] == ids[i] and (i == 1 or priorities[i - 1] >= priorities[i])
    end
    if in_order then
        local previous = redis.call('LINDEX', queue, -#ids - 1)
        if not previous or priority(previous) >= priorities[1] then return 0 end
    end
end
local moved = 0
for i = 1, #ids do
    local id, p = ids[i], priorities[i]
    local rank = front and 1 or -1
    local position = redis.call('LPOS', queue, id, 'RANK', rank)
    if position then
        local previous = position > 0 and redis.call('LINDEX', queue, position - 1)
        local following = redis.call('LINDEX', queue, position + 1)
        local in_place = (not previous or behind(priority(previous), p))
            and (not following or not behind(priority(following), p))
        if not in_place then
            redis.call('LREM', queue, rank, id)
            local pivot, start, length = nil, 0, redis.call('LLEN', queue)
            while not pivot and start < length do
                for _, other in ipairs(redis.call('LRANGE', queue, start, start + 255)) do
                    if not behind(priority(other), p) then
                        pivot = other
                        break
                    end
                end
                start = start + 256
            end
            if pivot then
                redis.call('LINSERT', queue, 'BEFORE', pivot, id)
            else
                redis.call('RPUSH', queue, id)
            end
            moved = moved + 1
        end
    end
end
return moved
"""


def meta(priority: int) -> dict[str, Any] | None:
    """The ``meta`` of an RQ job of this priority (None for the default, which needs none)."""
    return {META_KEY: priority} if priority else None


def place(
    queue: Queue,
    jobs: Sequence[tuple[str, int | None]],
    *,
    front: bool = False,
    pipeline: Pipeline | None = None,
) -> Any:
    """Put these ``(job id, priority)`` pairs, already on the queue's list, in their place; a priority
    of None is read from the job's ``meta``, and ids no longer on the list are skipped.

    In ``pipeline`` when given (the script then runs with the pipeline's other commands); the ids of
    jobs pushed at the tail one after another are given in that order, so that the common case (in
    place already) costs one look at the job before them.
    """
    if not jobs:
        return 0
    client: Redis | Pipeline = pipeline if pipeline is not None else queue.connection
    args: list[Any] = [queue.job_class.key_for(""), "1" if front else "0"]
    for job_id, job_priority in jobs:
        args += [job_id, "" if job_priority is None else job_priority]
    # EVAL with the script's text rather than EVALSHA: a pipeline that holds a registered script asks
    # the server whether it has it first (a round trip per push); Redis caches the compiled text.
    return client.eval(_PLACE, 1, queue.key, *args)
