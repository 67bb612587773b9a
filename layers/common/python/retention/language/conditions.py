"""The condition language shared by segment definitions and journey rules (audience, branch, filters).

A condition is a mapping with exactly one operator:

    all: [cond, …]            every sub-condition holds (an empty list holds)
    any: [cond, …]            at least one holds (an empty list does not)
    not: cond
    consent: email | sms      marketing consent granted on that channel
    in_segment: id            current member (`id`, or `group/id` when the id exists in two groups)
    not_in_segment: id
    event: name               the event being processed has this name
    event_in: [name, …]
    {trait|kpi|property: name, <op>: value, …}
        ops eq ne gt gte lt lte in not_in exists contains; several ops on one field must all
        hold (a range). `property` is a dotted path into the event's properties (`a.b.0.c`).
        A missing value fails every op except `exists: false`.
    {since: field, gt|gte|lt|lte: duration, …}
        time elapsed since a timestamp, looked up in kpis, then traits, then the profile.
        duration: `<number><unit>`, units s m h d w mo y (1mo = 30 days, 1y = 365 days), or a
        reference `{kpi: name, times: 1.5, unit: d, min?: duration, max?: duration}` =
        kpi value × times units, clamped to [min, max]. A missing timestamp or kpi fails.

Evaluation is on plain `facts` (see `evaluate`). Parsing does the work (durations, paths, value
kinds) so evaluating a parsed condition is plain attribute access and comparisons.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    TypeAdapter,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from retention.core import clock
from retention.core.errors import ValidationError
from retention.core.yamlio import LineMap, LocatedError, Path, format_validation_error
from retention.customers.kpis import NUMERIC_KPIS, TIMESTAMP_KPIS
from retention.language import durations

Facts = Mapping[str, Any]

KNOWN_KPIS: frozenset[str] = NUMERIC_KPIS | TIMESTAMP_KPIS

COMPARISON_OPS: tuple[str, ...] = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "contains")
DURATION_OPS: tuple[str, ...] = ("gt", "gte", "lt", "lte")
SUBJECTS: tuple[str, ...] = ("trait", "kpi", "property")

_DURATION_HINT = "a duration like '30m', '24h', '180d', '2w', '6mo' (1mo = 30 days), '1y', '1d12h'"
_MICROSECOND = timedelta(microseconds=1)

# Operator key → union tag. Tags are never document keys (the `<…>` form), so error locations
# can drop them (see yamlio.LineMap.existing_prefix).
_OPERATOR_TAGS: dict[str, str] = {
    "all": "<all>",
    "any": "<any>",
    "not": "<not>",
    "consent": "<consent>",
    "in_segment": "<in_segment>",
    "not_in_segment": "<not_in_segment>",
    "event": "<event>",
    "event_in": "<event_in>",
    "trait": "<compare>",
    "kpi": "<compare>",
    "property": "<compare>",
    "since": "<since>",
}
_OPERATOR_LIST = ", ".join(_OPERATOR_TAGS)
_ALLOWED_KEYS: dict[str, frozenset[str]] = {
    "<consent>": frozenset({"consent", "state"}),
    "<compare>": frozenset({*SUBJECTS, *COMPARISON_OPS}),
    "<since>": frozenset({"since", *DURATION_OPS}),
}


def parse_duration(text: str) -> timedelta:
    """The one grammar (retention.language.durations); a condition may compare with zero (`gte: 0d`)."""
    return durations.parse_duration(text, positive=False)


@lru_cache(maxsize=4096)
def _parse_time(value: str) -> datetime | None:
    # The same few timestamps (last order, first order…) are read by many leaves on every event.
    try:
        return clock.parse_iso(value)
    except ValueError:
        return None


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        return _parse_time(value)
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- value kinds -------------------------------------------------------------------------------
# A target value is normalised once at parse time into a kind; the fact value is coerced to the
# same kind at evaluation (a numeric trait sent as "5" still compares with 5). No coercion → the
# op is False, never an exception.

_Kind = Literal["num", "bool", "str", "time"]
_NO = object()


def _coerce(value: Any, kind: _Kind) -> Any:
    if kind == "num":
        if _is_number(value):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return _NO
        return _NO
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("true", "false"):
                return lowered == "true"
        return _NO
    if kind == "time":
        parsed = _as_datetime(value)
        return _NO if parsed is None else parsed
    if isinstance(value, str):
        return value
    if _is_number(value):
        return str(value)
    return _NO


def _target(value: Any, *, timestamp: bool) -> tuple[_Kind, Any]:
    if isinstance(value, bool):
        return "bool", value
    if _is_number(value):
        return "num", float(value)
    if timestamp:
        parsed = _as_datetime(value)
        if parsed is None:
            raise ValueError(f"expected an ISO 8601 timestamp, got {value!r}")
        return "time", parsed
    return "str", value


def _equals(value: Any, kind: _Kind, target: Any) -> bool:
    coerced = _coerce(value, kind)
    return coerced is not _NO and coerced == target


Check = Callable[[Any], bool]


def _make_check(op: str, spec: Any, *, timestamp: bool) -> Check:
    if op == "exists":
        wanted = bool(spec)
        return lambda v: (v is not None) is wanted
    if op in ("in", "not_in"):
        targets = tuple(_target(item, timestamp=timestamp) for item in spec)
        kinds = tuple(dict.fromkeys(kind for kind, _ in targets))
        by_kind = {kind: frozenset(t for k, t in targets if k == kind) for kind in kinds}

        def member(v: Any) -> bool:
            if isinstance(v, list | tuple | set | frozenset):
                return any(member(item) for item in v)
            for kind in kinds:
                coerced = _coerce(v, kind)
                if coerced is not _NO and coerced in by_kind[kind]:
                    return True
            return False

        if op == "in":
            return lambda v: v is not None and member(v)
        return lambda v: v is not None and not member(v)
    if op == "contains":
        kind, target = _target(spec, timestamp=False)

        def contains(v: Any) -> bool:
            if isinstance(v, str):
                return isinstance(target, str) and target in v
            if isinstance(v, Mapping):
                return target in v
            if isinstance(v, list | tuple | set | frozenset):
                return any(_equals(item, kind, target) for item in v)
            return False

        return lambda v: v is not None and contains(v)
    kind, target = _target(spec, timestamp=timestamp)
    if op == "eq":
        return lambda v: v is not None and _equals(v, kind, target)
    if op == "ne":
        return lambda v: v is not None and not _equals(v, kind, target)

    def order(v: Any) -> Any:
        if v is None:
            return _NO
        return _coerce(v, kind)

    if op == "gt":
        return lambda v: (c := order(v)) is not _NO and c > target
    if op == "gte":
        return lambda v: (c := order(v)) is not _NO and c >= target
    if op == "lt":
        return lambda v: (c := order(v)) is not _NO and c < target
    return lambda v: (c := order(v)) is not _NO and c <= target


# --- compiled nodes -------------------------------------------------------------------------------
# Validation compiles every condition into a tree of these plain objects; evaluation only touches
# them (pydantic private attributes are slow to read, and this runs on every ingested event).


class Node:
    __slots__ = ()

    def evaluate(self, facts: Facts) -> bool:
        raise NotImplementedError

    def flips(self, facts: Facts, now: datetime, out: list[datetime]) -> None:
        """Append the moments after `now` at which a time-based leaf changes value."""


class _AllNode(Node):
    __slots__ = ("children",)

    def __init__(self, children: tuple[Node, ...]) -> None:
        self.children = children

    def evaluate(self, facts: Facts) -> bool:
        return all(child.evaluate(facts) for child in self.children)

    def flips(self, facts: Facts, now: datetime, out: list[datetime]) -> None:
        for child in self.children:
            child.flips(facts, now, out)


class _AnyNode(_AllNode):
    __slots__ = ()

    def evaluate(self, facts: Facts) -> bool:
        return any(child.evaluate(facts) for child in self.children)


class _NotNode(Node):
    __slots__ = ("child",)

    def __init__(self, child: Node) -> None:
        self.child = child

    def evaluate(self, facts: Facts) -> bool:
        return not self.child.evaluate(facts)

    def flips(self, facts: Facts, now: datetime, out: list[datetime]) -> None:
        self.child.flips(facts, now, out)


class _ConsentNode(Node):
    __slots__ = ("channel", "states")

    def __init__(self, channel: str, states: frozenset[str] | None = None) -> None:
        self.channel = channel
        self.states = states

    def evaluate(self, facts: Facts) -> bool:
        if self.states is not None:
            # what the customer said, not only whether marketing may go: `unknown` (never asked),
            # `pending` (a double opt-in not yet confirmed), `refused`, `granted`
            states = facts.get("consent_state")
            state = states.get(self.channel, "unknown") if isinstance(states, Mapping) else "unknown"
            return state in self.states
        consent = facts.get("consent")
        return isinstance(consent, Mapping) and consent.get(self.channel) is True


class _InSegmentNode(Node):
    __slots__ = ("negate", "segment")

    def __init__(self, segment: str, negate: bool) -> None:
        self.segment = segment
        self.negate = negate

    def evaluate(self, facts: Facts) -> bool:
        member = self.segment in (facts.get("segments") or ())
        return not member if self.negate else member


class _EventNode(Node):
    __slots__ = ("names",)

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def evaluate(self, facts: Facts) -> bool:
        event = facts.get("event")
        return isinstance(event, Mapping) and event.get("name") in self.names


class _CompareNode(Node):
    __slots__ = ("bag", "checks", "name", "path")

    def __init__(self, source: str, name: str, checks: tuple[Check, ...]) -> None:
        self.bag = {"trait": "traits", "kpi": "kpis"}.get(source)
        self.name = name
        self.path: tuple[str | int, ...] = ()
        if source == "property":
            self.path = tuple(int(p) if p.isdigit() else p for p in name.split("."))
        self.checks = checks

    def value(self, facts: Facts) -> Any:
        if self.bag is not None:
            bag = facts.get(self.bag)
            return bag.get(self.name) if type(bag) is dict or isinstance(bag, Mapping) else None
        event = facts.get("event")
        current: Any = event.get("properties") if isinstance(event, Mapping) else None
        for part in self.path:
            if isinstance(current, Mapping):
                current = current.get(part if isinstance(part, str) else str(part))
            elif isinstance(current, list | tuple) and isinstance(part, int):
                current = current[part] if part < len(current) else None
            else:
                return None
        return current

    def evaluate(self, facts: Facts) -> bool:
        value = self.value(facts)
        return all(check(value) for check in self.checks)


class _Ref:
    """A per-customer duration: kpi × times × unit, clamped."""

    __slots__ = ("high", "kpi", "low", "scale")

    def __init__(self, kpi: str, scale: float, low: timedelta | None, high: timedelta | None) -> None:
        self.kpi = kpi
        self.scale = scale
        self.low = low
        self.high = high

    def resolve(self, facts: Facts) -> timedelta | None:
        kpis = facts.get("kpis")
        value = kpis.get(self.kpi) if isinstance(kpis, Mapping) else None
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None
        result = timedelta(seconds=float(value) * self.scale)
        if self.low is not None and result < self.low:
            result = self.low
        if self.high is not None and result > self.high:
            result = self.high
        return result


class _SinceNode(Node):
    __slots__ = ("field", "ops")

    def __init__(self, field: str, ops: tuple[tuple[str, timedelta | _Ref], ...]) -> None:
        self.field = field
        self.ops = ops

    def timestamp(self, facts: Facts) -> datetime | None:
        for bag_name in ("kpis", "traits", "profile"):
            bag = facts.get(bag_name)
            if type(bag) is dict or isinstance(bag, Mapping):  # dict first: the ABC check is the slow path
                value = bag.get(self.field)
                if value is not None:
                    return _as_datetime(value)
        return None

    def _resolved(self, facts: Facts) -> list[tuple[str, timedelta]] | None:
        out: list[tuple[str, timedelta]] = []
        for op, spec in self.ops:
            duration = spec if isinstance(spec, timedelta) else spec.resolve(facts)
            if duration is None:
                return None
            out.append((op, duration))
        return out

    def evaluate(self, facts: Facts) -> bool:
        at = self.timestamp(facts)
        if at is None:
            return False
        ops = self._resolved(facts)
        if ops is None:
            return False
        elapsed = _now(facts) - at
        for op, duration in ops:
            if op == "gt":
                ok = elapsed > duration
            elif op == "gte":
                ok = elapsed >= duration
            elif op == "lt":
                ok = elapsed < duration
            else:
                ok = elapsed <= duration
            if not ok:
                return False
        return True

    def flips(self, facts: Facts, now: datetime, out: list[datetime]) -> None:
        at = self.timestamp(facts)
        if at is None:
            return
        ops = self._resolved(facts)
        if ops is None:
            return
        for op, duration in ops:
            # gt / lte change one tick after the boundary, gte / lt exactly on it.
            moment = at + duration + (_MICROSECOND if op in ("gt", "lte") else _ZERO)
            if moment > now:
                out.append(moment)


_ZERO = timedelta(0)


# --- models -------------------------------------------------------------------------------------


class ConditionBase(BaseModel):
    """Common interface of every condition model; `node` is its compiled evaluator."""

    # defer_build: built at the first validation, not at import (a cold start of a function that never
    # parses a condition, e.g. feedback, does not pay for the ten models; the others pay once, later)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)
    tag: ClassVar[str] = ""
    _node: Node = PrivateAttr(default_factory=Node)

    @property
    def node(self) -> Node:
        return self._node

    def evaluate(self, facts: Facts) -> bool:
        return self._node.evaluate(facts)

    def flip_times(self, facts: Facts, now: datetime) -> list[datetime]:
        """Moments after `now` at which a time-based leaf changes value, with no new event."""
        out: list[datetime] = []
        self._node.flips(facts, now, out)
        return out

    def children(self) -> tuple[ConditionBase, ...]:
        return ()

    def walk(self) -> Iterator[ConditionBase]:
        yield self
        for child in self.children():
            yield from child.walk()

    def to_data(self) -> dict[str, Any]:
        """The YAML/JSON form (round-trips through `parse_condition`)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class AllCondition(ConditionBase):
    tag: ClassVar[str] = "<all>"
    all_: list[Condition] = Field(alias="all")

    def model_post_init(self, context: Any, /) -> None:
        self._node = _AllNode(tuple(c.node for c in self.all_))

    def children(self) -> tuple[ConditionBase, ...]:
        return tuple(self.all_)


