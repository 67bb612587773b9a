"""The rule (journey) language: YAML documents validated by pydantic models (discriminated unions).

A rule is a trigger, an audience re-checked before every send, an exit condition, re-entry limits,
a holdout and a flat list of steps:

```yaml
id: abandoned-cart
category: marketing                      # transactional: exempt from caps and holdouts
trigger: {event: [Checkout Started, Product Added], where: {property: value, gt: 0}}
         # or {segment_entered: loyal} / {segment_exited: loyal}
         # or {date_attribute: birthday, offset_days: -3, at: "10:00"}   (yearly, customer's timezone)
         # or {schedule: "cron(0 10 ? * THU *)", timezone: Europe/Moscow, rate_per_minute: 1000}
         # or {product_event: Product Back in Stock, interest: [viewed, carted, subscribed], window: 30d}
audience: {all: [{consent: email}, {not_in_segment: fraud}]}
exit_when: {event: Order Completed}      # or {events: [...]} / {condition: <condition on the profile>}
re_entry: {cooldown: 7d}                 # or {allowed: false}; default: allowed once the last journey ended
holdout_percent: 10
attribution_window: 5d
goal: {event: Order Completed}
steps:
  - wait: 4h                             # or {duration: 1d} / {until: {weekday: fri, hour: 10}} / both
  - send: {channel: email, template: cart-reminder}              # channel: email | sms | preferred
  - branch: {if: {clicked_previous: true}, then: end}            # `else` defaults to the next step
  - id: offer
    send: {channel: email, variants: [{template: a, weight: 50}, {template: b, weight: 50}]}
  - set_segment: {group: lifecycle, segment: lost, reason: "reactivation finished", until: 30d}
  - clear_segment: {group: lifecycle}
  - goto: end
```

Control flow (the choice documented here): steps are **one flat list** and the journey state is the
index of the next step. Any step may carry a label (`id:`); `branch` and `goto` jump to a label, a
0-based index or `end`. Jumps may go either way, but the step graph must be acyclic — a loop would
message a customer forever — so a cycle is a validation error. Running off the end completes the
journey. A `goto` is an unconditional branch (`step_kind` says `branch`, its condition always holds).

Facts: `audience` and `exit_when.condition` are checked on the profile; a branch condition sees the
profile plus `event` = the journey's trigger event {name, properties} (so `{event: Order Ready for
Pickup}` or `{property: pickup_code, exists: true}` can tell two triggers of one rule apart);
`trigger.where` / `exit_when.where` / `goal.where` see only the event being processed.

Every problem is reported as `file:line: path: message`, all of them at once.
"""

from __future__ import annotations

import calendar
import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PrivateAttr,
    Tag,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from retention.core import clock, yamlio
from retention.core.errors import RetentionError, ValidationError
from retention.language import conditions
from retention.language.durations import format_duration, parse_duration
from retention.language.graph import find_cycle

END = "end"
CHANNELS = ("email", "sms", "preferred")
Interest = Literal["viewed", "carted", "subscribed"]
INTERESTS: tuple[Interest, ...] = ("viewed", "carted", "subscribed")
SEGMENT_ENTERED_EVENT = "Segment Entered"
SEGMENT_EXITED_EVENT = "Segment Exited"
DEFAULT_GOAL_EVENT = "Order Completed"
DEFAULT_VARIANT = "default"  # the variant name of a send without variants (what analytics expects)
SCENARIOS_ENV = yamlio.SCENARIOS_ENV
scenarios_dir = yamlio.scenarios_dir
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
_LABEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")

# ---------------------------------------------------------------------------------------------
# durations and times of day

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]

_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})$")


def parse_time_of_day(value: Any) -> time:
    """`"10:00"` → time(10, 0); also a time, or a bare hour 0–23."""
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 23:
        return time(value, 0)
    match = _TIME_RE.match(value.strip()) if isinstance(value, str) else None
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"invalid time of day {value!r}: use HH:MM, e.g. 10:00")
    return time(int(match.group(1)), int(match.group(2)))


def _check_time_of_day(value: Any) -> str:
    parsed = parse_time_of_day(value)
    return f"{parsed.hour:02d}:{parsed.minute:02d}"


TimeOfDay = Annotated[str, BeforeValidator(_check_time_of_day)]

WEEKDAYS: dict[str, int] = {
    "mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6,
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6,
}  # fmt: skip
_WEEKDAY_SHORT = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _weekday_list(value: Any) -> Any:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError("weekday is a day name (mon … sun) or a list of them")
    out: list[str] = []
    for item in items:
        key = str(item).strip().lower()
        if key not in WEEKDAYS:
            raise ValueError(f"unknown weekday {item!r}: use mon, tue, wed, thu, fri, sat, sun")
        short = _WEEKDAY_SHORT[WEEKDAYS[key]]
        if short not in out:
            out.append(short)
    return out


def resolve_tz(tz: str | tzinfo | None) -> tzinfo:
    """A customer's timezone; an unknown or empty name falls back to UTC rather than failing a send."""
    if isinstance(tz, tzinfo):
        return tz
    if not tz:
        return UTC
    try:
        return ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _check_tz_name(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {value!r}: use an IANA name such as Europe/Moscow") from exc
    return value


# ---------------------------------------------------------------------------------------------
# shared pieces

# Conditions are parsed by retention.language.conditions; its errors carry their exact sub-path.
ConditionField = conditions.Condition


def _to_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _events_alias(data: Any) -> Any:
    """`events: [...]` is accepted as a spelling of `event: [...]`."""
    if isinstance(data, dict) and "events" in data:
        data = dict(data)
        events = data.pop("events")
        if "event" in data:
            raise ValueError("give either event or events, not both")
        data["event"] = events
    return data


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _check_id(value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError(f"invalid id {value!r}: lower-case letters, digits, '-' and '_' (abandoned-cart)")
    return value


Identifier = Annotated[str, AfterValidator(_check_id)]
EventNames = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_to_list)]

# ---------------------------------------------------------------------------------------------
# triggers


class EventTrigger(Model):
    """Starts on a tracked event (one name or several), optionally filtered on its properties."""

    kind: ClassVar[str] = "event"
    event: EventNames = Field(min_length=1)
    where: ConditionField | None = None
    # what a running journey keeps of its trigger for the templates (retention.journeys.cart): the first
    # event (default), the latest matching one, or the cart's current contents folded from cart events
    update: Literal["first", "latest", "cart"] = "first"

    @model_validator(mode="before")
    @classmethod
    def _events_spelling(cls, data: Any) -> Any:
        return _events_alias(data)


class SegmentEnteredTrigger(Model):
    """Starts when the customer enters one of the segments (`id` or `group/id`)."""

    kind: ClassVar[str] = "segment_entered"
    segment_entered: EventNames = Field(min_length=1)


class SegmentExitedTrigger(Model):
    kind: ClassVar[str] = "segment_exited"
    segment_exited: EventNames = Field(min_length=1)


class DateAttributeTrigger(Model):
    """Yearly, on a date trait (`birthday`: YYYY-MM-DD or MM-DD), shifted by offset_days, at a local time."""

    kind: ClassVar[str] = "date_attribute"
    date_attribute: str = Field(min_length=1)
    offset_days: int = Field(default=0, ge=-180, le=180)
    at: TimeOfDay = "10:00"

    def next_at(self, value: Any, tz: str | tzinfo | None, now: datetime) -> datetime | None:
        return next_birthday_at(value, self.offset_days, self.at, tz, now)


_Day = date  # the field `date` below shadows the type inside the class body
_CALENDAR_DATE_RE = re.compile(r"^(?:(\d{4})-)?(\d{2})-(\d{2})$")


