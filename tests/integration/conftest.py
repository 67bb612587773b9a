"""Fixtures shared by the feedback and preference tests: a customer `u1` with the scenario library applied
(`s`; a module may define its own `s`) and one email sent to them (`sent`)."""

from __future__ import annotations

from typing import Any

import pytest
from retention.messaging.requests import SendRequest

from tests.integration.test_sender import apply, customer, request, sender


@pytest.fixture
def s(stack: Any) -> Any:
    customer(stack, "u1")
    apply(stack)
    return stack


@pytest.fixture
def sent(s: Any) -> SendRequest:
    req = request()
    assert sender(s).send(req).status == "sent"
    return req
