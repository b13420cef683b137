"""Priorities within one RQ queue: each queue's list of waiting job ids is kept in order of priority.

RQ's worker takes the id at the head of a queue's list. A job's priority (``-100`` to ``100``, as in
``django.tasks``; ``0`` when none is given) travels in its RQ job's ``meta``, and every time `jobs` puts
an id on a list it puts it in its place, in one Lua script run by Redis: behind every waiting job of
higher or equal priority and ahead of every one of lower priority, so that jobs of one priority keep
their order (first in, first out). ``at_front`` places a job ahead of the waiting jobs of its own
priority, still behind those of a higher one.

The ids that RQ's own code puts back on a list (a due job moved from the scheduled registry, a retry
due at once) are appended at the tail by RQ and placed right after, by the same script: a job that
became due is taken by a worker in its place from that moment on. A job pushed alone is written,
pushed and placed by one script (``push_one``), which runs the placing script's code after the writes.

A job pushed in its place already (the common case) costs the script a look at the job before it. Jobs
that must move (one, or a batch of ``enqueue_many``) cost a binary search of the list (which is in
order) and one pass that rewrites the shorter side of the list around their place; an id placed after
RQ pushed it costs a search for it besides. Redis Cluster is not supported (the script reads job
hashes it is not given as keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue

from . import scripts

#: Where a job's priority lives in its RQ job's ``meta``.
META_KEY = "priority"

_PLACE = """
local queue, prefix, front = KEYS[1], ARGV[1], ARGV[2] == '1'
local known = {}
local function priority(id)
    if known[id] then return known[id] end
    local value = 0
    local meta = redis.call('HGET', prefix .. id, 'meta')
    if meta then
        local ok, decoded = pcall(cjson.decode, meta)
        if ok and type(decoded) == 'table' and tonumber(decoded['priority']) then
            value = tonumber(decoded['priority'])
        end
    end
    known[id] = value
    return value
end
-- Whether a waiting job of priority q stays ahead of a job of priority p being placed.
local function ahead(q, p)
    if front then return q > p end
    return q >= p
end
-- The first index in [lo, hi) whose job does not stay ahead of priority p: the list is in order, so a
-- binary search finds it.
local function place_of(p, lo, hi)
    while lo < hi do
        local middle = math.floor((lo + hi) / 2)
        if ahead(priority(redis.call('LINDEX', queue, middle)), p) then lo = middle + 1 else hi = middle end
    end
    return lo
end
local ids = {}
for i = 3, #ARGV, 2 do
    ids[#ids + 1] = ARGV[i]
    known[ARGV[i]] = tonumber(ARGV[i + 1]) or nil
end
local n = #ids

-- Ids just pushed at the tail one after another (every push of `jobs`). In the common case they are in
-- place already, which costs one look at the job before them; otherwise they are merged into the list
-- in one pass.
if not front then
    local tail = redis.call('LRANGE', queue, -n, -1)
    local is_tail = #tail == n
    for i = 1, n do
        is_tail = is_tail and tail[i] == ids[i]
    end
    if is_tail then
        local order, in_order = {}, true
        for i = 1, n do
            order[i] = i
            in_order = in_order and (i == 1 or priority(ids[i - 1]) >= priority(ids[i]))
        end
        if not in_order then
            table.sort(order, function(a, b)
                local pa, pb = priority(ids[a]), priority(ids[b])
                if pa ~= pb then return pa > pb end
                return a < b
            end)
        end
        local top = priority(ids[order[1]])
        local previous = redis.call('LINDEX', queue, -n - 1)
        if in_order and (not previous or ahead(priority(previous), top)) then return 0 end
        do
            local base = redis.call('LLEN', queue) - n
            if base == 0 then redis.call('DEL', queue) else redis.call('LTRIM', queue, 0, base - 1) end
            -- The block goes among the jobs of [first, stop): those not ahead of its highest priority
            -- and ahead of its lowest. Only the shorter side of the list around them is rewritten.
            local first = place_of(top, 0, base)
            local stop = place_of(priority(ids[order[n]]), first, base)
            local region = {}
            if stop > first then region = redis.call('LRANGE', queue, first, stop - 1) end
            local merged, r = {}, 1
            for b = 1, n do
                local id = ids[order[b]]
                while r <= #region and ahead(priority(region[r]), priority(id)) do
                    merged[#merged + 1] = region[r]
                    r = r + 1
                end
                merged[#merged + 1] = id
            end
            for i = r, #region do merged[#merged + 1] = region[i] end
            if first <= base - stop then
                local part = {}
                if first > 0 then part = redis.call('LRANGE', queue, 0, first - 1) end
                for _, id in ipairs(merged) do part[#part + 1] = id end
                redis.call('LTRIM', queue, stop, -1)
                for i = #part, 1, -1000 do
                    local chunk = {}
                    for j = i, math.max(i - 999, 1), -1 do chunk[#chunk + 1] = part[j] end
                    redis.call('LPUSH', queue, unpack(chunk))
                end
            else
                local part = merged
                if stop < base then
                    for _, id in ipairs(redis.call('LRANGE', queue, stop, base - 1)) do
                        part[#part + 1] = id
                    end
                end
                if first == 0 then redis.call('DEL', queue) else redis.call('LTRIM', queue, 0, first - 1) end
                for i = 1, #part, 1000 do
                    redis.call('RPUSH', queue, unpack(part, i, math.min(i + 999, #part)))
                end
            end
            return n
        end
    end
end

-- Otherwise each id on its own: taken out and put back in its place; ids no longer there are skipped.
local moved, rank = 0, front and 1 or -1
for i = 1, n do
    local id = ids[i]
    if redis.call('LPOS', queue, id, 'RANK', rank) then
        redis.call('LREM', queue, rank, id)
        local length = redis.call('LLEN', queue)
        local index = place_of(priority(id), 0, length)
        if index >= length then
            redis.call('RPUSH', queue, id)
        else
            redis.call('LINSERT', queue, 'BEFORE', redis.call('LINDEX', queue, index), id)
        end
        moved = moved + 1
    end
end
return moved
"""


# One job pushed in one command: what RQ's ``enqueue_job`` writes for a job that waits for nothing (the
# queue added to RQ's set of queues, the job's hash, its id at the tail or the head of the list), then
# the id put in its place, as ``place`` does.
# KEYS: the queue, the job's hash, RQ's set of queues. ARGV: the prefix of job hashes, '1' for the head,
# the job's id, its priority, then the fields and values of its hash.
_PUSH = (
    "local function place(KEYS, ARGV)\n"
    + _PLACE
    + """
end
redis.call('SADD', KEYS[3], KEYS[1])
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
redis.call(ARGV[2] == '1' and 'LPUSH' or 'RPUSH', KEYS[1], ARGV[3])
return place({KEYS[1]}, {ARGV[1], ARGV[2], ARGV[3], ARGV[4]})
"""
)


def push_one(
    queue: Queue, job_id: str, job_hash: dict[str, Any], job_priority: int, *, front: bool = False
) -> None:
    """Write an RQ job's hash (``job_hash``, as RQ's ``enqueue_job`` writes it) and push the job to
    ``queue`` in its place, in one command and so in one round trip, atomically.

    The script is sent by its hash (``transport.scripts``).
    """
    args: list[Any] = [queue.job_class.key_for(""), "1" if front else "0", job_id, job_priority]
    for field_value in job_hash.items():
        args += field_value
    keys = [queue.key, queue.job_class.key_for(job_id), queue.redis_queues_keys]
    scripts.run(queue.connection, _PUSH, keys, args)


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