class CalendarDate(Model):
    """One day of a calendar trigger: `MM-DD` every year, or `YYYY-MM-DD` once; `name` reaches the
    templates as `event.properties.occasion`."""

    date: str
    name: str = ""

    @field_validator("date")
    @classmethod
    def _check_date(cls, value: str) -> str:
        match = _CALENDAR_DATE_RE.match(value.strip())
        if not match:
            raise ValueError(f"a calendar date is MM-DD or YYYY-MM-DD, got {value!r}")
        year, month, day = match.groups()
        try:
            date(int(year or 2024), int(month), int(day))  # 2024: a leap year, so 02-29 is allowed
        except ValueError:
            raise ValueError(f"no such day: {value!r}") from None
        return value.strip()

    def on(self, year: int) -> _Day | None:
        fixed, month, day = _CALENDAR_DATE_RE.match(self.date).groups()  # type: ignore[union-attr]
        if fixed and int(fixed) != year:
            return None
        try:
            return date(year, int(month), int(day))
        except ValueError:
            return None  # 02-29 outside a leap year


class ScheduleTrigger(Model):
    """A broadcast: an EventBridge-style cron read in `timezone`, or a calendar (`dates`, at `at` local
    time: holidays the shop fills in; an empty calendar never fires), to the audience (optionally to the
    members of one segment), at most `rate_per_minute` entries a minute."""

    kind: ClassVar[str] = "schedule"
    schedule: str | None = None
    dates: list[CalendarDate] | None = None
    at: TimeOfDay = "10:00"
    timezone: Annotated[str, AfterValidator(_check_tz_name)] = "UTC"
    segment: str | None = None
    rate_per_minute: int = Field(default=1000, ge=1, le=1_000_000)

    @field_validator("schedule")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cron(value)
        return value

    @model_validator(mode="after")
    def _cron_or_calendar(self) -> ScheduleTrigger:
        if (self.schedule is None) == (self.dates is None):
            raise ValueError("a schedule trigger has either schedule (a cron) or dates (a calendar)")
        return self

    def _calendar_at(self, after: datetime) -> tuple[datetime, CalendarDate] | None:
        zone = resolve_tz(self.timezone)
        local_year = after.astimezone(zone).year
        best: tuple[datetime, CalendarDate] | None = None
        clock_time = parse_time_of_day(self.at)
        for entry in self.dates or ():
            for year in (local_year, local_year + 1):
                day = entry.on(year)
                if day is None:
                    continue
                moment = datetime.combine(day, clock_time, tzinfo=zone).astimezone(UTC)
                if moment > after and (best is None or moment < best[0]):
                    best = (moment, entry)
                    break
        return best

    def next_at(self, after: datetime) -> datetime | None:
        if self.dates is not None:
            found = self._calendar_at(after)
            return found[0] if found else None
        return next_schedule_at(str(self.schedule), after, self.timezone)

    def occasion(self, fired: datetime) -> dict[str, Any]:
        """What a firing celebrates (`{occasion, date}`), for the templates; {} for a cron."""
        if self.dates is None:
            return {}
        found = self._calendar_at(fired - timedelta(seconds=1))
        if found is None or found[0] != fired:
            return {}
        return {"occasion": found[1].name, "date": found[1].date}


class ProductEventTrigger(Model):
    """A product-level event, fanned out to the customers who showed `interest` within `window`."""

    kind: ClassVar[str] = "product_event"
    product_event: str = Field(min_length=1)
    interest: list[Interest] = Field(default_factory=lambda: list(INTERESTS), min_length=1)
    window: Duration = timedelta(days=30)
    where: ConditionField | None = None


_TRIGGER_KEYS: dict[str, str] = {
    "event": "<event>",
    "events": "<event>",
    "segment_entered": "<segment_entered>",
    "segment_exited": "<segment_exited>",
    "date_attribute": "<date_attribute>",
    "schedule": "<schedule>",
    "dates": "<schedule>",
    "product_event": "<product_event>",
}
_TRIGGER_OPTIONS = "event, segment_entered, segment_exited, date_attribute, schedule, product_event"


def _trigger_tag(value: Any) -> str | None:
    if isinstance(value, Mapping):
        found = {_TRIGGER_KEYS[k] for k in value if k in _TRIGGER_KEYS}
        return found.pop() if len(found) == 1 else None
    kind = getattr(value, "kind", None)
    return f"<{kind}>" if kind else None


