"""NPS: score validation, groups, the seed 000 scale, answer models and the report."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from retention.core import clock
from retention.core.errors import BadRequestError
from retention.surveys.nps import (
    NpsResponse,
    WebhookPayload,
    aggregate,
    latest_answers,
    nps_group,
    nps_label,
    nps_label_ru,
    nps_value,
    period_start,
    validate_score,
)


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    clock.set_now(datetime(2024, 6, 1, 12, 0, tzinfo=UTC))
    yield
    clock.reset()


# ------------------------------------------------------------------------------- scores and groups


@pytest.mark.parametrize(
    ("score", "group"),
    [(0, "detractor"), (6, "detractor"), (7, "passive"), (8, "passive"), (9, "promoter"), (10, "promoter")],
)
def test_groups_at_their_edges(score: int, group: str) -> None:
    assert nps_group(score) == group


@pytest.mark.parametrize(
    ("value", "expected"),
    [(9, 9), (0, 0), ("10", 10), (" 7 ", 7), (8.0, 8), (Decimal("6"), 6), ("3.0", 3)],
)
def test_validate_score_accepts_whole_numbers(value: object, expected: int) -> None:
    assert validate_score(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "whole number from 0 to 10"),
        ("", "score is required"),
        (None, "score is required"),
        (True, "whole number from 0 to 10"),
        (float("nan"), "whole number from 0 to 10"),
        ([9], "got list"),
        (7.5, "whole number, got 7.5"),
        ("7.5", "whole number, got '7.5'"),
        (-1, "between 0 and 10, got -1"),
        (11, "between 0 and 10, got 11"),
        ("100", "between 0 and 10, got 100"),
    ],
)
def test_validate_score_rejects_with_a_clear_message(value: object, message: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        validate_score(value)
    assert message in caught.value.message
    assert caught.value.status == 400


# ------------------------------------------------------------------------------------- NPS value


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((5, 3, 2), 30.0),  # (5 − 2) / 10 × 100 = 30
        ((1, 1, 1), 0.0),  # (1 − 1) / 3 × 100 = 0
        ((2, 0, 1), 33.3),  # (2 − 1) / 3 × 100 = 33.33… → 33.3
        ((1, 0, 2), -33.3),  # (1 − 2) / 3 × 100 = −33.33… → −33.3
        ((1, 0, 7), -75.0),  # (1 − 7) / 8 × 100 = −75
        ((4, 0, 0), 100.0),
        ((0, 0, 3), -100.0),
        ((1, 399, 0), 0.3),  # 1 / 400 × 100 = 0.25 → half away from zero → 0.3
        ((0, 399, 1), -0.3),  # −0.25 → −0.3 (symmetric)
        ((2, 4, 0), 33.3),  # 2 / 6 × 100 = 33.33…
    ],
)
def test_nps_value(counts: tuple[int, int, int], expected: float) -> None:
    assert nps_value(*counts) == expected


def test_nps_value_without_answers_is_none() -> None:
    assert nps_value(0, 0, 0) is None


# Every band edge of the seed 000 scale, plus the fractional values just inside and outside:
# a fractional value is floored to its integer band (−0.5 → −1 "poor", 24.9 → 24 "mediocre").
@pytest.mark.parametrize(
    ("value", "label"),
    [
        (100, "perfect"),
        (99.99, "spectacular"),
        (99.5, "spectacular"),
        (99, "spectacular"),
        (85, "spectacular"),
        (84.99, "excellent"),
        (84, "excellent"),
        (70, "excellent"),
        (69.9, "very good"),
        (69, "very good"),
        (55, "very good"),
        (54.9, "good"),
        (54, "good"),
        (40, "good"),
        (39.9, "average"),
        (39, "average"),
        (25, "average"),
        (24.9, "mediocre"),
        (24, "mediocre"),
        (0.5, "mediocre"),
        (0, "mediocre"),
        (-0.5, "poor"),
        (-1, "poor"),
        (-25, "poor"),
        (-25.1, "terrible"),
        (-26, "terrible"),
        (-50, "terrible"),
        (-50.5, "abysmal"),
        (-51, "abysmal"),
        (-100, "abysmal"),
    ],
)
def test_labels_at_every_band_edge(value: float, label: str) -> None:
    assert nps_label(value) == label


@pytest.mark.parametrize("value", [100.1, -100.5, float("nan"), float("inf")])
def test_label_outside_the_scale_is_an_error(value: float) -> None:
    with pytest.raises(BadRequestError):
        nps_label(value)


def test_russian_labels_come_from_the_seed() -> None:
    assert nps_label_ru(100) == "Идеальный, безупречный"
    assert nps_label_ru(-0.5) == "Плохой"
    assert nps_label_ru(-100) == "Очень ужасный"


# ------------------------------------------------------------------------------------ NpsResponse


def _answer(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "customer_id": "c1",
        "score": 9,
        "at": "2024-05-06T10:00:00Z",
        "source": "link",
    }
    base.update(overrides)
    return base


def test_response_defaults_stage_from_survey() -> None:
    assert NpsResponse.model_validate(_answer()).stage == "pickup"  # the default `nps` survey
    assert NpsResponse.model_validate(_answer(survey="nps-delivery")).stage == "delivery"
    assert NpsResponse.model_validate(_answer(survey="courier")).stage == "courier"
    explicit = NpsResponse.model_validate(_answer(survey="nps", stage="complaint_resolution"))
    assert explicit.stage == "complaint_resolution"


def test_response_normalises_time_and_score() -> None:
    answer = NpsResponse.model_validate(_answer(score="7", at=datetime(2024, 5, 6, 10, 0)))
    assert answer.score == 7
    assert answer.group == "passive"
    assert answer.at == datetime(2024, 5, 6, 10, 0, tzinfo=UTC)  # naive → UTC
    assert answer.survey == "nps"


def test_comment_limit() -> None:
    assert NpsResponse.model_validate(_answer(comment="x" * 2000)).comment == "x" * 2000
    assert NpsResponse.model_validate(_answer(comment="   ")).comment is None
    with pytest.raises(BadRequestError, match="comment too long"):
        NpsResponse.model_validate(_answer(comment="x" * 2001))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"score": 12}, "between 0 and 10"),
        ({"customer_id": ""}, "customer_id is required"),
        ({"source": "email"}, "source"),
        ({"at": "yesterday"}, "at:"),
    ],
)
def test_response_errors_are_bad_requests(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        NpsResponse.model_validate(_answer(**overrides))
    assert message in caught.value.message


def test_response_missing_field_is_named() -> None:
    with pytest.raises(BadRequestError, match="at is required"):
        NpsResponse.model_validate({"customer_id": "c1", "score": 9, "source": "link"})


# ----------------------------------------------------------------------------------- webhook body


def test_webhook_with_user_id() -> None:
    body = WebhookPayload.model_validate(
        {"event_id": "ev-1", "userId": "u1", "score": "9", "comment": " great ", "extra": {"ignored": 1}}
    )
    assert (body.event_id, body.userId, body.score, body.comment) == ("ev-1", "u1", 9, "great")
    answer = body.to_response("u1")
    assert answer.source == "webhook"
    assert answer.event_id == "ev-1"
    assert answer.survey == "nps"
    assert answer.stage == "pickup"
    assert answer.at == datetime(2024, 6, 1, 12, 0, tzinfo=UTC)  # no timestamp: received now


def test_webhook_with_email_and_timestamp() -> None:
    body = WebhookPayload.model_validate(
        {
            "event_id": "ev-2",
            "email": "Ann@Example.com",
            "score": 4,
            "survey": "nps-delivery",
            "shop": "msk-1",
            "timestamp": "2024-05-10T08:30:00+03:00",
        }
    )
    answer = body.to_response("c42")
    assert answer.customer_id == "c42"
    assert answer.at == datetime(2024, 5, 10, 5, 30, tzinfo=UTC)
    assert answer.stage == "delivery"
    assert answer.shop == "msk-1"
    assert answer.group == "detractor"


def test_webhook_event_id_limit() -> None:
    assert (
        WebhookPayload.model_validate({"event_id": "e" * 200, "userId": "u", "score": 5}).event_id
        == "e" * 200
    )
    with pytest.raises(BadRequestError, match="event_id is too long"):
        WebhookPayload.model_validate({"event_id": "e" * 201, "userId": "u", "score": 5})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"userId": "u", "score": 5}, "event_id is required"),
        ({"event_id": "  ", "userId": "u", "score": 5}, "event_id is required"),
        ({"event_id": "e", "score": 5}, "userId or email is required"),
        ({"event_id": "e", "userId": "", "email": None, "score": 5}, "userId or email is required"),
        ({"event_id": "e", "userId": "u"}, "score is required"),
        ({"event_id": "e", "userId": "u", "score": "ten"}, "whole number from 0 to 10"),
        ({"event_id": "e", "userId": "u", "score": 10.5}, "whole number"),
        ({"event_id": "e", "email": "not-an-address", "score": 5}, "email is not an email address"),
        ({"event_id": "e", "userId": "u", "score": 5, "comment": "y" * 2001}, "comment too long"),
        ({"event_id": "e", "userId": "u", "score": 5, "timestamp": "soon"}, "timestamp:"),
        (["not", "an", "object"], "must be a JSON object"),
    ],
)
def test_webhook_errors_are_clear(body: object, message: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        WebhookPayload.model_validate(body)
    assert message in caught.value.message


# ----------------------------------------------------------------------------------------- report


def test_period_start() -> None:
    at = datetime(2024, 5, 16, 23, 59, tzinfo=UTC)  # a Thursday
    assert period_start(at, "day").isoformat() == "2024-05-16"
    assert period_start(at, "week").isoformat() == "2024-05-13"  # its Monday
    assert period_start(at, "month").isoformat() == "2024-05-01"


# 2024-05-06 is a Monday. The input is deliberately out of time order.
ANSWERS: list[dict[str, object]] = [
    _answer(customer_id="c1", score=10, shop="A", at="2024-05-06T10:00:00Z"),
    _answer(customer_id="c2", score=9, shop="A", at="2024-05-07T10:00:00Z"),
    _answer(customer_id="c3", score=3, shop="B", at="2024-05-08T10:00:00Z"),
    _answer(customer_id="c4", score=7, shop="B", at="2024-05-09T10:00:00Z"),
    # c1 answers the same survey again a week later: 6 replaces 10
    _answer(customer_id="c1", score=6, shop="A", at="2024-05-14T10:00:00Z"),
    _answer(customer_id="c5", score=10, survey="nps-delivery", at="2024-05-15T10:00:00Z", source="webhook"),
    # another survey of c2: counted on its own
    _answer(customer_id="c2", score=10, survey="nps-delivery", shop="A", at="2024-05-16T10:00:00Z"),
    # an older answer of c3 arriving late: his 05-08 answer is later and stays
    _answer(customer_id="c3", score=10, shop="B", at="2024-05-05T23:59:00Z"),
]


def test_latest_answer_per_customer_and_survey() -> None:
    kept = {(a.customer_id, a.survey): a.score for a in latest_answers(ANSWERS)}
    assert kept == {
        ("c1", "nps"): 6,
        ("c2", "nps"): 9,
        ("c3", "nps"): 3,
        ("c4", "nps"): 7,
        ("c5", "nps-delivery"): 10,
        ("c2", "nps-delivery"): 10,
    }


def test_aggregate_by_week() -> None:
    report = aggregate(ANSWERS, period="week")
    # Kept answers: c1 6 (D), c2 9 (P), c3 3 (D), c4 7 (Pa), c5 10 (P, delivery), c2 10 (P, delivery)
    # → promoters 3, passives 1, detractors 2: (3 − 2) / 6 × 100 = 16.67 → 16.7 "mediocre"
    assert report["overall"] == {
        "nps": 16.7,
        "label": "mediocre",
        "responses": 6,
        "promoters": 3,
        "passives": 1,
        "detractors": 2,
    }
    # delivery: c5 P, c2 P → (2 − 0) / 2 = 100 "perfect"
    # pickup: c1 D, c2 P, c3 D, c4 Pa → (1 − 2) / 4 = −25 "poor"
    assert report["by_stage"] == {
        "delivery": {
            "nps": 100.0,
            "label": "perfect",
            "responses": 2,
            "promoters": 2,
            "passives": 0,
            "detractors": 0,
        },
        "pickup": {
            "nps": -25.0,
            "label": "poor",
            "responses": 4,
            "promoters": 1,
            "passives": 1,
            "detractors": 2,
        },
    }
    # shop A: c1 D, c2 P, c2/delivery P → (2 − 1) / 3 = 33.3 "average"
    # shop B: c3 D, c4 Pa → (0 − 1) / 2 = −50 "terrible"; c5 gave no shop: "unknown" (issue 14:
    # every answer counts by shop, so the shops add up to overall)
    assert report["by_shop"] == {
        "A": {
            "nps": 33.3,
            "label": "average",
            "responses": 3,
            "promoters": 2,
            "passives": 0,
            "detractors": 1,
        },
        "B": {
            "nps": -50.0,
            "label": "terrible",
            "responses": 2,
            "promoters": 0,
            "passives": 1,
            "detractors": 1,
        },
        "unknown": {
            "nps": 100.0,
            "label": "perfect",
            "responses": 1,
            "promoters": 1,
            "passives": 0,
            "detractors": 0,
        },
    }
    assert sum(s["responses"] for s in report["by_shop"].values()) == report["overall"]["responses"]
    # week of 05-06: c2 P, c3 D, c4 Pa → 0 "mediocre"; week of 05-13: c1 D, c5 P, c2 P → 33.3;
    # c1's replaced 10 of 05-06 and c3's stale answer of Sunday 05-05 appear nowhere
    assert report["trend"] == [
        {"period_start": "2024-05-06", "nps": 0.0, "label": "mediocre", "responses": 3},
        {"period_start": "2024-05-13", "nps": 33.3, "label": "average", "responses": 3},
    ]


def test_aggregate_by_month_and_day() -> None:
    assert aggregate(ANSWERS, period="month")["trend"] == [
        {"period_start": "2024-05-01", "nps": 16.7, "label": "mediocre", "responses": 6}
    ]
    daily = aggregate(ANSWERS, period="day")["trend"]
    assert [d["period_start"] for d in daily] == [
        "2024-05-07",
        "2024-05-08",
        "2024-05-09",
        "2024-05-14",
        "2024-05-15",
        "2024-05-16",
    ]
    assert [d["nps"] for d in daily] == [100.0, -100.0, 0.0, -100.0, 100.0, 100.0]


def test_aggregate_accepts_models_and_storage_items() -> None:
    items: list[dict[str, Any] | NpsResponse] = [
        NpsResponse.model_validate(_answer(customer_id="a", score=10)),
        {"customer_id": "b", "score": Decimal("0"), "at": "2024-05-06T11:00:00.000000Z", "source": "link"},
    ]
    # (1 − 1) / 2 = 0
    assert aggregate(items, period="day")["overall"]["nps"] == 0.0


def test_aggregate_without_answers() -> None:
    assert aggregate([], period="week") == {
        "overall": {
            "nps": None,
            "label": None,
            "responses": 0,
            "promoters": 0,
            "passives": 0,
            "detractors": 0,
        },
        "by_stage": {},
        "by_shop": {},
        "trend": [],
    }


def test_aggregate_rejects_an_unknown_period() -> None:
    with pytest.raises(BadRequestError, match="period"):
        aggregate(ANSWERS, period="year")  # type: ignore[arg-type]
