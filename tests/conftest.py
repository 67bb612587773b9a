from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from retention.core import clock

# as the stack sets them for every function, before any test module imports retention.core.observability
# (its Metrics object reads the namespace once: a unit test collected first must not leave it unset)
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Retention")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")


class FakeTicks:
    """clock.monotonic() in tests: time passes only when a test says so (`advance`), so no assertion
    depends on how loaded the machine is (a render's 2 s cap, the config cache's 30 s)."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


@pytest.fixture(autouse=True)
def ticks() -> Iterator[FakeTicks]:
    fake = FakeTicks()
    clock.set_monotonic(fake)
    yield fake
    clock.set_monotonic(None)


@pytest.fixture
def now() -> Iterator[datetime]:
    value = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    clock.set_now(value)
    yield value
    clock.reset()


@pytest.fixture
def stack(now: datetime) -> Iterator[Any]:
    from tests.support import moto_stack
    with moto_stack() as s:
        yield s


@pytest.fixture
def library_stack(stack: Any) -> Any:
    stack.apply_library()
    return stack