class AnyCondition(ConditionBase):
    tag: ClassVar[str] = "<any>"
    any_: list[Condition] = Field(alias="any")

    def model_post_init(self, context: Any, /) -> None:
        self._node = _AnyNode(tuple(c.node for c in self.any_))

    def children(self) -> tuple[ConditionBase, ...]:
        return tuple(self.any_)


class NotCondition(ConditionBase):
    tag: ClassVar[str] = "<not>"
    not_: Condition = Field(alias="not")

    def model_post_init(self, context: Any, /) -> None:
        self._node = _NotNode(self.not_.node)

    def children(self) -> tuple[ConditionBase, ...]:
        return (self.not_,)


CONSENT_STATES = ("granted", "pending", "refused", "unknown")
ConsentState = Literal["granted", "pending", "refused", "unknown"]


def _state_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class ConsentCondition(ConditionBase):
    """`{consent: email}`: marketing email may be sent. `{consent: email, state: [unknown, pending]}`: what
    the customer said about it (never asked, an unconfirmed double opt-in, refused, granted)."""

    tag: ClassVar[str] = "<consent>"
    consent: Literal["email", "sms"]
    state: Annotated[list[ConsentState] | None, BeforeValidator(_state_list)] = Field(default=None, min_length=1)

    def model_post_init(self, context: Any, /) -> None:
        self._node = _ConsentNode(self.consent, frozenset(self.state) if self.state is not None else None)


