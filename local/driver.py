"""Moving virtual time: stop at every due item on the way so each one fires at its own time, skipping the
empty hours in between (the local runtime and the integration tests share this loop)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

EPSILON = timedelta(milliseconds=1)


def advance(target: datetime, *, now: Callable[[], datetime], set_time: Callable[[datetime], Any],
            next_due: Callable[[], datetime | None], config: Any, tick: Callable[[datetime, datetime], None],
            drain: Callable[[], Any], next_firing: Callable[[datetime], datetime | None] | None = None,
            max_steps: int = 10_000) -> datetime:
    """`next_firing(after)`: the next scheduled rule (a broadcast) firing after a moment: the clock stops
    there too, so a newsletter goes out at its own time, not at the end of a long jump."""
    from retention.core import clock
    stuck: datetime | None = None
    for _ in range(max_steps):
        current = now()
        nxt = next_due()
        if nxt is not None and nxt <= current and nxt == stuck:
            nxt = None  # an item the tick cannot take (e.g. its customer is gone): do not spin on it
        stuck = nxt
        firing = next_firing(current) if next_firing else None
        if firing is not None and firing <= target and (nxt is None or firing < nxt):
            nxt = firing
        if nxt is not None and nxt <= target:
            step_to = max(nxt + EPSILON, current)
            # nothing is due before `nxt`: the tick may skip the empty hours since its watermark
            mark = config.watermark()
            skip = clock.iso(nxt - timedelta(seconds=1))
            if mark is None or mark < skip:
                config.set_watermark(skip)
        else:
            step_to = max(target, current)
        set_time(step_to)
        tick(current, step_to)
        drain()
        if step_to >= target:
            later = next_due()
            if later is None or later > target or later == stuck:
                break
    return now()
