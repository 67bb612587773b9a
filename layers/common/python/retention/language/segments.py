"""Segment definitions as data (YAML → pydantic) and their evaluation on a customer's facts.

A group is one YAML document:

    group: lifecycle              # id, lowercase
    mode: exclusive               # exclusive: at most one member (first match by ascending
                                  #   priority, else `default`); multi: any number
    default: neutral              # exclusive only, required; `null` = zero-or-one group
    version: 1                    # optional, informational
    segments:
      - id: loyal
        title: Loyal              # optional, like description
        priority: 60              # exclusive groups: unique, required for rule segments
        when: {kpi: orders_count, gte: 3}     # a retention.language.conditions condition
        manual_only: false        # true: never entered by rules, only by a manual assignment
        keep_while: {...}         # optional: a manual assignment ends when this stops holding

Segment ids are unique inside a group. The same id may exist in two groups (the contract has
NPS `passive` and potential `passive`); `in_segment` then has to say `group/id`. The membership
set seen by conditions holds both `id` and `group/id` for every membership (`membership_set`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path as FsPath
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from retention.core import clock
from retention.core.errors import ValidationError
from retention.core.yamlio import SCENARIOS_ENV as SCENARIOS_ENV  # re-exported: callers set it by this name
from retention.core.yamlio import (
    LineMap,
    LocatedError,
    Path,
    load_yaml_documents,
    located,
    scenario_texts,
    scenarios_dir,
    validation_messages,
)
from retention.language.conditions import Condition, ConditionBase, Facts, Node, segment_reference_paths
from retention.language.graph import find_cycle, topological

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


def _check_id(value: str, what: str, path: Path) -> None:
    if not _ID_RE.match(value):
        raise LocatedError(f"invalid {what} {value!r}: lowercase letters, digits, '_' and '-'", path)


class SegmentDef(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    id: str
    title: str | None = None
    description: str | None = None
    priority: int | None = None
    when: Condition | None = None
    manual_only: bool = False
    keep_while: Condition | None = None

    @model_validator(mode="after")
    def _check(self) -> SegmentDef:
        _check_id(self.id, "segment id", ("id",))
        if self.manual_only and self.when is not None:
            raise LocatedError("a manual_only segment has no 'when'", ("when",))
        return self

    def conditions(self) -> list[tuple[str, ConditionBase]]:
        out: list[tuple[str, ConditionBase]] = []
        if self.when is not None:
            out.append(("when", self.when))
        if self.keep_while is not None:
            out.append(("keep_while", self.keep_while))
        return out


class SegmentGroup(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    group: str
    mode: Literal["exclusive", "multi"]
    default: str | None = None
    title: str | None = None
    description: str | None = None
    version: int | str | None = None
    segments: list[SegmentDef] = Field(min_length=1)

    _by_id: dict[str, SegmentDef] = PrivateAttr(default_factory=dict)
    _index: dict[str, int] = PrivateAttr(default_factory=dict)
    # Segments matched by rules, in evaluation order (exclusive: priority; multi: dependencies).
    _rules: tuple[SegmentDef, ...] = PrivateAttr(default=())
    _source: str = PrivateAttr(default="")
    _linemap: LineMap | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> SegmentGroup:
        _check_id(self.group, "group id", ("group",))
        index: dict[str, int] = {}
        for i, seg in enumerate(self.segments):
            if seg.id in index:
                raise LocatedError(
                    f"duplicate segment id {seg.id!r} (also segments[{index[seg.id]}])", ("segments", i, "id")
                )
            index[seg.id] = i
        exclusive = self.mode == "exclusive"
        if exclusive and "default" not in self.model_fields_set:
            raise LocatedError(
                "an exclusive group needs 'default': the segment for customers no rule matches, "
                "or null for a zero-or-one group",
                ("mode",),
            )
        if not exclusive and self.default is not None:
            raise LocatedError("'default' only applies to exclusive groups", ("default",))
        if self.default is not None and self.default not in index:
            raise LocatedError(f"default {self.default!r} is not a segment of this group", ("default",))
        priorities: dict[int, int] = {}
        for i, seg in enumerate(self.segments):
            if seg.when is None and not seg.manual_only and seg.id != self.default:
                raise LocatedError(f"segment {seg.id!r} needs 'when' (or manual_only: true)", ("segments", i))
            if not exclusive:
                if seg.priority is not None:
                    raise LocatedError("'priority' only applies to exclusive groups", ("segments", i, "priority"))
                continue
            if seg.when is None:
                continue
            if seg.priority is None:
                raise LocatedError(
                    f"segment {seg.id!r} needs a 'priority' in an exclusive group (lower matches first)",
                    ("segments", i),
                )
            if seg.priority in priorities:
                other = self.segments[priorities[seg.priority]].id
                raise LocatedError(
                    f"duplicate priority {seg.priority} (also {other!r}): their order is undefined",
                    ("segments", i, "priority"),
                )
            priorities[seg.priority] = i
        self._index = index
        self._by_id = {seg.id: seg for seg in self.segments}
        rules = [seg for seg in self.segments if seg.when is not None]
        if exclusive:
            rules.sort(key=lambda seg: seg.priority or 0)
        self._rules = tuple(rules)
        return self

    @property
    def exclusive(self) -> bool:
        return self.mode == "exclusive"

    @property
    def source(self) -> str:
        return self._source or f"segment group {self.group!r}"

    @property
    def linemap(self) -> LineMap | None:
        return self._linemap

    def segment(self, segment_id: str) -> SegmentDef | None:
        return self._by_id.get(segment_id)

    def segment_ids(self) -> list[str]:
        return [seg.id for seg in self.segments]

    def to_data(self) -> dict[str, Any]:
        """The YAML/JSON document form (what gets stored; round-trips through `load_groups`)."""
        data = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        if self.exclusive:
            data["default"] = self.default
        for seg in data["segments"]:
            if not seg.get("manual_only"):
                seg.pop("manual_only", None)
        return data


# --- cross-group validation -----------------------------------------------------------------------


def resolve_reference(groups: Iterable[SegmentGroup], ref: str) -> tuple[str, str]:
    """`id` or `group/id` → (group, id). ValueError when unknown or ambiguous."""
    groups = list(groups)
    if "/" in ref:
        group_id, _, seg_id = ref.partition("/")
        for group in groups:
            if group.group == group_id:
                if group.segment(seg_id) is None:
                    raise ValueError(f"unknown segment {ref!r}: group {group_id!r} has no segment {seg_id!r}")
                return group_id, seg_id
        raise ValueError(f"unknown segment {ref!r}: no group {group_id!r}")
    owners = [group.group for group in groups if group.segment(ref) is not None]
    if not owners:
        raise ValueError(f"unknown segment {ref!r}")
    if len(owners) > 1:
        raise ValueError(
            f"ambiguous segment {ref!r} (in {', '.join(owners)}): write " + " or ".join(f"'{g}/{ref}'" for g in owners)
        )
    return owners[0], ref


@dataclass
class _Ref:
    group: SegmentGroup
    segment: str
    path: Path
    target: tuple[str, str]


def validate_groups(groups: Sequence[SegmentGroup]) -> list[SegmentGroup]:
    """Cross-group checks; returns the groups in evaluation (dependency) order.

    Rejects duplicate group ids, unknown or ambiguous `in_segment` references, an exclusive
    segment referring to its own group, and cycles between segments or between groups.
    Raises `retention.core.errors.ValidationError` with one `file:line: path: message` per problem.
    """
    errors: list[str] = []
    by_id: dict[str, SegmentGroup] = {}
    for group in groups:
        if group.group in by_id:
            first = by_id[group.group]
            errors.append(
                located(
                    group.source,
                    group.linemap,
                    ("group",),
                    f"duplicate group {group.group!r} (also in {first.source})",
                )
            )
        else:
            by_id[group.group] = group
    unique = list(by_id.values())
    refs: list[_Ref] = []
    for group in unique:
        for i, seg in enumerate(group.segments):
            for key, cond in seg.conditions():
                for name, path in segment_reference_paths(cond, ("segments", i, key)):
                    try:
                        target = resolve_reference(unique, name)
                    except ValueError as exc:
                        errors.append(located(group.source, group.linemap, path, str(exc)))
                        continue
                    if target[0] == group.group and group.exclusive:
                        errors.append(
                            located(
                                group.source,
                                group.linemap,
                                path,
                                f"{name!r} is in the same exclusive group: a customer is in only one of them",
                            )
                        )
                        continue
                    refs.append(_Ref(group, seg.id, path, target))
    if errors:
        raise ValidationError("\n".join(errors))

    seg_graph: dict[tuple[str, str], list[tuple[str, str]]] = {}
    first_ref: dict[tuple[tuple[str, str], tuple[str, str]], _Ref] = {}
    for ref in refs:
        edge = ((ref.group.group, ref.segment), ref.target)
        seg_graph.setdefault(edge[0], []).append(ref.target)
        first_ref.setdefault(edge, ref)
    seg_order = [(g.group, s.id) for g in unique for s in g.segments]
    cycle = find_cycle(seg_graph, seg_order)
    if cycle:
        ref = first_ref[(cycle[0], cycle[1])]
        chain = " -> ".join(f"{g}/{s}" for g, s in cycle)
        raise ValidationError(
            located(ref.group.source, ref.group.linemap, ref.path, f"cycle between segments: {chain}")
        )

    group_deps: dict[str, list[str]] = {}
    group_ref: dict[tuple[str, str], _Ref] = {}
    for ref in refs:
        if ref.target[0] != ref.group.group:
            group_deps.setdefault(ref.group.group, []).append(ref.target[0])
            group_ref.setdefault((ref.group.group, ref.target[0]), ref)
    names = [g.group for g in unique]
    cycle = find_cycle(group_deps, names)
    if cycle:
        ref = group_ref[(cycle[0], cycle[1])]
        raise ValidationError(
            located(
                ref.group.source,
                ref.group.linemap,
                ref.path,
                "cycle between groups: " + " -> ".join(cycle) + " (a group is evaluated after the groups it refers to)",
            )
        )
    # Multi groups: a segment referring to a sibling is evaluated after it.
    for group in unique:
        if group.exclusive:
            continue
        local: dict[str, list[str]] = {}
        for ref in refs:
            if ref.group is group and ref.target[0] == group.group:
                local.setdefault(ref.segment, []).append(ref.target[1])
        if local:
            ids = [seg.id for seg in group._rules]
            ordered = topological(ids, local)
            group._rules = tuple(group._by_id[s] for s in ordered)
    return [by_id[name] for name in topological(names, group_deps)]


# --- loading ---------------------------------------------------------------------------------------


def parse_group(data: Any, source: str, linemap: LineMap | None = None) -> SegmentGroup:
    """One group document → a validated `SegmentGroup` (no cross-group checks)."""
    lines = linemap if linemap is not None else LineMap.from_data(data)
    try:
        group = SegmentGroup.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationError("\n".join(validation_messages(exc, lines, source))) from exc
    group._source = source
    group._linemap = linemap
    return group


GroupSource = str | Mapping[str, Any] | Sequence[Mapping[str, Any]]


def load_groups(texts: Mapping[str, GroupSource]) -> list[SegmentGroup]:
    """Validate a whole segment library, in dependency order.

    `texts` maps a source name (a file path, or a config key such as `SEGDEF#lifecycle`) to YAML
    text (one group per document, `---` between several), a group dict, or a list of group dicts
    (what DynamoDB gives back). Every problem is reported at once, each as `source:line: path:
    message`, in one `retention.core.errors.ValidationError`.
    """
    errors: list[str] = []
    groups: list[SegmentGroup] = []
    for source, content in texts.items():
        documents: list[tuple[Any, LineMap | None]]
        if isinstance(content, str):
            try:
                documents = list(load_yaml_documents(content, source))
            except ValidationError as exc:
                errors.append(exc.message)
                continue
        elif isinstance(content, Mapping):
            documents = [(content, None)]
        else:
            documents = [(item, None) for item in content]
        for data, linemap in documents:
            try:
                groups.append(parse_group(data, source, linemap))
            except ValidationError as exc:
                errors.append(exc.message)
    if errors:
        raise ValidationError("\n".join(errors))
    return validate_groups(groups)


def segment_texts(directory: FsPath | None = None) -> dict[str, str]:
    """{display path: YAML text} of `<scenarios>/segments/*.yaml`, sorted by file name."""
    return scenario_texts("segments", directory)


@lru_cache(maxsize=4)
def _default_groups(directory: str) -> tuple[SegmentGroup, ...]:
    return tuple(load_groups(segment_texts(FsPath(directory))))


def default_groups() -> list[SegmentGroup]:
    """The library in scenarios/segments/ (cached per directory; treat the groups as read-only)."""
    return list(_default_groups(str(scenarios_dir())))


# --- evaluation ----------------------------------------------------------------------------------


@dataclass
class Evaluation:
    memberships: dict[str, list[str]]
    """group → segment ids (exclusive groups: zero or one)."""
    next_change_at: datetime | None
    """Earliest moment a membership may change with no new event (one due item per customer)."""
    manual: dict[str, dict[str, str]] = field(default_factory=dict)
    """group → {segment: reason} for memberships held by a manual assignment."""
    expired_manual: list[tuple[str, str]] = field(default_factory=list)
    """(group, segment) of manual assignments no longer in force (expired, `keep_while` failed, or
    naming a segment that no longer exists): the caller deletes them."""

    def segment(self, group: str) -> str | None:
        members = self.memberships.get(group) or []
        return members[0] if members else None

    def membership_set(self) -> set[str]:
        return membership_set(self.memberships)


@dataclass(frozen=True)
class Transition:
    group: str
    segment: str
    kind: Literal["entered", "exited"]
    at: datetime
    reason: str
    manual: bool = False

    @property
    def event_name(self) -> str:
        """The internal event: `Segment Entered` / `Segment Exited`."""
        return "Segment Entered" if self.kind == "entered" else "Segment Exited"

    def properties(self) -> dict[str, Any]:
        return {"group": self.group, "segment": self.segment, "reason": self.reason, "manual": self.manual}


def membership_set(memberships: Mapping[str, Any]) -> set[str]:
    """Flat set for `facts["segments"]`: every `id` and `group/id`.

    Accepts `{group: [ids]}` (an Evaluation) or the profile form `{group: {id: {...}}}`.
    """
    out: set[str] = set()
    for group, members in memberships.items():
        for seg in members:
            out.add(seg)
            out.add(f"{group}/{seg}")
    return out


def summarize(current: Mapping[str, Mapping[str, Any]], groups: Sequence[SegmentGroup]) -> dict[str, Any]:
    """Profile segments → `{group: id | None}` for exclusive groups, `{group: [ids]}` for multi
    (the admin API's `segments` shape: lifecycle, flags, nps_group, potential, …)."""
    out: dict[str, Any] = {}
    for group in groups:
        members = sorted(current.get(group.group) or {})
        out[group.group] = (members[0] if members else None) if group.exclusive else members
    return out


class _GroupPlan:
    """A validated group reduced to plain objects for the hot path (pydantic private attributes
    are slow to read, and evaluation runs on every ingested event)."""

    __slots__ = ("default", "exclusive", "ids", "index", "keep", "name", "rules")

    def __init__(self, group: SegmentGroup) -> None:
        self.name = group.group
        self.exclusive = group.exclusive
        self.default = group.default
        self.rules: tuple[tuple[str, Node], ...] = tuple(
            (seg.id, seg.when.node) for seg in group._rules if seg.when is not None
        )
        self.keep: dict[str, Node | None] = {
            seg.id: seg.keep_while.node if seg.keep_while is not None else None for seg in group.segments
        }
        self.index = dict(group._index)
        self.ids = frozenset({*self.index, *(f"{self.name}/{s}" for s in self.index)})


_PLAN_CACHE: dict[tuple[int, ...], tuple[tuple[SegmentGroup, ...], tuple[_GroupPlan, ...], frozenset[str]]] = {}


def _plan(groups: Sequence[SegmentGroup]) -> tuple[tuple[_GroupPlan, ...], frozenset[str]]:
    key = tuple(id(g) for g in groups)
    hit = _PLAN_CACHE.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], groups, strict=True)):
        return hit[1], hit[2]
    plans = tuple(_GroupPlan(g) for g in validate_groups(groups))
    ids = frozenset().union(*(p.ids for p in plans))
    if len(_PLAN_CACHE) >= 16:
        _PLAN_CACHE.clear()
    _PLAN_CACHE[key] = (tuple(groups), plans, ids)
    return plans, ids