_SEGMENT_REF_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*(/[a-z0-9][a-z0-9_\-]*)?$")


def _check_segment_ref(value: str, key: str) -> None:
    if not _SEGMENT_REF_RE.match(value):
        raise LocatedError(f"invalid segment reference {value!r}: expected 'id' or 'group/id' (lowercase)", (key,))


class InSegmentCondition(ConditionBase):
    tag: ClassVar[str] = "<in_segment>"
    in_segment: str

    @model_validator(mode="after")
    def _compile(self) -> InSegmentCondition:
        _check_segment_ref(self.in_segment, "in_segment")
        self._node = _InSegmentNode(self.in_segment, negate=False)
        return self


class NotInSegmentCondition(ConditionBase):
    tag: ClassVar[str] = "<not_in_segment>"
    not_in_segment: str

    @model_validator(mode="after")
    def _compile(self) -> NotInSegmentCondition:
        _check_segment_ref(self.not_in_segment, "not_in_segment")
        self._node = _InSegmentNode(self.not_in_segment, negate=True)
        return self


class EventCondition(ConditionBase):
    tag: ClassVar[str] = "<event>"
    event: str = Field(min_length=1)

    def model_post_init(self, context: Any, /) -> None:
        self._node = _EventNode(frozenset({self.event}))


