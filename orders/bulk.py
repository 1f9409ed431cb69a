"""Set-based versions of the order engine's two primitives, for the batched fan-out.

* :func:`bulk_transition` — many ``Order.transition`` calls as ONE ``UPDATE … FROM unnest(…)``:
  every row is checked against the transition table first (an illegal move raises before anything
  is written) and updated only if its status is still the one we read (compare-and-set per row).
  The ids returned are the rows that moved; a row missing from them lost a race and must not be
  acted on, exactly like a :class:`~orders.lifecycle.StaleTransition`.
* :func:`chunked` — consecutive slices of a list (fan-out chunks, send waves).
* :func:`account_locks` — the per-account advisory locks of :mod:`orders.locks`, taken for a whole
  chunk of accounts in one statement (``pg_try_advisory_lock`` per id, never waiting): the accounts
  whose lock another task holds come back as ``busy`` for the caller to hand over.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence

from django.db import connection
from django.utils import timezone

from tradeops.logging import get_logger

from .lifecycle import OrderStatus, check_transition
from .locks import LOCK_NAMESPACE
from .models import Order

log = get_logger(__name__)

COMPLETING = frozenset({OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.FAILED, OrderStatus.CANCELLED,
                        OrderStatus.SKIPPED})


def _pg_type(field_name: str) -> str:
    """The column's type for the array cast (``numeric(20,8)``, ``varchar(64)``, …)."""
    return Order._meta.get_field(field_name).db_type(connection)


def bulk_transition(changes: Sequence[tuple[Order, dict]], target: str) -> set[int]:
    """Move every ``(order, fields)`` to ``target`` in one statement; returns the ids that moved.

    Each order's in-memory status and fields are updated only when its row moved.
    """
    if not changes:
        return set()
    for order, _ in changes:
        check_transition(order.status, target)
    now = timezone.now()
    per_row: list[dict] = []
    for order, fields in changes:
        row = dict(fields)
        row.setdefault("updated_at", now)
        if target == OrderStatus.SUBMITTED:
            row.setdefault("submitted_at", now)
        if target in COMPLETING:
            row.setdefault("completed_at", now)
        per_row.append(row)
    columns = sorted({name for row in per_row for name in row})
    for row in per_row:  # a column set for some rows keeps its current value on the others
        for name in columns:
            row.setdefault(name, _KEEP)
    table = Order._meta.db_table
    sets = ["status = %s"]
    params: list = [target]
    selects = ["unnest(%s::bigint[]) AS id", "unnest(%s::text[]) AS expected"]
    arrays: list = [[o.pk for o, _ in changes], [o.status for o, _ in changes]]
    for i, name in enumerate(columns):
        column = Order._meta.get_field(name).column
        values = [None if row[name] is _KEEP else row[name] for row in per_row]
        keep = [row[name] is _KEEP for row in per_row]
        selects.append(f"unnest(%s::{_pg_type(name)}[]) AS c{i}")
        selects.append(f"unnest(%s::boolean[]) AS k{i}")
        arrays.extend([values, keep])
        sets.append(f'"{column}" = CASE WHEN v.k{i} THEN o."{column}" ELSE v.c{i} END')
    sql = (f'UPDATE "{table}" AS o SET {", ".join(sets)} FROM (SELECT {", ".join(selects)}) AS v '
           f"WHERE o.id = v.id AND o.status = v.expected RETURNING o.id")
    with connection.cursor() as cur:
        cur.execute(sql, params + arrays)
        moved = {r[0] for r in cur.fetchall()}
    for (order, _), row in zip(changes, per_row, strict=True):
        if order.pk in moved:
            order.status = target
            for name, value in row.items():
                if value is not _KEEP:
                    setattr(order, name, value)
    return moved


class _Keep:
    def __repr__(self) -> str:
        return "<keep>"


_KEEP = _Keep()


@contextlib.contextmanager
def account_locks(account_ids: Iterable[int], release_with: list[tuple[str, dict]] | None = None):
    """Try every account's advisory lock at once; yield ``(locked, busy)`` id lists. The locks taken
    are released on exit (or with the session if the process dies).

    ``release_with``: data-modifying statements (``UPDATE …`` with ``%(name)s`` parameters) the
    block appends to run IN the unlock's statement, as CTEs: the chunk's closing writes cost no
    round trip of their own. If that statement fails, the session is dropped (PostgreSQL releases
    the locks with it) and the writes are lost with it: only writes the sweep redoes belong here."""
    ids = [int(a) for a in account_ids]
    locked: list[int] = []
    busy: list[int] = []
    if ids:
        with connection.cursor() as cur:
            cur.execute("SELECT k, pg_try_advisory_lock(%s, k) FROM unnest(%s::int[]) WITH ORDINALITY AS t(k, n) "
                        "ORDER BY n", [LOCK_NAMESPACE, ids])
            for account_id, got in cur.fetchall():
                (locked if got else busy).append(account_id)
    try:
        yield locked, busy
    finally:
        if locked:
            sql, params = with_statements(list(release_with or []),
                                          "SELECT pg_advisory_unlock(%(ns)s, k) FROM unnest(%(ids)s::int[]) AS k",
                                          {"ns": LOCK_NAMESPACE, "ids": locked})
            try:
                with connection.cursor() as cur:
                    cur.execute(sql, params)
            except Exception as exc:  # connection gone: the server released the locks with the session
                log.warning("account_locks_release_failed", accounts=len(locked), statements=len(release_with or []),
                            error=type(exc).__name__)
                connection.close()


_PARAM = re.compile(r"%\((\w+)\)s")


def with_statements(ctes: list[tuple[str, dict]], main: str, params: dict) -> tuple[str, dict]:
    """``WITH w0 AS (cte0), w1 AS (cte1) main``: one statement, each CTE's parameters renamed apart.
    (PostgreSQL runs every data-modifying CTE, referenced or not, once, in the statement's snapshot.)"""
    if not ctes:
        return main, params
    parts = []
    merged = dict(params)
    for i, (sql, cte_params) in enumerate(ctes):
        parts.append(f"w{i} AS ({_PARAM.sub(lambda m, i=i: f'%(w{i}_{m.group(1)})s', sql)})")
        merged.update({f"w{i}_{k}": v for k, v in cte_params.items()})
    return "WITH " + ",\n".join(parts) + "\n" + main, merged


def chunked(ids: Sequence, size: int):
    """Consecutive slices of at most ``size`` (at least 1) items."""
    size = max(1, int(size))
    for i in range(0, len(ids), size):
        yield ids[i:i + size]