def _precheck_trigger(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value
    if not isinstance(value, Mapping):
        raise ValueError("a trigger is a mapping such as {event: Checkout Started}")
    kinds = sorted({_TRIGGER_KEYS[k].strip("<>") for k in value if k in _TRIGGER_KEYS})
    if not kinds:
        raise ValueError(f"a trigger needs one of: {_TRIGGER_OPTIONS}")
    if len(kinds) > 1:
        raise ValueError(f"a trigger has exactly one of {_TRIGGER_OPTIONS}; got {', '.join(kinds)}")
    return value


Trigger = Annotated[
    Annotated[EventTrigger, Tag("<event>")]
    | Annotated[SegmentEnteredTrigger, Tag("<segment_entered>")]
    | Annotated[SegmentExitedTrigger, Tag("<segment_exited>")]
    | Annotated[DateAttributeTrigger, Tag("<date_attribute>")]
    | Annotated[ScheduleTrigger, Tag("<schedule>")]
    | Annotated[ProductEventTrigger, Tag("<product_event>")],
    Discriminator(_trigger_tag),
    BeforeValidator(_precheck_trigger),
]
AnyTrigger = (
    EventTrigger | SegmentEnteredTrigger | SegmentExitedTrigger | DateAttributeTrigger | ScheduleTrigger
    | ProductEventTrigger
)

# ---------------------------------------------------------------------------------------------
# steps


class WaitUntil(Model):
    """The next time the customer's clock shows hour:minute (on one of `weekday`, if given)."""

    weekday: Annotated[list[str] | None, BeforeValidator(_weekday_list)] = None
    hour: int = Field(ge=0, le=23)
    minute: int = Field(default=0, ge=0, le=59)


class Daytime(Model):
    """A window of the customer's local day (`from` inclusive, `to` exclusive), e.g. 09:00–21:00."""

    from_: TimeOfDay = Field(alias="from")
    to: TimeOfDay

    @model_validator(mode="after")
    def _ordered(self) -> Daytime:
        if parse_time_of_day(self.from_) >= parse_time_of_day(self.to):
            raise ValueError("daytime: from must be before to (a window within one day)")
        return self


class WaitSpec(Model):
    """`duration`, `until`, or both (the duration first, then until the next matching local time).
    `daytime` moves an end that falls outside the window to the window's next start (a reminder 8 h
    after a cart left at 3 a.m. goes at 11:00; one due at 23:00 waits until 09:00).
    `reorder: 30d` instead of a duration: the typical re-order time of the categories of the customer's
    latest order (the days they last: the `consumable_categories` setting, the shortest of them), else the
    given duration (seed 002: the second purchase comes when the first one is used up)."""

    duration: Duration | None = None
    reorder: Duration | None = None
    until: WaitUntil | None = None
    daytime: Daytime | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if isinstance(data, str | int | float | timedelta) and not isinstance(data, bool):
            return {"duration": data}
        return data

    @model_validator(mode="after")
    def _one_needed(self) -> WaitSpec:
        if self.duration is None and self.until is None and self.reorder is None:
            raise ValueError("a wait needs a duration (4h), reorder: <default duration> or until: {weekday, hour}")
        if self.duration is not None and self.reorder is not None:
            raise ValueError("a wait has a duration or reorder (a duration by the order's categories), not both")
        return self


class Variant(Model):
    template: Identifier
    weight: float = Field(default=1, ge=0)
    name: str | None = Field(default=None, min_length=1, max_length=40)


class CouponSpec(Model):
    """`coupon: {pool: welcome}`: one code of the pool per customer and step (retention.products.coupons).
    An empty pool skips the send (`coupon_pool_empty`), or with `fallback: hmac` the message carries a
    signed code of the documented recipe with the pool's discount (else `discount`) and validity."""

    pool: Identifier
    fallback: Literal["skip", "hmac"] = "skip"
    # `journey`: the steps of one journey entry naming this pool share one code ("your gift is still yours")
    per: Literal["step", "journey"] = "step"
    discount: str | None = None
    valid_days: int = Field(default=7, ge=1, le=3650)

    @field_validator("discount")
    @classmethod
    def _discount(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from retention.products.discounts import parse_discount
        try:
            return parse_discount(value)
        except Exception as exc:
            raise ValueError(getattr(exc, "message", str(exc))) from exc


class SendSpec(Model):
    """`template`, or weighted `variants` (A/B/n, sticky per customer and rule); optionally a `coupon`
    from a pool and `min_recommendations` (skip with `no_recommendations` when a `recommend()` call of
    the template returns fewer products)."""

    channel: Literal["email", "sms", "preferred"] = "email"
    template: Identifier | None = None
    variants: list[Variant] | None = None
    coupon: CouponSpec | None = None
    min_recommendations: int | None = Field(default=None, ge=1, le=12)

    @model_validator(mode="after")
    def _template_or_variants(self) -> SendSpec:
        if (self.template is None) == (self.variants is None):
            raise ValueError("a send has either template or variants")
        if self.variants is not None:
            if not self.variants:
                raise yamlio.LocatedError("variants must not be empty", ("variants",))
            if sum(v.weight for v in self.variants) <= 0:
                raise yamlio.LocatedError("variant weights must sum to more than zero", ("variants",))
            for index, variant in enumerate(self.variants):
                if variant.name is None:
                    variant.name = chr(ord("A") + index) if index < 26 else f"V{index + 1}"
            names = [v.name for v in self.variants]
            if len(set(names)) != len(names):
                raise yamlio.LocatedError(f"variant names must be unique, got {names}", ("variants",))
        return self

    def templates(self) -> list[str]:
        if self.variants is not None:
            return [v.template for v in self.variants]
        return [self.template] if self.template else []


class Engagement(Model):
    """`{opened_previous: true}` / `{clicked_previous: false}`: about the journey's last message."""

    opened_previous: bool | None = None
    clicked_previous: bool | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Engagement:
        if (self.opened_previous is None) == (self.clicked_previous is None):
            raise ValueError("give exactly one of opened_previous, clicked_previous")
        return self

    @property
    def what(self) -> str:
        return "opened" if self.opened_previous is not None else "clicked"

    @property
    def expected(self) -> bool:
        return bool(self.opened_previous if self.opened_previous is not None else self.clicked_previous)


class EngagementCheck(NamedTuple):
    what: str  # opened | clicked
    expected: bool


def _branch_if_tag(value: Any) -> str:
    if isinstance(value, Engagement):
        return "<engagement>"
    if isinstance(value, Mapping) and ("opened_previous" in value or "clicked_previous" in value):
        return "<engagement>"
    return "<condition>"


BranchIf = Annotated[
    Annotated[Engagement, Tag("<engagement>")] | Annotated[ConditionField, Tag("<condition>")],
    Discriminator(_branch_if_tag),
]
Target = int | str


class BranchSpec(Model):
    """`if` is a condition on the profile, or an engagement check of the previous message."""

    if_: BranchIf = Field(alias="if")
    then: Target
    else_: Target | None = Field(default=None, alias="else")

    @property
    def engagement(self) -> EngagementCheck | None:
        """(what, expected) — `opened`/`clicked` and the flag — for an engagement branch, else None.
        A tuple so callers can unpack it; `.what` and `.expected` read the same."""
        if isinstance(self.if_, Engagement):
            return EngagementCheck(self.if_.what, self.if_.expected)
        return None

    @property
    def condition(self) -> conditions.ConditionBase | None:
        return None if isinstance(self.if_, Engagement) else self.if_


class SegmentChange(Model):
    group: str = Field(min_length=1)
    segment: str = Field(min_length=1)
    reason: str | None = None
    until: Duration | None = None


class SegmentClear(Model):
    group: str = Field(min_length=1)
    reason: str | None = None


class _Step(Model):
    id: str | None = None

    @field_validator("id")
    @classmethod
    def _check_label(cls, value: str | None) -> str | None:
        if value is not None and (value == END or not _LABEL_RE.match(value)):
            raise ValueError(
                f"invalid step label {value!r}: start with a letter; letters, digits, - and _; not 'end'"
            )
        return value


class WaitStep(_Step):
    kind: ClassVar[str] = "wait"
    wait: WaitSpec


class SendStep(_Step):
    kind: ClassVar[str] = "send"
    send: SendSpec


class BranchStep(_Step):
    kind: ClassVar[str] = "branch"
    branch: BranchSpec


class GotoStep(_Step):
    kind: ClassVar[str] = "goto"
    goto: Target


class SetSegmentStep(_Step):
    kind: ClassVar[str] = "set_segment"
    set_segment: SegmentChange


class ClearSegmentStep(_Step):
    kind: ClassVar[str] = "clear_segment"
    clear_segment: SegmentClear


STEP_KINDS = ("wait", "send", "branch", "goto", "set_segment", "clear_segment")


def _step_tag(value: Any) -> str | None:
    if isinstance(value, Mapping):
        found = [k for k in value if k in STEP_KINDS]
        return f"<{found[0]}>" if len(found) == 1 else None
    kind = getattr(value, "kind", None)
    return f"<{kind}>" if kind else None


def _precheck_step(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"a step is a mapping with one action: {', '.join(STEP_KINDS)}")
    found = [k for k in value if k in STEP_KINDS]
    if len(found) == 1:
        return value
    unknown = [k for k in value if k not in STEP_KINDS and k != "id"]
    if not found and unknown:
        raise ValueError(f"unknown step action {unknown[0]!r}: use one of {', '.join(STEP_KINDS)}")
    if not found:
        raise ValueError(f"a step needs one action: {', '.join(STEP_KINDS)}")
    raise ValueError(f"a step has exactly one action, got {', '.join(found)}")


Step = Annotated[
    Annotated[WaitStep, Tag("<wait>")]
    | Annotated[SendStep, Tag("<send>")]
    | Annotated[BranchStep, Tag("<branch>")]
    | Annotated[GotoStep, Tag("<goto>")]
    | Annotated[SetSegmentStep, Tag("<set_segment>")]
    | Annotated[ClearSegmentStep, Tag("<clear_segment>")],
    Discriminator(_step_tag),
    BeforeValidator(_precheck_step),
]
AnyStep = WaitStep | SendStep | BranchStep | GotoStep | SetSegmentStep | ClearSegmentStep

# ---------------------------------------------------------------------------------------------
# the rule


class ExitWhen(Model):
    """Ends the journey on one of the events (optionally filtered) or when the condition holds."""

    event: EventNames | None = None
    where: ConditionField | None = None
    condition: ConditionField | None = None

    @model_validator(mode="before")
    @classmethod
    def _events_spelling(cls, data: Any) -> Any:
        return _events_alias(data)

    @model_validator(mode="after")
    def _something(self) -> ExitWhen:
        if not self.event and self.condition is None:
            raise ValueError("exit_when needs event (or events) or a condition")
        if self.where is not None and not self.event:
            raise ValueError("where filters the exit events: give event too")
        return self


class ReEntry(Model):
    allowed: bool = True
    cooldown: Duration | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ReEntry:
        if not self.allowed and self.cooldown is not None:
            raise ValueError("a cooldown makes no sense when re-entry is not allowed")
        return self

    @property
    def cooldown_delta(self) -> timedelta | None:
        return self.cooldown


class Goal(Model):
    event: str = Field(default=DEFAULT_GOAL_EVENT, min_length=1)
    where: ConditionField | None = None


def _check_holdout(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal) or not 0 <= value <= 100:
        raise ValueError(f"holdout_percent must be a number from 0 to 100, got {value!r}")
    return value


class Rule(Model):
    id: Identifier
    title: str = ""
    description: str = ""
    enabled: bool = True
    category: Literal["marketing", "transactional"] = "marketing"
    trigger: Trigger
    audience: ConditionField | None = None
    exit_when: ExitWhen | None = None
    re_entry: ReEntry = Field(default_factory=ReEntry)
    holdout_percent: Annotated[float, BeforeValidator(_check_holdout)] = 0
    attribution_window: Duration = timedelta(days=5)
    goal: Goal = Field(default_factory=Goal)
    # one journey per value of this trigger-event property (e.g. order_id: each order has its own status
    # journey, and an exit event only ends the journey of its own order); None: one per customer and rule
    journey_key: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")
    steps: list[Step] = Field(min_length=1)

    _source: str = PrivateAttr(default="<rule>")

    # ---- what the engine asks ------------------------------------------------------------------
    @property
    def is_transactional(self) -> bool:
        return self.category == "transactional"

    @property
    def source(self) -> str:
        return self._source

    @property
    def goal_event(self) -> str:
        return self.goal.event

    @property
    def exit_condition(self) -> conditions.ConditionBase | None:
        """The profile condition that ends a journey (checked by the engine with the audience)."""
        return None if self.exit_when is None else self.exit_when.condition

    @property
    def trigger_events(self) -> list[str]:
        """Event names that may start this rule (what the ingestion path indexes rules by)."""
        trigger = self.trigger
        if isinstance(trigger, EventTrigger):
            return list(trigger.event)
        if isinstance(trigger, SegmentEnteredTrigger):
            return [SEGMENT_ENTERED_EVENT]
        if isinstance(trigger, SegmentExitedTrigger):
            return [SEGMENT_EXITED_EVENT]
        if isinstance(trigger, ProductEventTrigger):
            return [trigger.product_event]
        return []

    def trigger_matches_event(self, name: str, properties: Mapping[str, Any] | None = None) -> bool:
        """Whether this event starts the rule. `Segment Entered/Exited` carry {group, segment}."""
        if not self.trigger_may_match(name):
            return False
        props = properties or {}
        trigger = self.trigger
        if isinstance(trigger, (EventTrigger, ProductEventTrigger)):
            return _where_matches(trigger.where, name, props)
        if isinstance(trigger, SegmentEnteredTrigger):
            return _segment_matches(trigger.segment_entered, props)
        if isinstance(trigger, SegmentExitedTrigger):
            return _segment_matches(trigger.segment_exited, props)
        return False

    def trigger_may_match(self, name: str) -> bool:
        """Whether an event called `name` could start the rule, its properties aside: False means
        `trigger_matches_event(name, any properties)` is False (the engine's index of rules by event name)."""
        trigger = self.trigger
        if isinstance(trigger, EventTrigger):
            return name in trigger.event
        if isinstance(trigger, ProductEventTrigger):
            return name == trigger.product_event
        if isinstance(trigger, SegmentEnteredTrigger):
            return name == SEGMENT_ENTERED_EVENT
        if isinstance(trigger, SegmentExitedTrigger):
            return name == SEGMENT_EXITED_EVENT
        return False

    def exit_may_match(self, name: str) -> bool:
        """Whether an event called `name` could end a running journey, its properties aside."""
        return self.exit_when is not None and name in (self.exit_when.event or ())

    def exit_matches(self, name: str, properties: Mapping[str, Any] | None = None) -> bool:
        """Whether this event ends a running journey (`exit_when.condition` is a profile check)."""
        exit_when = self.exit_when
        if exit_when is None or not self.exit_may_match(name):
            return False
        return _where_matches(exit_when.where, name, properties or {})

    def goal_matches(self, name: str, properties: Mapping[str, Any] | None = None) -> bool:
        return name == self.goal.event and _where_matches(self.goal.where, name, properties or {})

    def step_at(self, index: int) -> AnyStep | None:
        """The step at `index`, or None past the end (the journey is complete)."""
        if 0 <= index < len(self.steps):
            step: AnyStep = self.steps[index]
            return step
        return None

    def labels(self) -> dict[str, int]:
        return {step.id: i for i, step in enumerate(self.steps) if step.id}

    def target_index(self, target: Target | None, *, current: int) -> int | None:
        """Where a jump lands: a step index, or None for `end`; a None target means the next step."""
        if target is None:
            landing = current + 1
        elif isinstance(target, int):
            landing = target
        elif target == END:
            return None
        else:
            landing = self.labels()[target]
        return landing if landing < len(self.steps) else None

    def next_index(self, index: int, *, branch_taken: bool | None = None) -> int | None:
        """The step after `index` (a branch: `then` when taken, else `else`); None = the end."""
        step = self.step_at(index)
        if isinstance(step, GotoStep):
            return self.target_index(step.goto, current=index)
        if isinstance(step, BranchStep):
            target = step.branch.then if branch_taken else step.branch.else_
            return self.target_index(target, current=index)
        return self.target_index(None, current=index)

    def send_steps(self) -> list[tuple[int, SendStep]]:
        return [(i, s) for i, s in enumerate(self.steps) if isinstance(s, SendStep)]

    def templates(self) -> set[str]:
        return {t for _, s in self.send_steps() for t in s.send.templates()}

    def to_dict(self) -> dict[str, Any]:
        """The JSON document form (what is stored; parse_rule reads it back)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _segment_matches(refs: Sequence[str], props: Mapping[str, Any]) -> bool:
    segment = props.get("segment", props.get("segment_id"))
    group = props.get("group")
    for ref in refs:
        if "/" in ref:
            if f"{group}/{segment}" == ref:
                return True
        elif segment == ref:
            return True
    return False


def _where_matches(where: conditions.ConditionBase | None, name: str, properties: Mapping[str, Any]) -> bool:
    if where is None:
        return True
    facts = {"event": {"name": name, "properties": dict(properties)}, "now": clock.now()}
    return bool(conditions.evaluate(where, facts))


# ---- step helpers the engine calls (it holds steps, not always the typed models) ----------------


def step_kind(step: AnyStep) -> str:
    """wait | send | branch | set_segment | clear_segment. A goto reports `branch`: it is a branch whose
    condition always holds (branch_condition / branch_next handle it)."""
    return "branch" if isinstance(step, GotoStep) else step.kind


_ALWAYS = conditions.parse_condition({"all": []})


def branch_condition(step: BranchStep | GotoStep) -> Any:
    """`opened_previous` / `clicked_previous` (the engine looks up the last message), else a parsed
    condition to evaluate on the profile's facts."""
    if isinstance(step, GotoStep):
        return _ALWAYS
    engagement = step.branch.engagement
    if engagement is not None:
        return f"{engagement.what}_previous"
    return step.branch.condition


def branch_next(rule: Rule, step: BranchStep | GotoStep, index: int, result: bool) -> int:
    """The index to continue at (len(steps) = the end). `result` is the evaluated condition, or for an
    engagement branch whether the previous message was opened/clicked (`…: false` inverts it)."""
    taken = result
    if isinstance(step, BranchStep) and step.branch.engagement is not None:
        taken = result == step.branch.engagement.expected
    landing = rule.next_index(index, branch_taken=taken)
    return len(rule.steps) if landing is None else landing


def send_target(step: SendStep, customer_id: str, rule_id: str) -> tuple[str, str, str]:
    """(template, variant name, channel) of a send step for this customer."""
    template, variant = choose_variant(step, customer_id, rule_id)
    return template, variant, step.send.channel


def segment_assignment(
    step: SetSegmentStep | ClearSegmentStep, now: datetime
) -> tuple[str, str | None, str | None, datetime | None]:
    """(group, segment or None to clear the manual assignment, reason, until)."""
    if isinstance(step, ClearSegmentStep):
        return step.clear_segment.group, None, step.clear_segment.reason, None
    change = step.set_segment
    until = now + change.until if change.until is not None else None
    return change.group, change.segment, change.reason, until


# ---------------------------------------------------------------------------------------------
# deterministic assignment


def _unit_hash(*parts: str) -> float:
    digest = hashlib.sha256("|".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose_variant(send_step: SendStep | SendSpec, customer_id: str, rule_id: str) -> tuple[str, str]:
    """(template, variant name), sticky per customer and rule: sha256(customer|rule) against the
    cumulative weights. A plain `template:` send is the variant `default`."""
    spec = send_step.send if isinstance(send_step, SendStep) else send_step
    if spec.variants is None:
        return str(spec.template), DEFAULT_VARIANT
    live = [v for v in spec.variants if v.weight > 0]
    total = sum(v.weight for v in live)
    point = _unit_hash(customer_id, rule_id) * total
    running = 0.0
    chosen = live[-1]
    for variant in live:
        running += variant.weight
        if point < running:
            chosen = variant
            break
    return chosen.template, str(chosen.name)


def in_holdout(customer_id: str, rule_id: str, percent: float) -> bool:
    """Whether the customer is in the rule's control group. The salt differs from the variant hash,
    so the control group is independent of the A/B split."""
    if percent <= 0:
        return False
    if percent >= 100:
        return True
    return _unit_hash("holdout", customer_id, rule_id) * 100 < percent


# ---------------------------------------------------------------------------------------------
# time


def _first_local_at_or_after(
    after: datetime, hour: int, minute: int, weekdays: set[int] | None, zone: tzinfo
) -> datetime:
    local_day = after.astimezone(zone).date()
    for offset in range(-1, 9):
        day = local_day + timedelta(days=offset)
        if weekdays is not None and day.weekday() not in weekdays:
            continue
        # Compare in UTC: two datetimes sharing a tzinfo compare by wall clock, which lies at DST.
        candidate = datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)
        if candidate >= after:
            return candidate
    raise AssertionError("unreachable: a matching day exists within a week")


def next_wait_due(
    wait_step: WaitStep | WaitSpec,
    now: datetime,
    tz: str | tzinfo | None = None,
    *,
    entered_at: datetime | None = None,
    reorder: timedelta | None = None,
) -> datetime:
    """When a wait reached at `now` ends (UTC). A duration counts from `now`; `until` is the first moment
    at or after that whose clock in the customer's timezone shows the hour (on an allowed weekday).
    `entered_at` (the journey's start) is accepted for the engine's call and does not change the result:
    waits are relative to the step, not to the entry. `reorder`: the customer's re-order time for a
    `reorder` wait (the engine's, from the settings); without it the wait's own default."""
    del entered_at
    spec = wait_step.wait if isinstance(wait_step, WaitStep) else wait_step
    due = now.astimezone(UTC)
    if spec.duration is not None:
        due = due + spec.duration
    if spec.reorder is not None:
        due = due + (reorder if reorder is not None else spec.reorder)
    if spec.until is not None:
        weekdays = None if spec.until.weekday is None else {WEEKDAYS[d] for d in spec.until.weekday}
        due = _first_local_at_or_after(due, spec.until.hour, spec.until.minute, weekdays, resolve_tz(tz))
    if spec.daytime is not None:
        zone = resolve_tz(tz)
        start, end = parse_time_of_day(spec.daytime.from_), parse_time_of_day(spec.daytime.to)
        local = due.astimezone(zone).time()
        if not start <= local < end:
            due = _first_local_at_or_after(due, start.hour, start.minute, None, zone)
    return due


_BIRTHDAY_RE = re.compile(r"^(?:(\d{4})-|--)?(\d{1,2})-(\d{1,2})(?:[T ].*)?$")


def parse_birthday(value: Any) -> tuple[int, int] | None:
    """(month, day) from `YYYY-MM-DD`, `MM-DD`, `--MM-DD` or a date; None when it is not a date."""
    if isinstance(value, datetime | date):
        return value.month, value.day
    if not isinstance(value, str):
        return None
    match = _BIRTHDAY_RE.match(value.strip())
    if not match:
        return None
    month, day = int(match.group(2)), int(match.group(3))
    try:
        date(2000, month, day)  # a leap year: Feb 29 is a valid birthday
    except ValueError:
        return None
    if match.group(1) is not None:
        try:
            date(int(match.group(1)), month, day)
        except ValueError:
            return None
    return month, day


def _birthday_in(year: int, month: int, day: int) -> date:
    # Feb 29 is celebrated on Feb 28 in common years.
    if month == 2 and day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return date(year, month, day)


def next_birthday_at(
    birthday: Any,
    offset_days: int,
    at: str | time,
    tz: str | tzinfo | None,
    now: datetime,
) -> datetime | None:
    """The first moment strictly after `now` (UTC) that is `offset_days` from the customer's birthday,
    at local time `at` in `tz`. Offsets cross year ends (Jan 2 − 3 days = Dec 30 of the year before);
    Feb 29 falls on Feb 28 in common years. None when the birthday cannot be read."""
    parsed = parse_birthday(birthday)
    if parsed is None:
        return None
    month, day = parsed
    zone = resolve_tz(tz)
    local_time = parse_time_of_day(at)
    now_utc = now.astimezone(UTC)
    year = now_utc.astimezone(zone).year
    for candidate_year in range(year - 1, year + 3):
        send_day = _birthday_in(candidate_year, month, day) + timedelta(days=offset_days)
        moment = datetime.combine(send_day, local_time, tzinfo=zone).astimezone(UTC)
        if moment > now_utc:
            return moment
    return None


# ---- cron: EventBridge syntax, cron(minutes hours day-of-month month day-of-week year) ----------

_MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
_CRON_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], start=1)}


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int] | None          # None: `?` or `*`
    last_day: bool                       # `L` in day-of-month
    months: frozenset[int]
    weekdays: frozenset[int] | None      # python numbering (Mon = 0); None: `?` or `*`
    nth_weekday: tuple[int, int] | None  # (python weekday, n) from `MON#2`
    years: frozenset[int] | None