class EventInCondition(ConditionBase):
    tag: ClassVar[str] = "<event_in>"
    event_in: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)

    def model_post_init(self, context: Any, /) -> None:
        self._node = _EventNode(frozenset(self.event_in))


Scalar: TypeAlias = bool | int | float | str


class CompareCondition(ConditionBase):
    """`{trait|kpi|property: name, <op>: value, …}`: every op must hold."""

    tag: ClassVar[str] = "<compare>"
    trait: str | None = None
    kpi: str | None = None
    property: str | None = None
    eq: Scalar | None = None
    ne: Scalar | None = None
    gt: Scalar | None = None
    gte: Scalar | None = None
    lt: Scalar | None = None
    lte: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    not_in: list[Scalar] | None = None
    exists: bool | None = None
    contains: Scalar | None = None

    def ops(self) -> dict[str, Any]:
        """The operators given, by their YAML names."""
        out = {op: getattr(self, "in_" if op == "in" else op) for op in COMPARISON_OPS}
        return {op: value for op, value in out.items() if value is not None}

    def subject(self) -> tuple[str, str]:
        """(trait | kpi | property, name)."""
        for source in SUBJECTS:
            name = getattr(self, source)
            if name is not None:
                return source, name
        return "trait", ""

    @model_validator(mode="after")
    def _compile(self) -> CompareCondition:
        subjects = [s for s in SUBJECTS if getattr(self, s) is not None]
        if len(subjects) != 1:
            raise LocatedError("a comparison names exactly one of trait, kpi, property")
        source = subjects[0]
        name = getattr(self, source)
        if not name:
            raise LocatedError(f"empty {source} name", (source,))
        ops = self.ops()
        if not ops:
            raise LocatedError(f"a {source} comparison needs an operator: {', '.join(COMPARISON_OPS)}")
        timestamp = False
        if source == "kpi":
            if name not in KNOWN_KPIS:
                raise LocatedError(f"unknown kpi {name!r} (known: {', '.join(sorted(KNOWN_KPIS))})", ("kpi",))
            timestamp = name in TIMESTAMP_KPIS
            for op, value in ops.items():
                if op == "exists":
                    continue
                if op == "contains":
                    raise LocatedError(f"'contains' does not apply to kpi {name!r}", (op,))
                for item in value if op in ("in", "not_in") else [value]:
                    if timestamp:
                        if _as_datetime(item) is None or isinstance(item, bool):
                            raise LocatedError(
                                f"kpi {name!r} is a timestamp: expected an ISO 8601 string, got {item!r}",
                                (op,),
                            )
                    elif not _is_number(item):
                        raise LocatedError(f"kpi {name!r} is a number: got {item!r}", (op,))
        else:
            for op in ("gt", "gte", "lt", "lte"):
                if isinstance(ops.get(op), bool):
                    raise LocatedError(f"'{op}' needs a number or a string, got {ops[op]!r}", (op,))
        checks = tuple(_make_check(op, value, timestamp=timestamp) for op, value in ops.items())
        self._node = _CompareNode(source, name, checks)
        return self


