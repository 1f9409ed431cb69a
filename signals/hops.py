"""Where the time goes from a tick to the broker's answer: the hop timestamps of one signal.

Why one JSON document on the ``Signal`` row (``Signal.hops``): the admin's "where did the time go"
and the dashboard read one row per signal, and every writer along the path already touches that row
or can append to it with one ``UPDATE ... SET hops = hops || …`` (no new table, no migration in the
order engine). Writers, in path order:

=================  =========================================================  ====================
hop                meaning                                                    written by
=================  =========================================================  ====================
``venue``          venue (broker) time of the tick that woke / caused it      analysis (wall ms)
``recv``           the feed received that tick                                feed → wake message
``store``          Redis acknowledged the batch holding it                    feed → wake message
``wake``           the wake-up message was sent (event path only)             feed → wake message
``woken``          the analysis worker received the wake-up                   ``signals.tasks``
``analysis``       the analysis pass started                                  ``signals.service``
``signal``         the decision was taken (before the INSERT)                 ``signals.service``
``dispatch``       ``orders.dispatch_signal`` published the chunk tasks        ``orders.dispatch``
``orders``         per order id: [task start, HTTP send, broker answer]       ``orders.submit``
=================  =========================================================  ====================

Clocks: every hop from ``recv`` on is ``time.monotonic()`` in milliseconds — CLOCK_MONOTONIC is
one clock for every process of a host, so hops written by the feed, the analysis worker and the
order workers subtract safely and an NTP step never makes a hop negative. The transports stamp a
tick's receive time on the wall clock; the feed converts it with the wall−monotonic offset read at
ingest (sub-millisecond error). ``venue`` is the broker's wall time, kept beside the monotonic
hops; ``anchor`` = [wall ms, monotonic ms] read together by the analysis lets a reader put the
monotonic hops on the venue's time line (tick → signal as the venue saw it).

A beat-path signal has no ``recv``/``store``/``wake`` (nothing woke it: the beat did); ``path``
says which path produced it (``event`` or ``beat``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

# the hops in path order; the order hops are per order, after dispatch
SIGNAL_HOPS = ("recv", "store", "wake", "woken", "analysis", "signal", "dispatch")
ORDER_HOPS = ("task", "send", "answer")
LABELS = {
    "venue": "venue tick", "recv": "feed receive", "store": "stored in Redis", "wake": "wake-up sent", "woken": "wake-up received",
    "analysis": "analysis start", "signal": "signal", "dispatch": "dispatch", "task": "order task start",
    "send": "HTTP send", "answer": "broker answer",
}


def mono_ms() -> float:
    """The hop clock: CLOCK_MONOTONIC in ms (one clock for every process of the host)."""
    return round(time.monotonic() * 1000.0, 3)


def anchor() -> list[float]:
    """[wall ms, monotonic ms] read back to back: puts monotonic hops on the wall/venue time line."""
    return [time.time() * 1000.0, time.monotonic() * 1000.0]


def wall_to_mono(wall_ms: float, at: list[float] | None = None) -> float:
    """A wall-clock time as the monotonic hop clock read it (``at``: an ``anchor()``)."""
    wall, mono = at or anchor()
    return round(wall_ms - wall + mono, 3)


def order_path(hops: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(hop, monotonic ms) of the signal's own hops that are present, in path order."""
    return [(name, float(hops[name])) for name in SIGNAL_HOPS if hops.get(name) is not None]


def venue_mono(hops: Mapping[str, Any]) -> float | None:
    """The venue tick time on the monotonic clock (None without ``venue`` or ``anchor``)."""
    venue, at = hops.get("venue"), hops.get("anchor")
    if venue is None or not at:
        return None
    return wall_to_mono(float(venue), at)


