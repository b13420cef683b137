"""Rate limits held across all workers: a sliding window per job function (and per key) in Redis.

``@job(rate_limit="10/s")`` lets at most 10 runs of the function start in any second, whatever the
number of workers; ``rate_key=lambda customer, **kw: customer`` gives each customer a window of its own.
A job over the limit is not run and not counted as an attempt: the worker puts it in RQ's scheduled
registry for the moment the window has room, and the due-jobs task (``jobs.upkeep.due``) moves it back.
"""

from __future__ import annotations

from redis import Redis

from ..codec import decode_arguments
from ..exceptions import JobsError
from ..keys import rate_limit as rate_limit_key
from ..options import RateLimit
from ..registry import resolve
from ..transport import scripts
from ..transport.runner import Call

# A sliding window log: the start times (ms, Redis's clock) of the runs in the last window.
# Returns 0 when a run may start now (and records it), else the milliseconds until one may.
_SCRIPT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now_ms, ARGV[3] .. ':' .. now_ms)
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now_ms)
"""


def acquire(redis: Redis, function: str, bucket: str, limit: RateLimit, member: str) -> float:
    """Take one run from the window; returns 0 if the run may start now, else seconds to wait."""
    wait_ms = scripts.run(
        redis, _SCRIPT, [rate_limit_key(function, bucket)], [limit.seconds * 1000, limit.count, member]
    )
    return int(wait_ms) / 1000


def limited(call: Call) -> bool:
    """Whether the function of ``call`` has a rate limit (no Redis command)."""
    try:
        return resolve(call.function).options.rate_limit is not None
    except JobsError:
        return False


def wait_before(call: Call | None, redis: Redis) -> float:
    """Seconds a dequeued job must wait for its function's rate limit; 0 when it may run now.

    Free for a job whose function has no rate limit: no Redis command, no database query.
    """
    if call is None:
        return 0
    job_id, function, args, kwargs = call.job_id, call.function, call.args, call.kwargs
    try:
        options = resolve(function).options
    except JobsError:
        return 0  # the run fails with the reason
    if options.rate_limit is None:
        return 0
    bucket = "*"
    if options.rate_key is not None:
        call_args, call_kwargs = decode_arguments(args, kwargs)
        bucket = options.rate_bucket_for(call_args, call_kwargs)
    return acquire(redis, function, bucket, RateLimit.parse(options.rate_limit), job_id)