class DurationRef(BaseModel):
    """`{kpi: average_days_between_orders, times: 1.5, unit: d, min: 14d}`: a per-customer duration."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    kpi: str
    times: float = Field(default=1.0, gt=0)
    unit: Literal["s", "m", "h", "d", "w", "mo", "y"] = "d"
    min: str | None = None
    max: str | None = None

    _ref: _Ref = PrivateAttr()

    @model_validator(mode="after")
    def _compile(self) -> DurationRef:
        if self.kpi not in NUMERIC_KPIS:
            raise LocatedError(f"kpi {self.kpi!r} is not a known numeric kpi", ("kpi",))
        bounds: dict[str, timedelta | None] = {"min": None, "max": None}
        for bound in bounds:
            text = getattr(self, bound)
            if text is not None:
                try:
                    bounds[bound] = parse_duration(text)
                except ValueError as exc:
                    raise LocatedError(str(exc), (bound,)) from None
        self._ref = _Ref(self.kpi, self.times * durations.UNIT_SECONDS[self.unit], bounds["min"], bounds["max"])
        return self

    def resolve(self, facts: Facts) -> timedelta | None:
        return self._ref.resolve(facts)


def _check_duration_spec(value: Any) -> Any:
    if isinstance(value, str | Mapping | DurationRef):
        return value
    raise ValueError(f"expected {_DURATION_HINT}, or {{kpi: name, times: n, unit: d}}; got {value!r}")


def _duration_kind(value: Any) -> str:
    return "<duration>" if isinstance(value, str) else "<ref>"


DurationSpec: TypeAlias = Annotated[
    Annotated[str, Tag("<duration>")] | Annotated[DurationRef, Tag("<ref>")],
    Discriminator(_duration_kind),
    BeforeValidator(_check_duration_spec),
]


class SinceCondition(ConditionBase):
    """`{since: last_order_at, gte: 180d}`: time elapsed since a timestamp fact."""

    tag: ClassVar[str] = "<since>"
    since: str = Field(min_length=1)
    gt: DurationSpec | None = None
    gte: DurationSpec | None = None
    lt: DurationSpec | None = None
    lte: DurationSpec | None = None

    def durations(self) -> dict[str, str | DurationRef]:
        """The operators given, by their YAML names."""
        out = {op: getattr(self, op) for op in DURATION_OPS}
        return {op: spec for op, spec in out.items() if spec is not None}

    @model_validator(mode="after")
    def _compile(self) -> SinceCondition:
        if self.since in NUMERIC_KPIS:
            raise LocatedError(f"kpi {self.since!r} is a number, not a timestamp", ("since",))
        ops: list[tuple[str, timedelta | _Ref]] = []
        for op, spec in self.durations().items():
            if isinstance(spec, str):
                try:
                    ops.append((op, parse_duration(spec)))
                except ValueError as exc:
                    raise LocatedError(str(exc), (op,)) from None
            else:
                ops.append((op, spec._ref))
        if not ops:
            raise LocatedError(f"'since' needs one of {', '.join(DURATION_OPS)} with {_DURATION_HINT}")
        self._node = _SinceNode(self.since, tuple(ops))
        return self


def _now(facts: Facts) -> datetime:
    now = facts.get("now")
    return now if isinstance(now, datetime) else clock.now()


# --- the union ------------------------------------------------------------------------------------

_MODELS: tuple[type[ConditionBase], ...] = (
    AllCondition,
    AnyCondition,
    NotCondition,
    ConsentCondition,
    InSegmentCondition,
    NotInSegmentCondition,
    EventCondition,
    EventInCondition,
    CompareCondition,
    SinceCondition,
)


def _discriminate(value: Any) -> str | None:
    if isinstance(value, ConditionBase):
        return value.tag
    if isinstance(value, Mapping):
        for key in value:
            tag = _OPERATOR_TAGS.get(key)
            if tag is not None:
                return tag
    return None


def _precheck(value: Any) -> Any:
    """Clear messages for the shape errors a tagged union would report cryptically."""
    if isinstance(value, ConditionBase):
        return value
    if not isinstance(value, Mapping):
        raise LocatedError(f"a condition is a mapping with one operator ({_OPERATOR_LIST}), got {type(value).__name__}")
    if not value:
        raise LocatedError(f"empty condition: expected one operator ({_OPERATOR_LIST})")
    tags = {_OPERATOR_TAGS[key] for key in value if key in _OPERATOR_TAGS}
    if not tags:
        unknown = next(iter(value))
        raise LocatedError(f"unknown operator {unknown!r} (expected one of: {_OPERATOR_LIST})", (unknown,))
    if len(tags) > 1:
        keys = [key for key in value if key in _OPERATOR_TAGS]
        raise LocatedError(
            "a condition has exactly one operator, got " + " and ".join(repr(k) for k in keys), (keys[-1],)
        )
    tag = next(iter(tags))
    allowed = _ALLOWED_KEYS.get(tag)
    if allowed is not None:
        for key in value:
            if key not in allowed:
                expected = ", ".join(DURATION_OPS if tag == "<since>" else ("state",) if tag == "<consent>"
                                     else COMPARISON_OPS)
                raise LocatedError(f"unknown operator {key!r} (expected one of: {expected})", (key,))
    else:
        for key in value:
            if key not in _OPERATOR_TAGS:
                raise LocatedError(f"unknown key {key!r} next to operator", (key,))
    return value


Condition = Annotated[
    Annotated[AllCondition, Tag("<all>")]
    | Annotated[AnyCondition, Tag("<any>")]
    | Annotated[NotCondition, Tag("<not>")]
    | Annotated[ConsentCondition, Tag("<consent>")]
    | Annotated[InSegmentCondition, Tag("<in_segment>")]
    | Annotated[NotInSegmentCondition, Tag("<not_in_segment>")]
    | Annotated[EventCondition, Tag("<event>")]
    | Annotated[EventInCondition, Tag("<event_in>")]
    | Annotated[CompareCondition, Tag("<compare>")]
    | Annotated[SinceCondition, Tag("<since>")],
    Discriminator(_discriminate),
    BeforeValidator(_precheck),
]
"""A parsed condition node; use it as a pydantic field type (`when: Condition`)."""


@lru_cache(maxsize=1)
def _adapter() -> TypeAdapter[ConditionBase]:
    """Built at the first parse (the recursive models resolve `Condition` then, from this module)."""
    return TypeAdapter(Condition)  # type: ignore[arg-type]


# --- API --------------------------------------------------------------------------------------------


def parse_condition(obj: Any, source: str = "condition") -> ConditionBase:
    """Validate a condition mapping. Errors → `retention.core.errors.ValidationError` naming the path."""
    try:
        return _adapter().validate_python(obj)
    except PydanticValidationError as exc:
        raise ValidationError(format_validation_error(exc, LineMap.from_data(obj), source)) from exc


def evaluate(cond: ConditionBase, facts: Facts) -> bool:
    """True when `cond` holds for `facts`.

    facts: {"traits": {…}, "kpis": {…}, "consent": {"email": bool, "sms": bool},
    "segments": set of ids (and `group/id`), "now": aware datetime, optionally
    "event": {"name", "properties", "timestamp"} and "profile": {"created_at", "first_seen_at", …}}.
    """
    return cond.evaluate(facts)


def next_change_at(cond: ConditionBase, facts: Facts) -> datetime | None:
    """Earliest moment after `facts["now"]` when a `since` leaf flips with no new event.

    Conservative: the minimum over every `since` leaf, whether or not that flip changes the
    whole condition. None when nothing time-based can change.
    """
    return min(cond.flip_times(facts, _now(facts)), default=None)


def referenced_segments(cond: ConditionBase) -> set[str]:
    """Segment ids used by `in_segment` / `not_in_segment` (as written: `id` or `group/id`)."""
    out: set[str] = set()
    for node in cond.walk():
        if isinstance(node, InSegmentCondition):
            out.add(node.in_segment)
        elif isinstance(node, NotInSegmentCondition):
            out.add(node.not_in_segment)
    return out


def referenced_fields(cond: ConditionBase) -> set[tuple[str, str]]:
    """The facts a condition reads, as (kind, name): kind ∈ trait, kpi, property, since, consent,
    segment, event (name = the event name)."""
    out: set[tuple[str, str]] = set()
    for node in cond.walk():
        if isinstance(node, CompareCondition):
            out.add(node.subject())
        elif isinstance(node, SinceCondition):
            out.add(("since", node.since))
            for spec in node.durations().values():
                if isinstance(spec, DurationRef):
                    out.add(("kpi", spec.kpi))
        elif isinstance(node, ConsentCondition):
            out.add(("consent", node.consent))
        elif isinstance(node, InSegmentCondition):
            out.add(("segment", node.in_segment))
        elif isinstance(node, NotInSegmentCondition):
            out.add(("segment", node.not_in_segment))
        elif isinstance(node, EventCondition):
            out.add(("event", node.event))
        elif isinstance(node, EventInCondition):
            out.update(("event", name) for name in node.event_in)
    return out


def segment_reference_paths(cond: ConditionBase, base: Path = ()) -> list[tuple[str, Path]]:
    """(segment reference, document path of its key) for every in_segment / not_in_segment leaf."""
    out: list[tuple[str, Path]] = []
    if isinstance(cond, InSegmentCondition):
        out.append((cond.in_segment, (*base, "in_segment")))
    elif isinstance(cond, NotInSegmentCondition):
        out.append((cond.not_in_segment, (*base, "not_in_segment")))
    elif isinstance(cond, AllCondition):
        for i, child in enumerate(cond.all_):
            out.extend(segment_reference_paths(child, (*base, "all", i)))
    elif isinstance(cond, AnyCondition):
        for i, child in enumerate(cond.any_):
            out.extend(segment_reference_paths(child, (*base, "any", i)))
    elif isinstance(cond, NotCondition):
        out.extend(segment_reference_paths(cond.not_, (*base, "not")))
    return out
