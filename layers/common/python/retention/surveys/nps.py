"""Net Promoter Score: answer validation, groups, the seed's scale labels and reports.

Pure code (no AWS). The survey handlers (link + confirm page, signed webhook) store answers as
`NpsResponse` items; `aggregate` turns a list of them into the report the admin API and the CLI show.

Conventions fixed here:
- groups (seed 000): promoter 9–10, passive 7–8, detractor 0–6 (the seed writes "1–6" for
  critics but the 0–10 question has a 0, and a 0 is the strongest "would not recommend");
- NPS = % promoters − % detractors over all answers, −100…100, rounded half away from zero to one
  decimal; `None` when there is no answer (an empty survey has no score, not a score of 0);
- a fractional NPS takes the label of the integer band it falls in after **flooring**: the seed's
  bands are integer ranges (… "0–24 mediocre", "−25…−1 poor" …), and flooring keeps every band
  half-open [lo, hi + 1) so the bands tile the line without gaps: −0.5 is "poor" (it is below 0),
  24.9 "mediocre", 99.5 "spectacular" (only an exact 100 is "perfect");
- one customer counts once per survey invitation: a later answer to the same (customer, survey,
  ref) replaces the earlier one (DESIGN §3: "a later answer replaces the earlier one"). `ref` is
  the invitation (the send ledger id of a survey email, so each 90-day wave of the `nps-survey`
  journey counts on its own); without a ref the survey id is the invitation, and a survey that
  runs in waves through the webhook gives each wave its own survey id (e.g. `nps-2024-05`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator

from retention.core import clock
from retention.core.errors import BadRequestError

NpsGroup = Literal["promoter", "passive", "detractor"]
Period = Literal["day", "week", "month"]

MIN_SCORE = 0
MAX_SCORE = 10
MAX_COMMENT_CHARS = 2000
MAX_EVENT_ID_CHARS = 200
MAX_ID_CHARS = 200
MAX_NAME_CHARS = 100

# (lowest integer NPS of the band, English label, the seed's Russian label), highest band first.
NPS_SCALE: tuple[tuple[int, str, str], ...] = (
    (100, "perfect", "Идеальный, безупречный"),
    (85, "spectacular", "Эффектный"),
    (70, "excellent", "Превосходный, отличный"),
    (55, "very good", "Очень хороший"),
    (40, "good", "Хороший"),
    (25, "average", "Обычный, нормальный"),
    (0, "mediocre", "Посредственный"),
    (-25, "poor", "Плохой"),
    (-50, "terrible", "Ужасный"),
    (-100, "abysmal", "Очень ужасный"),
)

# CJM stages an answer can be about (seed 002: "measure NPS at every stage"); PickPoint's journey
# (seed 000) is order → delivery → pickup, plus complaints. Any other stage name is accepted too.
CJM_STAGES: tuple[str, ...] = ("order", "delivery", "pickup", "complaint_resolution", "support")

# Which stage a survey asks about when the answer does not say. The default `nps` survey goes out
# one day after `Order Picked Up` (DESIGN §5), so it rates the pickup. Unknown surveys are their
# own stage (a survey called `delivery` rates the delivery).
SURVEY_STAGES: dict[str, str] = {
    "nps": "pickup",
    "nps-survey": "pickup",
    "nps-pickup": "pickup",
    "nps-delivery": "delivery",
    "nps-order": "order",
    "nps-complaint": "complaint_resolution",
    "complaint": "complaint_resolution",
}


# The stage an invitation asks about, from the event that started the journey which sent it (the
# survey goes out after a pickup, a delivery, a resolved complaint …).
EVENT_STAGES: dict[str, str] = {
    "Order Completed": "order",
    "Order Shipped": "delivery",
    "Order Delivered": "delivery",
    "Order Ready for Pickup": "pickup",
    "Order Picked Up": "pickup",
    "Order Unclaimed": "pickup",
    "Complaint Resolved": "complaint_resolution",
    "Complaint Opened": "support",
}


def stage_for_survey(survey: str) -> str:
    return SURVEY_STAGES.get(survey, survey)


def stage_for_event(event: object) -> str | None:
    """The CJM stage of a journey's trigger event, None when the event names no stage."""
    return EVENT_STAGES.get(event) if isinstance(event, str) else None


