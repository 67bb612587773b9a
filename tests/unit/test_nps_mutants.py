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


def test_the_published_scale_runs_from_100_perfect_down_to_minus_100_abysmal() -> None:
    """Kills `(-100, "abysmal", …)` → `-101` in NPS_SCALE: the report lists the scale (`scale: [{from,
    label, label_ru}]`, DESIGN: "100 perfect … −100 abysmal"); its bands start at the seed's values, and
    every value of a band gets its label."""
    from retention.surveys.nps import NPS_SCALE, nps_label
    assert [(low, label) for low, label, _ in NPS_SCALE] == [
        (100, "perfect"), (85, "spectacular"), (70, "excellent"), (55, "very good"), (40, "good"),
        (25, "average"), (0, "mediocre"), (-25, "poor"), (-50, "terrible"), (-100, "abysmal")]
    assert nps_label(-100) == nps_label(-50.5) == "abysmal" and nps_label(-50) == "terrible"


def test_of_two_answers_at_the_same_moment_the_one_seen_last_wins() -> None:
    """Kills `answer.at >= kept.at` → `>` in `latest_answers`: on a tie (a corrected answer stored in the
    same second) the later one in storage order is the answer kept."""
    from retention.surveys.nps import latest_answers
    first = {"customer_id": "c1", "score": 3, "at": AT, "source": "link"}
    again = {**first, "score": 9}
    [kept] = latest_answers([first, again])
    assert kept.score == 9


def test_a_webhook_email_of_254_characters_is_accepted_and_255_refused() -> None:
    """Kills `_clean_name(value, "email", limit=254)` → 255 in `_email`: the longest address SMTP allows."""
    address = "a" * 64 + "@" + "b" * 185 + ".com"
    assert len(address) == 254
    assert WebhookPayload.model_validate({"event_id": "e1", "email": address, "score": 9}).email == address
    with pytest.raises(BadRequestError, match="email is too long"):
        WebhookPayload.model_validate({"event_id": "e1", "email": "a" + address, "score": 9})


@pytest.mark.parametrize("field", ["survey", "stage", "shop"])
def test_a_webhook_name_too_long_names_its_field(field: str) -> None:
    """Kills `_clean_name(value, info.field_name or "value")` → `and` in the webhook's `_names`: the 400 says
    which field is wrong."""
    with pytest.raises(BadRequestError, match=f"^{field} is too long"):
        WebhookPayload.model_validate({"event_id": "e1", "userId": "u1", "score": 9, field: "x" * 101})


@pytest.mark.parametrize("counts", [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (5, 3, -1)])
def test_nps_of_a_negative_group_count_is_refused(counts: tuple[int, int, int]) -> None:
    """Kills `if min(promoters, passives, detractors) < 0` → `< -1` in `nps_value`."""
    from retention.surveys.nps import nps_value
    with pytest.raises(BadRequestError, match="cannot be negative"):
        nps_value(*counts)


def test_a_trigger_event_names_its_stage() -> None:
    """Kills `EVENT_STAGES.get(event) if isinstance(event, str) else None` → `if not isinstance(…)` in
    `stage_for_event`."""
    from retention.surveys.nps import stage_for_event
    assert stage_for_event("Order Picked Up") == "pickup" and stage_for_event("Order Shipped") == "delivery"
    assert stage_for_event("Page Viewed") is None and stage_for_event(None) is None


def test_an_answer_without_a_stage_counts_for_its_surveys_stage() -> None:
    """Kills `answer.stage or stage_for_survey(answer.survey)` → `and` in `aggregate`: the delivery survey's
    answers without a stage of their own are the delivery stage's."""
    from retention.surveys.nps import aggregate
    answers = [{"customer_id": "c1", "score": 10, "at": AT, "source": "link", "survey": "nps-delivery"},
               {"customer_id": "c2", "score": 2, "at": AT, "source": "link", "survey": "nps", "stage": "order"}]
    report = aggregate(answers)
    assert sorted(report["by_stage"]) == ["delivery", "order"]
    assert report["by_stage"]["delivery"]["promoters"] == 1 and report["by_stage"]["order"]["detractors"] == 1