def _cron_value(text: str, names: Mapping[str, int], what: str) -> int:
    key = text.upper()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise ValueError(f"invalid value {text!r} in the {what} field")
    return int(text)


def _cron_field(text: str, low: int, high: int, names: Mapping[str, int], what: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"invalid step {step_text!r} in the {what} field")
            step = int(step_text)
        if part in ("*", ""):
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = _cron_value(first, names, what), _cron_value(last, names, what)
        else:
            start = _cron_value(part, names, what)
            end = high if step > 1 else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise ValueError(f"{part!r} is out of range {low}-{high} in the {what} field")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@lru_cache(maxsize=256)
def parse_cron(expression: str) -> Cron:
    """Parse `cron(0 10 ? * MON *)` (EventBridge; also `L` day-of-month and `MON#2`)."""
    match = re.fullmatch(r"cron\((.*)\)", expression.strip())
    if not match:
        raise ValueError(f"invalid schedule {expression!r}: use cron(minutes hours day month weekday year)")
    fields = match.group(1).split()
    if len(fields) != 6:
        raise ValueError(f"schedule {expression!r} needs 6 fields: minutes hours day month weekday year")
    minute_f, hour_f, dom_f, month_f, dow_f, year_f = fields
    if (dom_f == "?") == (dow_f == "?"):
        raise ValueError(f"schedule {expression!r}: exactly one of day-of-month and day-of-week must be '?'")
    minutes = _cron_field(minute_f, 0, 59, {}, "minutes")
    hours = _cron_field(hour_f, 0, 23, {}, "hours")
    months = _cron_field(month_f, 1, 12, _MONTHS, "month")
    years = None if year_f == "*" else _cron_field(year_f, 1970, 2199, {}, "year")
    days: frozenset[int] | None = None
    last_day = False
    if dom_f.upper() == "L":
        last_day = True
    elif dom_f not in ("?", "*"):
        if "W" in dom_f.upper():
            raise ValueError("the W (nearest weekday) form is not supported")
        days = _cron_field(dom_f, 1, 31, {}, "day-of-month")
    weekdays: frozenset[int] | None = None
    nth: tuple[int, int] | None = None
    if dow_f not in ("?", "*"):
        if "#" in dow_f:
            day_text, n_text = dow_f.split("#", 1)
            if not n_text.isdigit() or not 1 <= int(n_text) <= 5:
                raise ValueError(f"invalid {dow_f!r}: use DAY#n with n from 1 to 5")
            aws_day = _cron_value(day_text, _CRON_DAYS, "day-of-week")
            if not 1 <= aws_day <= 7:
                raise ValueError(f"{day_text!r} is out of range 1-7 in the day-of-week field")
            nth = ((aws_day - 2) % 7, int(n_text))
        elif "L" in dow_f.upper():
            raise ValueError("the L (last weekday) form of day-of-week is not supported")
        else:
            aws_days = _cron_field(dow_f, 1, 7, _CRON_DAYS, "day-of-week")
            weekdays = frozenset((d - 2) % 7 for d in aws_days)  # AWS: 1 = SUN; python: 0 = MON
    return Cron(minutes, hours, days, last_day, months, weekdays, nth, years)


