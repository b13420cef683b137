"""The tests' private Redis servers: each test process gets its own, even when processes race for a port."""

from tests.redis_server import RedisServer, SentinelServer, answers_as


def test_a_redis_whose_port_another_process_took_moves_to_another():
    other = RedisServer()
    other.start()
    mine = RedisServer()
    mine.port = other.port  # as if the other process had bound it between the choice and the start
    try:
        mine.start()
        assert mine.port != other.port
        assert answers_as(mine.client, mine.process.pid)
        assert answers_as(other.client, other.process.pid)
    finally:
        mine.cleanup()
        other.cleanup()


def test_a_sentinel_whose_port_another_process_took_moves_to_another():
    primary = RedisServer()
    primary.start()
    other = RedisServer()
    other.start()
    sentinel = SentinelServer(primary)
    sentinel.port = other.port
    try:
        sentinel.start()
        assert sentinel.port != other.port
        assert sentinel.knows_primary()
    finally:
        sentinel.cleanup()
        other.cleanup()
        primary.cleanup()
