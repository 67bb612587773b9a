"""NPS edges that `make mutate` found untested (bench/results/mutation.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from retention.core.errors import BadRequestError
from retention.surveys.nps import NpsResponse, WebhookPayload, latest_answers, nps_label

AT = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", [True, False, float("nan"), float("inf"), -100.1, 100.1])
def test_nps_label_refuses_booleans_and_values_off_the_scale(value: float) -> None:
    with pytest.raises(BadRequestError, match="between -100 and 100"):
        nps_label(value)


def test_nps_label_accepts_the_ends_of_the_scale() -> None:
    assert nps_label(100) and nps_label(-100) and nps_label(0.0)


def webhook(**over: object) -> dict[str, object]:
    return {"event_id": "e1", "userId": "u1", "score": 9, **over}


@pytest.mark.parametrize("event_id", [True, False, "", "   ", None, 1.5])
def test_webhook_event_id_must_be_text_or_a_number_not_a_boolean(event_id: object) -> None:
    with pytest.raises(BadRequestError, match="event_id"):
        WebhookPayload.model_validate(webhook(event_id=event_id))


def test_webhook_numeric_event_id_becomes_text() -> None:
    assert WebhookPayload.model_validate(webhook(event_id=42)).event_id == "42"


@pytest.mark.parametrize("email", ["annaexample.com", "@example.com", "anna@example", "an na@example.com",
                                   "anna@exa mple.com"])
def test_webhook_email_must_look_like_an_address(email: str) -> None:
    with pytest.raises(BadRequestError, match="email"):
        WebhookPayload.model_validate({"event_id": "e1", "email": email, "score": 9})


def test_names_are_capped_at_100_characters_with_the_field_named() -> None:
    base = {"customer_id": "c1", "score": 9, "at": AT, "source": "link"}
    assert NpsResponse.model_validate({**base, "shop": "s" * 100}).shop == "s" * 100
    with pytest.raises(BadRequestError, match="shop is too long"):
        NpsResponse.model_validate({**base, "shop": "s" * 101})
    with pytest.raises(BadRequestError, match="ref must be a string"):
        NpsResponse.model_validate({**base, "ref": 5})


def test_latest_answer_per_invitation_and_a_missing_ref_is_one_invitation() -> None:
    base = {"customer_id": "c1", "survey": "nps", "source": "link"}
    answers = [
        {**base, "score": 3, "at": AT, "ref": None},
        {**base, "score": 9, "at": AT + timedelta(hours=1), "ref": None},
        {**base, "score": 5, "at": AT, "ref": "L1"},
        {**base, "score": 6, "at": AT + timedelta(hours=2), "ref": "L2"},
    ]
    got = {(a.ref, a.score) for a in latest_answers(answers)}
    assert got == {(None, 9), ("L1", 5), ("L2", 6)}