def _cron_day_matches(cron: Cron, day: date) -> bool:
    if day.month not in cron.months or (cron.years is not None and day.year not in cron.years):
        return False
    if cron.last_day:
        return day.day == calendar.monthrange(day.year, day.month)[1]
    if cron.days is not None:
        return day.day in cron.days
    if cron.nth_weekday is not None:
        weekday, n = cron.nth_weekday
        return day.weekday() == weekday and (day.day - 1) // 7 + 1 == n
    if cron.weekdays is not None:
        return day.weekday() in cron.weekdays
    return True


def next_schedule_at(expression: str, after: datetime, tz: str | tzinfo | None = "UTC") -> datetime | None:
    """The first firing strictly after `after` (UTC), the cron read in `tz`; None if it never fires."""
    cron = parse_cron(expression)
    zone = resolve_tz(tz)
    after_utc = after.astimezone(UTC)
    start = after_utc.astimezone(zone).date()
    hours, minutes = sorted(cron.hours), sorted(cron.minutes)
    for offset in range(0, 366 * 8):
        day = start + timedelta(days=offset)
        if cron.years is not None and day.year > max(cron.years):
            return None
        if not _cron_day_matches(cron, day):
            continue
        for hour in hours:
            for minute in minutes:
                moment = datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)
                if moment > after_utc:
                    return moment
    return None


