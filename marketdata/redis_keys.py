"""The Redis layout of live market data: every key name and every binary encoding, in one place.

The feed worker (``workers.feed`` through ``marketdata.store``) is the only writer; analysis
(``marketdata.reader``), the dashboard and ``manage.py feed_status`` (``marketdata.health``) read.

Keys (``<SYM>`` is the broker symbol exactly as listed, suffix included):

===========================  ========  ==========================================================
key                          type      content
===========================  ========  ==========================================================
``md:ticks:<SYM>``           stream    every tick, oldest first, ``MAXLEN ~ FEED_STREAM_MAXLEN``;
                                       one field ``d`` = one packed ``TICK`` record (40 bytes).
                                       The ordered, bounded tick log (XREAD-able, debuggable).
``md:tape:<SYM>``            string    the same ticks as back-to-back ``TICK`` records, trimmed to
                                       the last ``FEED_TAPE_LEN`` records once it grows past twice
                                       that. What the reader reads: ONE ``GETRANGE`` per symbol.
``md:quote:<SYM>``           hash      latest quote: ``bid ask ts_ms recv_ms`` (decimal text).
``md:book:<SYM>``            string    latest depth snapshot, ``BOOK_HEADER`` + float64 levels.
``md:bars:1s:<SYM>``         string    closed 1 s bars, back-to-back ``BAR`` records (bounded).
``md:bars:1m:<SYM>``         string    closed 1 m bars, back-to-back ``BAR`` records (bounded).
``md:bars:forming:<SYM>``    string    the forming 1 s bar then the forming 1 m bar (2 ``BAR``).
``md:health``                hash      process: heartbeat, reconnects, malformed, rate, lag...
``md:health:<SYM>``          hash      per symbol: last tick (venue/recv), ticks, lag, gaps...
``md:gaps``                  stream    recorded gaps: reason, symbols, from_ms, to_ms, missed.
``md:symbols``               set       symbols the feed is subscribed to now.
``md:instruments``           string    JSON cache of the broker's instrument list (60 s TTL).
===========================  ========  ==========================================================

Why two copies of the ticks: a Redis stream costs the server about 0.75 µs per entry to range
over (measured: 1.5 ms for ``XREVRANGE COUNT 2000``), so 100 symbols × 2,000 ticks cannot be read
in 20 ms from streams, whatever the client does. A string of fixed-size records is read with one
``GETRANGE`` (20 µs server time) and parsed with one ``np.frombuffer``. The stream stays as the
canonical ordered log, bounded by ``MAXLEN ~`` as usual.

Encodings are little-endian, fixed-size, packed (no padding), identical in the stream field and
the tape, so one ``struct.pack`` per tick serves both.
"""

from __future__ import annotations

import struct

import numpy as np

PREFIX = "md"

# --- key builders ----------------------------------------------------------------------------


def ticks_stream(symbol: str) -> str:
    return f"{PREFIX}:ticks:{symbol}"


def tape(symbol: str) -> str:
    return f"{PREFIX}:tape:{symbol}"


def quote(symbol: str) -> str:
    return f"{PREFIX}:quote:{symbol}"


def book(symbol: str) -> str:
    return f"{PREFIX}:book:{symbol}"


TIMEFRAMES = ("1s", "1m")
TIMEFRAME_MS = {"1s": 1_000, "1m": 60_000}


def bars(timeframe: str, symbol: str) -> str:
    if timeframe not in TIMEFRAME_MS:
        raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {TIMEFRAMES}")
    return f"{PREFIX}:bars:{timeframe}:{symbol}"


def forming_bars(symbol: str) -> str:
    return f"{PREFIX}:bars:forming:{symbol}"


HEALTH = f"{PREFIX}:health"


def health_symbol(symbol: str) -> str:
    return f"{PREFIX}:health:{symbol}"


GAPS = f"{PREFIX}:gaps"
FEED_LEASE = f"{PREFIX}:feed:lease"  # the one active feed (workers/lease.py); value = holder
SYMBOLS = f"{PREFIX}:symbols"
INSTRUMENTS_CACHE = f"{PREFIX}:instruments"
INSTRUMENTS_CACHE_TTL_S = 60

# Field name of the single field of each tick-stream entry.
TICK_FIELD = b"d"

# --- binary records --------------------------------------------------------------------------

# One tick, five 8-byte words: ``ts_ms << 2 | (side + 1)`` (venue time and aggressor side: +1 buy,
# -1 sell, 0 unknown), bid, ask, price (trade price for a print, else the mid), traded volume
# (0 for a quote update). The reader views a tape slice as an (n, 5) matrix and transposes it
# with ONE copy into contiguous per-field rows (faster than strided copies of a packed record).
TICK = struct.Struct("<qdddd")
TICK_WORDS = 5
assert TICK.size == 8 * TICK_WORDS


def pack_tick(ts_ms: int, bid: float, ask: float, price: float, volume: float, side: int) -> bytes:
    return TICK.pack((ts_ms << 2) | (side + 1), bid, ask, price, volume)


def unpack_tick(raw: bytes) -> tuple[int, float, float, float, float, int]:
    """-> (ts_ms, bid, ask, price, volume, side), e.g. for one ``md:ticks`` stream entry."""
    word, bid, ask, price, volume = TICK.unpack(raw)
    return word >> 2, bid, ask, price, volume, (word & 3) - 1


