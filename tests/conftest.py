from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from retention.core import clock


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