# ---------------------------------------------------------------------------------------------
# hashing and diffs


def rule_hash(rule: Rule | Mapping[str, Any]) -> str:
    """sha256 of the rule's canonical JSON: equal for equal definitions, however the YAML was spelled."""
    data = rule.to_dict() if isinstance(rule, Rule) else dict(rule)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value if value and value.strip() == value else json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _diff(old: Any, new: Any, path: str, out: list[str]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in [*old, *(k for k in new if k not in old)]:
            sub = _join(path, key)
            if key not in new:
                out.append(f"- {sub}: {_show(old[key])}")
            elif key not in old:
                out.append(f"+ {sub}: {_show(new[key])}")
            else:
                _diff(old[key], new[key], sub, out)
        return
    if isinstance(old, list) and isinstance(new, list):
        keys_old, keys_new = [_show(x) for x in old], [_show(x) for x in new]
        matcher = difflib.SequenceMatcher(a=keys_old, b=keys_new, autojunk=False)
        for op, a1, a2, b1, b2 in matcher.get_opcodes():
            if op == "equal":
                continue
            if op == "replace" and a2 - a1 == b2 - b1:
                for i, j in zip(range(a1, a2), range(b1, b2), strict=True):
                    _diff(old[i], new[j], _join(path, j), out)
                continue
            out.extend(f"- {_join(path, i)}: {_show(old[i])}" for i in range(a1, a2))
            out.extend(f"+ {_join(path, j)}: {_show(new[j])}" for j in range(b1, b2))
        return
    if old != new or type(old) is not type(new):
        out.append(f"~ {path}: {_show(old)} → {_show(new)}")


def diff_rules(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """Readable changes between two rule documents: `+ path: value`, `- path: value`,
    `~ path: old → new`. List items are aligned, so an inserted step is one `+` line."""
    if old is None and new is None:
        return []
    if old is None:
        return [f"+ new rule {_show((new or {}).get('id', '?'))}"]
    if new is None:
        return [f"- rule {_show(old.get('id', '?'))} removed"]
    out: list[str] = []
    _diff(old, new, "", out)
    return out


# ---------------------------------------------------------------------------------------------
# validation


@dataclass(frozen=True)
class Problem:
    path: tuple[Any, ...]
    message: str


class RuleValidationError(ValidationError):
    """Every problem found, one `file:line: path: message` line each (also in `.problems`)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and part.startswith("<") and part.endswith(">")


def _pydantic_problems(exc: PydanticValidationError, obj: Any) -> list[Problem]:
    """pydantic's errors as (document path, message): union tags and union member names dropped, a
    LocatedError's own sub-path appended, friendlier words for unknown and missing fields."""
    problems: list[Problem] = []
    seen: set[tuple[tuple[Any, ...], str]] = set()
    for error in exc.errors():
        loc = [part for part in error["loc"] if not _is_tag(part)]
        path: list[Any] = []
        node: Any = obj
        for position, part in enumerate(loc):
            last = position == len(loc) - 1
            if isinstance(node, Mapping):
                if part in node:
                    path.append(part)
                    node = node[part]
                    continue
                if last or error["type"] == "missing":
                    path.append(part)
                break
            if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                path.append(part)
                node = node[part]
                continue
            break  # a scalar: what follows names union members, not places in the document
        ctx = error.get("ctx") or {}
        cause = ctx.get("error")
        kind = error["type"]
        if isinstance(cause, yamlio.LocatedError):
            message = cause.message
            path.extend(cause.path)
        elif kind == "extra_forbidden" and path:
            message = f"unknown field {path[-1]!r}"
        elif kind == "missing" and path:
            message = f"missing required field {path[-1]!r}"
            path = path[:-1]
        elif kind == "value_error" and isinstance(cause, Exception):
            message = str(cause)
        else:
            message = str(error.get("msg", "invalid"))
            if kind == "literal_error":
                message = f"{message}, got {error.get('input')!r}"
        key = (tuple(path), message)
        if key not in seen:
            seen.add(key)
            problems.append(Problem(tuple(path), message))
    return problems


def _consent_exclusions(audience: conditions.ConditionBase | None) -> set[str]:
    """Channels whose consent the audience explicitly rules out (`not: {consent: sms}` under `all`)."""
    out: set[str] = set()
    if isinstance(audience, conditions.AllCondition):
        for item in audience.all_:
            out |= _consent_exclusions(item)
    elif isinstance(audience, conditions.NotCondition):
        inner = audience.not_
        if isinstance(inner, conditions.ConsentCondition) and inner.state is None:
            out.add(inner.consent)
    return out


def _graph_problems(rule: Rule) -> list[Problem]:
    problems: list[Problem] = []
    labels: dict[str, int] = {}
    for index, step in enumerate(rule.steps):
        if step.id:
            if step.id in labels:
                problems.append(Problem(("steps", index, "id"),
                                        f"duplicate step label {step.id!r} (also steps[{labels[step.id]}])"))
            else:
                labels[step.id] = index
    count = len(rule.steps)

    def resolve(target: Target | None, index: int, path: tuple[Any, ...]) -> int | None:
        if target is None:
            return index + 1 if index + 1 < count else None
        if isinstance(target, int):
            if not 0 <= target < count:
                problems.append(Problem(path, f"step index {target} is out of range 0-{count - 1}"))
                return None
            return target
        if target == END:
            return None
        if target not in labels:
            known = ", ".join(sorted(labels)) or "none"
            problems.append(Problem(path, f"unknown step label {target!r} (labels: {known}; or end)"))
            return None
        return labels[target]

    edges: dict[int, list[int]] = {}
    for index, step in enumerate(rule.steps):
        if isinstance(step, GotoStep):
            targets = [resolve(step.goto, index, ("steps", index, "goto"))]
        elif isinstance(step, BranchStep):
            targets = [
                resolve(step.branch.then, index, ("steps", index, "branch", "then")),
                resolve(step.branch.else_, index, ("steps", index, "branch", "else")),
            ]
        else:
            targets = [index + 1 if index + 1 < count else None]
        edges[index] = [t for t in targets if t is not None]

    cycle = find_cycle(edges, range(count))  # the first back edge closes a loop, reported once
    if cycle:
        jumper = cycle[-2]
        step = rule.steps[jumper]
        where: tuple[Any, ...] = ("steps", jumper)
        if isinstance(step, GotoStep):
            where = ("steps", jumper, "goto")
        elif isinstance(step, BranchStep):
            where = ("steps", jumper, "branch")
        loop = " → ".join(str(i) for i in cycle)
        problems.append(Problem(where, f"steps form a loop ({loop}): a journey must not repeat steps"))
    return problems


def _segment_ref_problem(
    ref: str, known: set[str] | None, groups: Mapping[str, set[str]] | None
) -> str | None:
    if groups is not None:
        if "/" in ref:
            group, _, seg = ref.partition("/")
            if group not in groups:
                return f"unknown segment {ref!r}: no group {group!r}"
            if seg not in groups[group]:
                return f"unknown segment {ref!r}: group {group!r} has no segment {seg!r}"
            return None
        owners = sorted(g for g, ids in groups.items() if ref in ids)
        if not owners:
            return f"unknown segment {ref!r}"
        if len(owners) > 1:
            return f"ambiguous segment {ref!r} (in {', '.join(owners)}): write " + " or ".join(
                f"'{g}/{ref}'" for g in owners)
        return None
    if known is not None and ref not in known and ref.rpartition("/")[2] not in known:
        return f"unknown segment {ref!r}"
    return None


def rule_problems(
    rule: Rule,
    *,
    templates: TemplateSet | None = None,
    segments: Iterable[str] | None = None,
    segment_groups: Mapping[str, Iterable[str]] | None = None,
) -> list[Problem]:
    """Checks beyond the schema: jumps and loops, channels the audience can never receive, engagement
    branches without an earlier send, and (when given) known template ids, segment ids and groups.
    `templates` is a set of ids, or {id: Template or its document}: then each referenced template is
    also rendered against the sample context (a variable the render context cannot supply is an error
    now, not at send time) and must have content for the step's channel.
    `segment_groups` ({group: segment ids}) also catches ids that are ambiguous between groups."""
    problems = _graph_problems(rule)
    known_templates = set(templates) if templates is not None else None
    template_objects = templates if isinstance(templates, Mapping) else None
    known_segments = set(segments) if segments is not None else None
    groups = {g: set(ids) for g, ids in segment_groups.items()} if segment_groups is not None else None

    if rule.is_transactional and rule.holdout_percent > 0:
        problems.append(Problem(("holdout_percent",),
                                "a transactional rule cannot hold customers out of service messages"))

    # Transactional messages go without marketing consent, so only marketing rules can contradict.
    excluded = set() if rule.is_transactional else _consent_exclusions(rule.audience)
    seen_send = False
    for index, step in enumerate(rule.steps):
        if isinstance(step, SendStep):
            seen_send = True
            spec = step.send
            if rule.is_transactional and (spec.coupon is not None or spec.min_recommendations is not None):
                # a service message carries no promotion (DESIGN §5): no coupon, no product block
                what = "coupon" if spec.coupon is not None else "min_recommendations"
                problems.append(Problem(("steps", index, "send", what),
                                        f"a transactional rule carries no promotion: no {what} (move the offer "
                                        "to a marketing rule: consent, caps and holdout apply)"))
            if spec.channel in excluded or (spec.channel == "preferred" and {"email", "sms"} <= excluded):
                what = "email or SMS" if spec.channel == "preferred" else spec.channel
                problems.append(Problem(
                    ("steps", index, "send", "channel"),
                    f"channel {spec.channel} can never be delivered: the audience requires no {what} consent",
                ))
            if known_templates is not None:
                refs: list[tuple[tuple[Any, ...], str]]
                if spec.variants is not None:
                    refs = [(("steps", index, "send", "variants", i, "template"), v.template)
                            for i, v in enumerate(spec.variants)]
                else:
                    refs = [(("steps", index, "send", "template"), str(spec.template))]
                for path, template_id in refs:
                    if template_id not in known_templates:
                        problems.append(Problem(path, f"unknown template {template_id!r}"))
                    elif template_objects is not None:
                        problems.extend(Problem(path, message) for message in
                                        _template_problems(template_objects, template_id, spec.channel))
        elif isinstance(step, BranchStep):
            if step.branch.engagement is not None and not seen_send:
                measured = step.branch.engagement.what
                problems.append(Problem(("steps", index, "branch", "if"),
                                        f"{measured}_previous needs a send step before it"))
        elif isinstance(step, SetSegmentStep | ClearSegmentStep):
            key = "set_segment" if isinstance(step, SetSegmentStep) else "clear_segment"
            group = step.set_segment.group if isinstance(step, SetSegmentStep) else step.clear_segment.group
            if groups is not None and group not in groups:
                known = ", ".join(sorted(groups))
                problems.append(Problem(("steps", index, key, "group"),
                                        f"unknown segment group {group!r} (known: {known})"))
            elif isinstance(step, SetSegmentStep):
                segment = step.set_segment.segment
                if groups is not None and segment not in groups[group]:
                    problems.append(Problem(("steps", index, key, "segment"),
                                            f"unknown segment {segment!r} in group {group!r}"))
                elif groups is None and known_segments is not None and segment not in known_segments:
                    problems.append(Problem(("steps", index, key, "segment"), f"unknown segment {segment!r}"))

    if known_segments is not None or groups is not None:
        for path, ref in _segment_references(rule):
            message = _segment_ref_problem(ref, known_segments, groups)
            if message:
                problems.append(Problem(path, message))
    return problems


TemplateSet = Iterable[str] | Mapping[str, Any]
_TEMPLATE_CHECKS: dict[str, tuple[str, ...]] = {}


def _template_problems(objects: Mapping[str, Any], template_id: str, channel: str) -> list[str]:
    """Why a referenced template cannot serve this send (rendering, then content for the channel)."""
    from retention.language import templates as templates_mod  # jinja2 only where definitions are validated

    try:
        template = templates_mod.parse_template(objects[template_id], source=f"template {template_id!r}")
    except RetentionError as exc:
        return [f"template {template_id!r} is invalid: {exc.message}"]
    errors = _TEMPLATE_CHECKS.get(template.digest)
    if errors is None:
        errors = tuple(templates_mod.validate_template(template))
        if len(_TEMPLATE_CHECKS) > 512:
            _TEMPLATE_CHECKS.clear()
        _TEMPLATE_CHECKS[template.digest] = errors
    out = [f"template {template_id!r}: {error}" for error in errors]
    has = set().union(*(template.channels(locale) for locale in template.locales))
    if channel == "preferred" and not has:
        out.append(f"template {template_id!r} has neither email nor SMS content")
    elif channel != "preferred" and channel not in has:
        out.append(f"channel {channel}, but template {template_id!r} has no {channel} content")
    return out


def _segment_references(rule: Rule) -> list[tuple[tuple[Any, ...], str]]:
    refs: list[tuple[tuple[Any, ...], str]] = []
    trigger = rule.trigger
    if isinstance(trigger, SegmentEnteredTrigger):
        refs += [(("trigger", "segment_entered"), s) for s in trigger.segment_entered]
    elif isinstance(trigger, SegmentExitedTrigger):
        refs += [(("trigger", "segment_exited"), s) for s in trigger.segment_exited]
    elif isinstance(trigger, ScheduleTrigger) and trigger.segment:
        refs.append((("trigger", "segment"), trigger.segment))
    located: list[tuple[tuple[Any, ...], conditions.ConditionBase | None]] = [
        (("audience",), rule.audience),
        (("exit_when", "condition"), rule.exit_condition),
    ]
    for index, step in enumerate(rule.steps):
        if isinstance(step, BranchStep):
            located.append((("steps", index, "branch", "if"), step.branch.condition))
    for base, cond in located:
        if cond is not None:
            refs += [(path, ref) for ref, path in conditions.segment_reference_paths(cond, base)]
    return refs


def _format(problems: Iterable[Problem], source: str, linemap: yamlio.LineMap | None) -> list[str]:
    return [yamlio.located(source, linemap, p.path, p.message) for p in problems]


def parse_rule(
    obj: Any,
    *,
    source: str = "<rule>",
    linemap: yamlio.LineMap | None = None,
    templates: TemplateSet | None = None,
    segments: Iterable[str] | None = None,
    segment_groups: Mapping[str, Iterable[str]] | None = None,
) -> Rule:
    """Validate one rule document; RuleValidationError lists every problem as `file:line: path: msg`
    (without a line map — a document read back from the config table — as `source: path: msg`)."""
    if not isinstance(obj, Mapping):
        raise RuleValidationError(_format([Problem((), "a rule is a mapping (id, trigger, steps …)")],
                                          source, linemap))
    try:
        rule = Rule.model_validate(obj)
    except PydanticValidationError as exc:
        problems = _pydantic_problems(exc, obj)
        # one round: the references (templates, segments, step labels) of the parts that did parse are
        # checked too, so fixing the schema errors does not reveal a second list
        problems += _reference_problems_despite(problems, obj, templates=templates, segments=segments,
                                                segment_groups=segment_groups)
        if linemap is not None:
            problems.sort(key=lambda p: linemap.line_for(p.path) or 0)
        raise RuleValidationError(_format(problems, source, linemap)) from None
    rule._source = source
    problems = rule_problems(rule, templates=templates, segments=segments, segment_groups=segment_groups)
    if problems:
        if linemap is not None:
            problems.sort(key=lambda p: linemap.line_for(p.path) or 0)
        raise RuleValidationError(_format(problems, source, linemap))
    return rule


_PLACEHOLDER_STEP: dict[str, Any] = {"wait": "1d"}
_PLACEHOLDERS: dict[str, Any] = {"id": "placeholder", "trigger": {"event": "placeholder"}}


def _reference_problems_despite(schema: list[Problem], obj: Mapping[str, Any], **known: Any) -> list[Problem]:
    """The reference problems (rule_problems) of a rule that failed its schema: each part named by a schema
    problem is set aside (a step becomes a wait that keeps its label, so jumps still land; a bad field is
    dropped, or a required one stubbed) and the rest is checked as usual. Nothing about a set-aside part is
    reported twice; when the rest does not parse either, only the schema problems stand."""
    body = dict(obj)
    steps = list(body.get("steps") or []) if isinstance(body.get("steps"), list) else None
    aside_steps: set[int] = set()
    aside_fields: set[str] = set()
    for problem in schema:
        if not problem.path:
            return []  # the document as a whole: nothing to set aside
        head = problem.path[0]
        if head == "steps" and steps is not None and len(problem.path) > 1 and isinstance(problem.path[1], int):
            aside_steps.add(problem.path[1])
        else:
            aside_fields.add(str(head))
    for field_name in aside_fields:
        if field_name == "steps":
            steps = None
        elif field_name in _PLACEHOLDERS:
            body[field_name] = _PLACEHOLDERS[field_name]
        else:
            body.pop(field_name, None)
    if steps is None:
        body["steps"] = [_PLACEHOLDER_STEP]
    else:
        for index in aside_steps:
            if 0 <= index < len(steps):
                label = steps[index].get("id") if isinstance(steps[index], Mapping) else None
                valid_label = isinstance(label, str) and _LABEL_RE.match(label)
                steps[index] = {**_PLACEHOLDER_STEP, **({"id": label} if valid_label else {})}
        body["steps"] = steps
    try:
        rest = Rule.model_validate(body)
    except PydanticValidationError:
        return []

    def set_aside(path: tuple[Any, ...]) -> bool:
        if not path:
            return False
        if path[0] == "steps":
            return steps is None or (len(path) > 1 and path[1] in aside_steps)
        return str(path[0]) in aside_fields

    return [p for p in rule_problems(rest, **known) if not set_aside(p.path)]


def load_rules(
    texts: Mapping[str, str],
    *,
    templates: TemplateSet | None = None,
    segments: Iterable[str] | None = None,
    segment_groups: Mapping[str, Iterable[str]] | None = None,
) -> list[Rule]:
    """Parse every document of every file ({path: YAML text}); one RuleValidationError lists all the
    problems (invalid YAML, schema, references, rule ids repeated across documents)."""
    problems: list[str] = []
    rules: list[Rule] = []
    first_seen: dict[str, str] = {}
    known_templates = templates if templates is None or isinstance(templates, Mapping) else set(templates)
    known_segments = set(segments) if segments is not None else None
    for path in sorted(texts):
        try:
            documents = yamlio.load_yaml_documents(texts[path], path)
        except RetentionError as exc:
            problems.extend(exc.message.splitlines())
            continue
        for obj, linemap in documents:
            try:
                rule = parse_rule(obj, source=path, linemap=linemap, templates=known_templates,
                                  segments=known_segments, segment_groups=segment_groups)
            except RuleValidationError as exc:
                problems.extend(exc.problems)
                continue
            if rule.id in first_seen:
                message = f"duplicate rule id {rule.id!r} (also in {first_seen[rule.id]})"
                problems.append(yamlio.located(path, linemap, ("id",), message))
                continue
            first_seen[rule.id] = path
            rules.append(rule)
    if problems:
        raise RuleValidationError(problems)
    return rules


def rule_texts(directory: Path | None = None) -> dict[str, str]:
    """{display path: YAML text} of `<scenarios>/rules/*.yaml`."""
    return yamlio.scenario_texts("rules", directory)


def default_rules(
    *,
    templates: TemplateSet | None = None,
    segments: Iterable[str] | None = None,
    segment_groups: Mapping[str, Iterable[str]] | None = None,
    directory: Path | None = None,
) -> list[Rule]:
    """The scenario library (scenarios/rules/*.yaml). Template ids are checked against the files in
    scenarios/templates/ unless `templates` is given."""
    base = directory or scenarios_dir()
    if templates is None:
        template_dir = base / "templates"
        templates = sorted(p.stem for p in [*template_dir.glob("*.yaml"), *template_dir.glob("*.yml")])
    return load_rules(rule_texts(base), templates=templates, segments=segments, segment_groups=segment_groups)