# One OHLCV bar: open time, OHLC, volume, buy/sell volume (known or tick-rule side), tick count.
BAR = struct.Struct("<qdddddddq")
BAR_DTYPE = np.dtype(
    [
        ("ts_ms", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("volume", "<f8"),
        ("buy_volume", "<f8"),
        ("sell_volume", "<f8"),
        ("ticks", "<i8"),
    ]
)
BAR_WORDS = 9
assert BAR.size == BAR_DTYPE.itemsize == 8 * BAR_WORDS
# A forming-bar slot with no bar yet (ts_ms == 0).
EMPTY_BAR = BAR.pack(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)

# Book: venue time, number of bid levels, number of ask levels; then float64
# bid_prices[nb], bid_sizes[nb], ask_prices[na], ask_sizes[na].
BOOK_HEADER = struct.Struct("<qHH")


def encode_book(ts_ms: int, bids, asks) -> bytes:
    nb, na = len(bids), len(asks)
    flat = [p for p, _ in bids] + [s for _, s in bids] + [p for p, _ in asks] + [s for _, s in asks]
    return BOOK_HEADER.pack(ts_ms, nb, na) + struct.pack(f"<{len(flat)}d", *flat)


def decode_book(raw: bytes):
    """-> (ts_ms, bid_prices, bid_sizes, ask_prices, ask_sizes) as float64 arrays."""
    ts_ms, nb, na = BOOK_HEADER.unpack_from(raw, 0)
    levels = np.frombuffer(raw, dtype="<f8", offset=BOOK_HEADER.size, count=2 * (nb + na)).copy()
    return ts_ms, levels[:nb], levels[nb : 2 * nb], levels[2 * nb : 2 * nb + na], levels[2 * nb + na :]


def decode_bars(raw: bytes) -> np.ndarray:
    usable = len(raw) - len(raw) % BAR.size
    return np.frombuffer(raw, dtype=BAR_DTYPE, offset=len(raw) - usable)


def columns(raw: bytes, words: int) -> np.ndarray:
    """Records of ``words`` 8-byte words → a C-contiguous (words, n) float64 matrix (one copy);
    row k is field k. Integer fields are read back with ``.view('<i8')`` on their row."""
    size = 8 * words
    usable = len(raw) - len(raw) % size
    flat = np.frombuffer(raw, dtype="<f8", offset=len(raw) - usable)
    return flat.reshape(-1, words).T.copy()


# --- server-side scripts ----------------------------------------------------------------------------

# Append records to a tape; once it is longer than ARGV[2] bytes keep only its last ARGV[3] bytes.
# Amortised O(1): the copy happens once every (max - keep) bytes appended. Atomic, so a reader's
# GETRANGE of the tail sees the same records before and after a trim.
APPEND_TRIM_LUA = """
local n = redis.call('APPEND', KEYS[1], ARGV[1])
if n > tonumber(ARGV[2]) then
  local keep = tonumber(ARGV[3])
  redis.call('SET', KEYS[1], redis.call('GETRANGE', KEYS[1], -keep, -1))
  return keep
end
return n
"""

# One call per symbol per batch does all of that symbol's writes (server-side, one reply):
# XADD each tick to the stream, append-and-trim the tape, set the latest quote, forming bars and
# book, append closed bars. An empty argument means "nothing to write for this part". Each tick
# record is its own argument (cheaper for Redis than cutting one blob with string.sub).
# KEYS: stream, tape, quote, forming, book, bars:1s, bars:1m
# ARGV: 1 stream maxlen, 2 tape max bytes, 3 tape keep bytes, 4 bid, 5 ask, 6 quote ts_ms,
#       7 quote recv_ms, 8 forming blob, 9 book blob, 10 1s bars blob, 11 max, 12 keep,
#       13 1m bars blob, 14 max, 15 keep, 16.. one TICK record each (oldest first)
INGEST_KEYS = 7
INGEST_FIXED_ARGS = 15
INGEST_LUA = """
local function append_trim(key, data, maxb, keep)
  local n = redis.call('APPEND', key, data)
  if n > tonumber(maxb) then
    redis.call('SET', key, redis.call('GETRANGE', key, -tonumber(keep), -1))
  end
end
local fixed = %d
local last = #ARGV
if last > fixed then
  local stream, maxlen = KEYS[1], ARGV[1]
  for i = fixed + 1, last do
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'd', ARGV[i])
  end
  append_trim(KEYS[2], table.concat(ARGV, '', fixed + 1, last), ARGV[2], ARGV[3])
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], 'bid', ARGV[4], 'ask', ARGV[5], 'ts_ms', ARGV[6], 'recv_ms', ARGV[7])
end
if ARGV[8] ~= '' then redis.call('SET', KEYS[4], ARGV[8]) end
if ARGV[9] ~= '' then redis.call('SET', KEYS[5], ARGV[9]) end
if ARGV[10] ~= '' then append_trim(KEYS[6], ARGV[10], ARGV[11], ARGV[12]) end
if ARGV[13] ~= '' then append_trim(KEYS[7], ARGV[13], ARGV[14], ARGV[15]) end
return last - fixed
""" % INGEST_FIXED_ARGS