def breakdown(hops: Mapping[str, Any]) -> dict[str, Any]:
    """Step durations for one signal: [(from, to, ms)], the order hops summarised (first and last
    answer, slowest send), and totals from the venue tick. Pure; missing hops are left out."""
    steps: list[tuple[str, str, float]] = []
    points: list[tuple[str, float]] = []
    v = venue_mono(hops)
    if v is not None:
        points.append(("venue", v))
    points.extend(order_path(hops))
    for (a, ta), (b, tb) in zip(points, points[1:]):
        steps.append((a, b, round(tb - ta, 2)))
    orders = hops.get("orders") or {}
    answers = [float(o[2]) for o in orders.values() if isinstance(o, (list, tuple)) and len(o) == 3 and o[2]]
    tasks = [float(o[0]) for o in orders.values() if isinstance(o, (list, tuple)) and len(o) == 3 and o[0]]
    sends = [float(o[1]) for o in orders.values() if isinstance(o, (list, tuple)) and len(o) == 3 and o[1]]
    out: dict[str, Any] = {"steps": steps, "orders": len(orders), "path": hops.get("path", "")}
    start = v if v is not None else (points[0][1] if points else None)
    dispatch = hops.get("dispatch")
    if start is not None:
        if hops.get("signal") is not None:
            out["to_signal_ms"] = round(float(hops["signal"]) - start, 2)
        if answers:
            out["to_first_answer_ms"] = round(min(answers) - start, 2)
            out["to_last_answer_ms"] = round(max(answers) - start, 2)
    if dispatch is not None and tasks:
        out["dispatch_to_first_task_ms"] = round(min(tasks) - float(dispatch), 2)
        out["dispatch_to_last_task_ms"] = round(max(tasks) - float(dispatch), 2)
    if sends and answers:
        out["slowest_broker_ms"] = round(max(float(o[2]) - float(o[1]) for o in orders.values()
                                             if isinstance(o, (list, tuple)) and len(o) == 3 and o[1] and o[2]), 2)
    return out


def order_hops_monotonic(hops: Mapping[str, Any], order_id: int | str) -> bool:
    """True if the order's path is complete and never goes back in time: venue ≤ recv ≤ … ≤ signal
    ≤ dispatch ≤ task ≤ send ≤ answer (event path; a beat signal has no recv/store/wake)."""
    row = (hops.get("orders") or {}).get(str(order_id))
    if not row or len(row) != 3 or any(x is None for x in row):
        return False
    needed = ("analysis", "signal", "dispatch") + (("recv", "store", "wake", "woken") if hops.get("path") == "event" else ())
    if any(hops.get(n) is None for n in needed):
        return False
    seq = [t for _, t in order_path(hops)] + [float(x) for x in row]
    v = venue_mono(hops)
    if v is not None:
        seq.insert(0, v - 1.0)  # venue and local clocks agree within the sub-ms anchor error
    return all(a <= b for a, b in zip(seq, seq[1:]))


# ---------------------------------------------------------------------------- writers (SQL)
def merged(**values):
    """An UPDATE value adding ``values`` to ``Signal.hops`` in place (``hops || {...}``): writers
    on the path never read-modify-write the document, so concurrent writers lose nothing."""
    import json

    from django.db.models.expressions import RawSQL

    return RawSQL('COALESCE("hops", \'{}\'::jsonb) || %s::jsonb', (json.dumps(values),))


def merged_orders(rows: Mapping[int, list[float | None]]):
    """An UPDATE value adding per-order hops {order id: [task, send, answer]} to ``hops.orders``."""
    import json

    from django.db.models.expressions import RawSQL

    doc = json.dumps({str(k): v for k, v in rows.items()})
    return RawSQL('jsonb_set(COALESCE("hops", \'{}\'::jsonb), \'{orders}\', '
                  'COALESCE("hops"->\'orders\', \'{}\'::jsonb) || %s::jsonb)', (doc,))


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarise(docs: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The dashboard's tick-to-trade panel over many signals' hop documents: per path, how many,
    p50/p95 of venue → signal and venue → last broker answer; per step, the median (where the
    time goes). Pure."""
    out: dict[str, Any] = {"signals": 0, "paths": {}, "steps": []}
    steps: dict[str, list[float]] = {}
    for doc in docs:
        if not doc:
            continue
        b = breakdown(doc)
        out["signals"] += 1
        path = out["paths"].setdefault(b["path"] or "?", {"n": 0, "to_signal": [], "to_last": []})
        path["n"] += 1
        if "to_signal_ms" in b:
            path["to_signal"].append(b["to_signal_ms"])
        if "to_last_answer_ms" in b:
            path["to_last"].append(b["to_last_answer_ms"])
        for a, z, ms in b["steps"]:
            steps.setdefault(f"{LABELS.get(a, a)} → {LABELS.get(z, z)}", []).append(ms)
        if "dispatch_to_last_task_ms" in b:
            steps.setdefault("dispatch → last order task", []).append(b["dispatch_to_last_task_ms"])
        if "slowest_broker_ms" in b:
            steps.setdefault("HTTP send → broker answer (slowest)", []).append(b["slowest_broker_ms"])
    for p in out["paths"].values():
        for key in ("to_signal", "to_last"):
            values = p.pop(key)
            p[f"{key}_p50"] = round(_pct(values, 0.5), 1) if values else None
            p[f"{key}_p95"] = round(_pct(values, 0.95), 1) if values else None
    out["steps"] = [(name, round(_pct(v, 0.5), 1), len(v)) for name, v in steps.items()]
    return out
