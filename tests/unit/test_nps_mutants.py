"""NPS input rules that surviving mutants of `make mutate` showed untested (bench/results/mutation.md): the
200-character cap of customer ids at its exact limit, and a numeric `userId` on the webhook. Each test
names the mutant it kills."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from retention.core.errors import BadRequestError
from retention.surveys.nps import NpsResponse, WebhookPayload

AT = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
MAX_ID = 200  # as documented, not imported: a changed constant must fail here


def test_a_customer_id_of_200_characters_is_accepted_and_201_refused() -> None:
    """Kills `MAX_ID_CHARS = 200` → 199 / 201 (the answer's customer id)."""
    base = {"score": 9, "at": AT, "source": "link"}
    assert NpsResponse.model_validate({**base, "customer_id": "c" * MAX_ID}).customer_id == "c" * MAX_ID
    with pytest.raises(BadRequestError, match=f"customer_id is too long: at most {MAX_ID} characters"):
        NpsResponse.model_validate({**base, "customer_id": "c" * (MAX_ID + 1)})


def test_a_webhook_user_id_of_200_characters_is_accepted_and_201_refused() -> None:
    """The same cap on the webhook's `userId` (Segment's spelling)."""
    assert WebhookPayload.model_validate({"event_id": "e1", "userId": "u" * MAX_ID, "score": 9}).userId == "u" * MAX_ID
    with pytest.raises(BadRequestError, match="userId is too long"):
        WebhookPayload.model_validate({"event_id": "e1", "userId": "u" * (MAX_ID + 1), "score": 9})


def test_a_numeric_webhook_user_id_becomes_text_and_a_boolean_is_refused() -> None:
    """Kills `if isinstance(value, int) and not isinstance(value, bool)` → `if not isinstance(value, int) …`
    in `_user_id`: shops that number their customers send `"userId": 1042`."""
    assert WebhookPayload.model_validate({"event_id": "e1", "userId": 1042, "score": 9}).userId == "1042"
    assert WebhookPayload.model_validate({"event_id": "e1", "userId": " u1 ", "score": 9}).userId == "u1"
    with pytest.raises(BadRequestError, match="userId must be a string"):
        WebhookPayload.model_validate({"event_id": "e1", "userId": True, "score": 9})
