"""RESP, the Redis wire protocol, by hand: the one encoder (and the one raw round trip) shared by
the feed's writer (``marketdata.sink``) and the window reader (``marketdata.reader``).

Why by hand: redis-py's pipeline spends ~15 µs of Python per queued command (argument encoding,
one reply parse each), which alone caps a feed near 50k ticks/s on this machine; a batch encoded
as one ``bytes`` and written through redis-py's own ``Connection`` (connect, auth, socket handling,
hiredis reply parsing) costs a fraction of that (``bench/feed_ingest.py``). Everything else about
the connection stays redis-py's.
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

CRLF = b"\r\n"
EMPTY = b"$0\r\n\r\n"  # an empty bulk string


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def arg(x) -> bytes:
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode()
    if isinstance(x, float):
        return repr(x).encode()
    return str(x).encode()


def command(*args) -> bytes:
    """RESP encoding of one command (bytes, str, int, float arguments)."""
    return b"*%d\r\n" % len(args) + b"".join(bulk(arg(a)) for a in args)


def round_trip(redis, packed: bytes, ncommands: int) -> list:
    """Send pre-packed RESP commands on a pooled connection and read ``ncommands`` raw replies.
    Retries once on a dropped connection (for reads: they are idempotent)."""
    pool = redis.connection_pool
    for attempt in (0, 1):
        conn = pool.get_connection()
        try:
            conn.send_packed_command([packed])
            read = conn.read_response
            replies = []
            error = None
            for _ in range(ncommands):  # drain every reply, so the pooled connection stays in sync
                try:
                    replies.append(read(disable_decoding=True))
                except ResponseError as exc:
                    error = error or exc
                    replies.append(None)
            if error is not None:
                raise error
            return replies
        except (RedisConnectionError, RedisTimeoutError):
            conn.disconnect()
            if attempt:
                raise
        finally:
            pool.release(conn)
    raise AssertionError("unreachable")