ManualAssignments = Mapping[str, Any]


def _assignments(manual: ManualAssignments | None, group: str) -> list[Mapping[str, Any]]:
    if not manual:
        return []
    entry = manual.get(group)
    if entry is None:
        return []
    if isinstance(entry, Mapping):
        return [entry]
    return [item for item in entry if isinstance(item, Mapping)]


def _until(value: Any) -> datetime | None:
    """An assignment's expiry; an unreadable one counts as already expired."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        return clock.parse_iso(str(value))
    except ValueError:
        return None


def evaluate(
    groups: Sequence[SegmentGroup],
    facts: Facts,
    manual: ManualAssignments | None = None,
    now: datetime | None = None,
) -> Evaluation:
    """Memberships of every group for `facts`, groups in dependency order.

    manual: `{group: {"segment": id, "reason": str, "until": iso | None}}` (a list of such
    entries for multi groups). An assignment in force wins over the rules (exclusive: it is
    the member; multi: it is added) until `until` passes or the segment's `keep_while` stops
    holding. `facts["segments"]` memberships of the evaluated groups are replaced by the fresh
    ones as evaluation proceeds, so a later group sees this evaluation's result.
    """
    plans, evaluated_ids = _plan(groups)
    fact_now = facts.get("now")
    at = now or (fact_now if isinstance(fact_now, datetime) else None) or clock.now()
    working = {s for s in (facts.get("segments") or ()) if s not in evaluated_ids}
    scope = dict(facts)
    scope["now"] = at
    scope["segments"] = working

    memberships: dict[str, list[str]] = {}
    manual_out: dict[str, dict[str, str]] = {}
    expired: list[tuple[str, str]] = []
    flips: list[datetime] = []

    for plan in plans:
        name = plan.name
        in_force: list[tuple[str, str]] = []
        for assignment in _assignments(manual, name):
            seg_id = str(assignment.get("segment") or "")
            if seg_id not in plan.index:
                expired.append((name, seg_id))
                continue
            until_raw = assignment.get("until")
            if until_raw:
                until = _until(until_raw)
                if until is None or until <= at:
                    expired.append((name, seg_id))
                    continue
                flips.append(until)
            keep = plan.keep[seg_id]
            if keep is not None:
                if not keep.evaluate(scope):
                    expired.append((name, seg_id))
                    continue
                keep.flips(scope, at, flips)
            if all(seg_id != s for s, _ in in_force):
                in_force.append((seg_id, str(assignment.get("reason") or "manual")))

        members: list[str] = []
        if plan.exclusive:
            if in_force:
                members.append(in_force[0][0])
                manual_out[name] = {in_force[0][0]: in_force[0][1]}
            else:
                for seg_id, node in plan.rules:
                    # Only segments up to the match can change the result while it holds.
                    node.flips(scope, at, flips)
                    if node.evaluate(scope):
                        members.append(seg_id)
                        break
                else:
                    if plan.default is not None:
                        members.append(plan.default)
            for seg_id in members:
                working.add(seg_id)
                working.add(f"{name}/{seg_id}")
        else:
            for seg_id, reason in in_force:
                members.append(seg_id)
                manual_out.setdefault(name, {})[seg_id] = reason
                working.add(seg_id)
                working.add(f"{name}/{seg_id}")
            for seg_id, node in plan.rules:
                node.flips(scope, at, flips)
                if seg_id not in members and node.evaluate(scope):
                    members.append(seg_id)
                    working.add(seg_id)
                    working.add(f"{name}/{seg_id}")
            if len(members) > 1:
                members.sort(key=plan.index.__getitem__)
        memberships[name] = members

    return Evaluation(
        memberships=memberships,
        next_change_at=min(flips, default=None),
        manual=manual_out,
        expired_manual=expired,
    )


def apply_evaluation(
    current: dict[str, dict[str, dict[str, Any]]], evaluation: Evaluation, now: datetime, reason: str
) -> list[Transition]:
    """Update the profile's `{group: {segment: {"since": iso, "manual": bool}}}` in place.

    Returns the transitions (exits before entries, groups in evaluation order); only the groups
    in the evaluation are touched. A manual entry carries the assignment's reason. Empty groups
    are removed from `current`.
    """
    at = clock.iso(now)
    transitions: list[Transition] = []
    for group, members in evaluation.memberships.items():
        held = current.get(group) or {}
        manual = evaluation.manual.get(group, {})
        wanted = set(members)
        for seg_id in [s for s in held if s not in wanted]:
            was_manual = bool(held[seg_id].get("manual"))
            del held[seg_id]
            transitions.append(Transition(group, seg_id, "exited", now, reason, was_manual))
        for seg_id in members:
            is_manual = seg_id in manual
            if seg_id in held:
                held[seg_id]["manual"] = is_manual
                continue
            held[seg_id] = {"since": at, "manual": is_manual}
            transitions.append(
                Transition(group, seg_id, "entered", now, manual[seg_id] if is_manual else reason, is_manual)
            )
        if held:
            current[group] = held
        else:
            current.pop(group, None)
    return transitions