# ---------------------------------------------------------------------------------------- scores


def validate_score(value: object) -> int:
    """An answer's score as an int 0–10. Accepts ints, integral floats/Decimals (JSON `9.0`,
    DynamoDB numbers) and numeric strings (`"9"`, form posts); anything else is a BadRequestError
    whose message a survey-tool developer can act on."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BadRequestError("score is required: a whole number from 0 to 10", code="invalid_score")
    not_a_number = BadRequestError(
        f"score must be a whole number from 0 to 10, got {value!r}", code="invalid_score"
    )
    if isinstance(value, bool):  # True is an int to Python, not a score to anyone
        raise not_a_number
    number: Decimal
    if isinstance(value, int | float | Decimal):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise not_a_number from None
    else:
        raise BadRequestError(
            f"score must be a whole number from 0 to 10, got {type(value).__name__}", code="invalid_score"
        )
    if not number.is_finite():
        raise not_a_number
    if number != number.to_integral_value():
        raise BadRequestError(f"score must be a whole number, got {value!r}", code="invalid_score")
    score = int(number)
    if not MIN_SCORE <= score <= MAX_SCORE:
        raise BadRequestError(f"score must be between 0 and 10, got {score}", code="invalid_score")
    return score


def nps_group(score: int) -> NpsGroup:
    """Seed 000's three groups: promoters 9–10, passives 7–8, detractors 0–6."""
    score = validate_score(score)
    if score >= 9:
        return "promoter"
    if score >= 7:
        return "passive"
    return "detractor"


