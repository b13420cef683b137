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


def test_two_sentinels_in_one_process_name_their_services_apart():
    """django-redis keeps a pool per URL for the life of the process, and a Sentinel URL names the service:
    a module's second set of servers (after xdist moved tests around) must not reuse the first's pools."""
    primary = RedisServer()
    sentinels = [SentinelServer(primary), SentinelServer(primary)]
    try:
        assert sentinels[0].service != sentinels[1].service
    finally:
        for server in (*sentinels, primary):
            server.cleanup()