def nps_value(promoters: int, passives: int, detractors: int) -> float | None:
    """% promoters − % detractors, one decimal (half away from zero); None without answers."""
    if min(promoters, passives, detractors) < 0:
        raise BadRequestError("group counts cannot be negative")
    total = promoters + passives + detractors
    if total == 0:
        return None
    exact = Decimal(100 * (promoters - detractors)) / Decimal(total)
    return float(exact.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def nps_label(value: float) -> str:
    """The seed's label for an NPS value (see the module docstring for fractional values)."""
    if isinstance(value, bool) or not math.isfinite(value) or not -100 <= value <= 100:
        raise BadRequestError(f"an NPS value lies between -100 and 100, got {value!r}")
    band = math.floor(value)
    for low, label, _ in NPS_SCALE:
        if band >= low:
            return label
    raise AssertionError("unreachable: the scale starts at -100")  # pragma: no cover


def nps_label_ru(value: float) -> str:
    """The seed's Russian label (the CLI and console show both)."""
    english = nps_label(value)
    return next(ru for _, en, ru in NPS_SCALE if en == english)


# ------------------------------------------------------------------------------------------ models


def _field_name(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _clear_error(error: ValidationError, what: str) -> BadRequestError:
    """One readable message out of pydantic's error list (first problem first)."""
    messages = []
    for item in error.errors(include_url=False):
        field = _field_name(tuple(item.get("loc", ())))
        if item.get("type") == "missing":
            messages.append(f"{field} is required")
        elif field == "body":
            messages.append(f"{what} must be a JSON object")
        else:
            messages.append(f"{field}: {item.get('msg', 'invalid value')}")
    return BadRequestError("; ".join(messages) or f"invalid {what}")


class _Answer(BaseModel):
    """What the survey handlers parse: unknown fields ignored, pydantic's error list turned into one
    BadRequestError that names the field (`what` says what the body is)."""

    model_config = ConfigDict(extra="ignore", defer_build=True)  # built at the first answer, not at import
    what: ClassVar[str] = "the body"

    @model_validator(mode="wrap")
    @classmethod
    def _readable_errors(cls, data: Any, handler: Any) -> Any:
        try:
            return handler(data)
        except ValidationError as error:
            raise _clear_error(error, cls.what) from None

    # both answers carry a score and maybe a comment (check_fields: the fields are the subclasses')
    @field_validator("score", mode="before", check_fields=False)
    @classmethod
    def _score(cls, value: object) -> int:
        return validate_score(value)

    @field_validator("comment", mode="before", check_fields=False)
    @classmethod
    def _comment(cls, value: object) -> str | None:
        return _clean_comment(value)

    @field_validator("at", "timestamp", check_fields=False)
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _aware(value)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _clean_comment(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequestError("comment must be text")
    text = value.strip()
    if len(text) > MAX_COMMENT_CHARS:
        raise BadRequestError(f"comment too long: at most {MAX_COMMENT_CHARS} characters, got {len(text)}")
    return text or None


def _clean_name(value: object, field: str, *, limit: int = MAX_NAME_CHARS) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequestError(f"{field} must be a string")
    text = value.strip()
    if len(text) > limit:
        raise BadRequestError(f"{field} is too long: at most {limit} characters")
    return text or None


class NpsResponse(_Answer):
    """One recorded answer (from a survey link or the external webhook)."""

    what = "an NPS answer"

    customer_id: str
    score: int
    comment: str | None = None
    survey: str = "nps"
    stage: str | None = None  # filled from `survey` when absent (SURVEY_STAGES)
    shop: str | None = None
    at: datetime
    source: Literal["link", "webhook"]
    event_id: str | None = None
    ref: str | None = None  # the invitation answered (see the module docstring)

    @field_validator("customer_id", mode="before")
    @classmethod
    def _customer(cls, value: object) -> str:
        text = _clean_name(value, "customer_id", limit=MAX_ID_CHARS)
        if not text:
            raise BadRequestError("customer_id is required")
        return text

    @field_validator("survey", mode="before")
    @classmethod
    def _survey(cls, value: object) -> str:
        return _clean_name(value, "survey") or "nps"

    @field_validator("stage", "shop", "ref", mode="before")
    @classmethod
    def _names(cls, value: object, info: ValidationInfo) -> str | None:
        return _clean_name(value, info.field_name or "value")

    @model_validator(mode="after")
    def _default_stage(self) -> NpsResponse:
        if self.stage is None:
            self.stage = stage_for_survey(self.survey)
        return self

    @property
    def group(self) -> NpsGroup:
        return nps_group(self.score)


class WebhookPayload(_Answer):
    """Body of `POST /v1/webhooks/nps` from an external survey tool (after the signature check).

    Unknown fields are ignored: survey tools send more than we need."""

    what = "the webhook body"

    event_id: str
    userId: str | None = None  # the wire name (Segment's spelling)
    email: str | None = None
    score: int
    comment: str | None = None
    survey: str | None = None
    stage: str | None = None
    shop: str | None = None
    timestamp: datetime | None = None

    @field_validator("event_id", mode="before")
    @classmethod
    def _event_id(cls, value: object) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise BadRequestError("event_id is required: a unique id of this answer, used to drop replays")
        text = value.strip()
        if len(text) > MAX_EVENT_ID_CHARS:
            raise BadRequestError(f"event_id is too long: at most {MAX_EVENT_ID_CHARS} characters")
        return text

    @field_validator("userId", mode="before")
    @classmethod
    def _user_id(cls, value: object) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return _clean_name(value, "userId", limit=MAX_ID_CHARS)

    @field_validator("email", mode="before")
    @classmethod
    def _email(cls, value: object) -> str | None:
        text = _clean_name(value, "email", limit=254)
        if text is None:
            return None
        local, at, domain = text.rpartition("@")
        if not at or not local or "." not in domain or any(c.isspace() for c in text):
            raise BadRequestError(f"email is not an email address: {text!r}")
        return text

    @field_validator("survey", "stage", "shop", mode="before")
    @classmethod
    def _names(cls, value: object, info: ValidationInfo) -> str | None:
        return _clean_name(value, info.field_name or "value")

    @model_validator(mode="after")
    def _who(self) -> WebhookPayload:
        if not self.userId and not self.email:
            raise BadRequestError("userId or email is required: who answered the survey")
        return self

    def to_response(self, customer_id: str, *, received_at: datetime | None = None) -> NpsResponse:
        """The answer to store, once the caller resolved `userId`/`email` to a customer id.
        Without a `timestamp` the answer is dated when it was received."""
        at = self.timestamp or received_at or clock.now()
        return NpsResponse(
            customer_id=customer_id,
            score=self.score,
            comment=self.comment,
            survey=self.survey or "nps",
            stage=self.stage,
            shop=self.shop,
            at=at,
            source="webhook",
            event_id=self.event_id,
        )


# ----------------------------------------------------------------------------------------- reports


def period_start(at: datetime, period: Period) -> date:
    """The first day (UTC) of the day / ISO week (Monday) / month holding `at`."""
    day = _aware(at).date()
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise BadRequestError(f"period must be day, week or month, got {period!r}")


class _Counts:
    __slots__ = ("detractors", "passives", "promoters")

    def __init__(self) -> None:
        self.promoters = 0
        self.passives = 0
        self.detractors = 0

    def add(self, group: NpsGroup) -> None:
        if group == "promoter":
            self.promoters += 1
        elif group == "passive":
            self.passives += 1
        else:
            self.detractors += 1

    @property
    def responses(self) -> int:
        return self.promoters + self.passives + self.detractors

    def summary(self) -> dict[str, Any]:
        value = nps_value(self.promoters, self.passives, self.detractors)
        return {
            "nps": value,
            "label": None if value is None else nps_label(value),
            "responses": self.responses,
            "promoters": self.promoters,
            "passives": self.passives,
            "detractors": self.detractors,
        }


def latest_answers(responses: Iterable[dict[str, Any] | NpsResponse]) -> list[NpsResponse]:
    """One answer per (customer, survey, ref): the latest by `at`; on a tie the one seen last wins."""
    latest: dict[tuple[str, str, str], NpsResponse] = {}
    for raw in responses:
        answer = raw if isinstance(raw, NpsResponse) else NpsResponse.model_validate(raw)
        key = (answer.customer_id, answer.survey, answer.ref or "")
        kept = latest.get(key)
        if kept is None or answer.at >= kept.at:
            latest[key] = answer
    return sorted(latest.values(), key=lambda a: a.at)


UNKNOWN_SHOP = "unknown"  # by_shop's key for answers that name no shop


def aggregate(
    responses: Iterable[dict[str, Any] | NpsResponse], *, period: Period = "week"
) -> dict[str, Any]:
    """The NPS report: overall, per CJM stage, per shop, and a trend per day/week/month.

    `overall`, every `by_stage[stage]` and `by_shop[shop]` hold {nps, label, responses, promoters,
    passives, detractors}; `trend` is [{period_start, nps, label, responses}] in time order, one
    entry per period that has answers (a period without answers has no NPS to plot). Only the
    latest answer of each (customer, survey, ref) counts, in the period it was given. Every answer counts
    in `by_shop` too: one without a shop under UNKNOWN_SHOP ("unknown"), so the shops add up to overall."""
    if period not in ("day", "week", "month"):
        raise BadRequestError(f"period must be day, week or month, got {period!r}")
    overall = _Counts()
    stages: dict[str, _Counts] = defaultdict(_Counts)
    shops: dict[str, _Counts] = defaultdict(_Counts)
    periods: dict[date, _Counts] = defaultdict(_Counts)
    for answer in latest_answers(responses):
        group = answer.group
        overall.add(group)
        stages[answer.stage or stage_for_survey(answer.survey)].add(group)
        shops[answer.shop or UNKNOWN_SHOP].add(group)
        periods[period_start(answer.at, period)].add(group)
    trend = []
    for start in sorted(periods):
        summary = periods[start].summary()
        trend.append(
            {
                "period_start": start.isoformat(),
                "nps": summary["nps"],
                "label": summary["label"],
                "responses": summary["responses"],
            }
        )
    return {
        "overall": overall.summary(),
        "by_stage": {name: stages[name].summary() for name in sorted(stages)},
        "by_shop": {name: shops[name].summary() for name in sorted(shops)},
        "trend": trend,
    }
