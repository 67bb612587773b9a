"""The segments page's condition builder: rows of field / operator / value, joined by all or any, turned
into the rule language's condition (retention.language.conditions), which the count preview checks and
counts like a typed one. Pure: no AWS, no request.

Fields: a KPI (numbers compared; timestamps as time since, e.g. 30d), a trait, consent (email, SMS) and
segment membership. What the builder cannot say (nested any/all, properties, events) is typed as YAML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retention.customers.kpis import KPIS

# one operator list for every field (the form works without JavaScript); each kind of field takes some of
# them, under its own names in the language (a KPI's `gt`, a time since's `gt: 30d`, consent's `state`)
OPS = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤", "contains": "contains",
       "exists": "is set", "missing": "is not set", "in": "is in", "not_in": "is not in"}
NUMBER_OPS = ("eq", "ne", "gt", "gte", "lt", "lte")
KIND_OPS = {"number": NUMBER_OPS, "since": ("gt", "gte", "lt", "lte"),
            "trait": (*NUMBER_OPS, "contains", "exists", "missing"),
            "consent": ("eq", "ne", "in", "not_in"),  # "consent email = granted", "… is not in refused"
            "segment": ("in", "not_in", "eq", "ne")}  # "segment is in lifecycle/loyal"
CONSENT_VALUES = ("granted", "pending", "refused", "unknown")
TRAITS = ("email", "phone", "first_name", "locale", "timezone", "preferred_channel", "vip", "has_account",
          "has_mobile_app", "birthday", "city")
MAX_ROWS = 12


class BuilderError(ValueError):
    """A row the builder cannot turn into a condition (shown next to the builder)."""


@dataclass(frozen=True)
class Field:
    key: str  # the form value: kpi:orders_count, since:last_order_at, trait:vip, consent:email, segment
    label: str
    kind: str  # number, since, trait, consent, segment

    @property
    def ops(self) -> tuple[str, ...]:
        return KIND_OPS[self.kind]


def fields() -> list[Field]:
    out = [Field(f"kpi:{k}", k, "number") for k, kind in KPIS.items() if kind == "number"]
    out += [Field(f"since:{k}", f"{k} (time since)", "since") for k, kind in KPIS.items() if kind == "timestamp"]
    out += [Field(f"trait:{t}", f"trait {t}", "trait") for t in TRAITS]
    out += [Field("consent:email", "consent email", "consent"), Field("consent:sms", "consent sms", "consent")]
    out += [Field("segment", "segment", "segment")]
    return out


FIELDS = {f.key: f for f in fields()}


def rows_from_form(form: dict[str, str]) -> list[tuple[str, str, str]]:
    """The filled rows of the form (`field0`, `op0`, `value0`, `field1` …); a row without a field is empty
    and left out."""
    rows = []
    for i in range(MAX_ROWS):
        key = (form.get(f"field{i}") or "").strip()
        if key:
            rows.append((key, (form.get(f"op{i}") or "").strip(), (form.get(f"value{i}") or "").strip()))
    return rows


def _scalar(text: str) -> bool | int | float | str:
    low = text.lower()
    if low in ("true", "yes", "да"):
        return True
    if low in ("false", "no", "нет"):
        return False
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text.replace(",", "."))
    except ValueError:
        return text


def row_condition(key: str, op: str, value: str) -> dict[str, Any]:
    field = FIELDS.get(key)
    if field is None:
        raise BuilderError(f"unknown field {key!r}")
    if op not in field.ops:
        raise BuilderError(f"{field.label}: the operator is one of {' '.join(OPS[o] for o in field.ops)}")
    name = key.split(":", 1)[-1]
    needs_value = not (field.kind == "trait" and op in ("exists", "missing"))
    if needs_value and not value:
        raise BuilderError(f"{field.label}: a value is missing")
    if field.kind == "number":
        number = _scalar(value)
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise BuilderError(f"{field.label} is a number: got {value!r}")
        return {"kpi": name, op: number}
    if field.kind == "since":
        return {"since": name, op: value.replace(" ", "")}
    if field.kind == "trait":
        if op in ("exists", "missing"):
            return {"trait": name, "exists": op == "exists"}
        return {"trait": name, op: _scalar(value) if op != "contains" else value}
    if field.kind == "consent":
        states = [s.strip() for s in value.replace(",", " ").split() if s.strip()]
        if any(s not in CONSENT_VALUES for s in states):
            raise BuilderError(f"{field.label}: the state is one of {', '.join(CONSENT_VALUES)}")
        cond = {"consent": name, "state": states}
        return cond if op in ("eq", "in") else {"not": cond}
    return {"in_segment" if op in ("in", "eq") else "not_in_segment": value}


def build(rows: list[tuple[str, str, str]], match: str = "all") -> dict[str, Any]:
    """One condition for the rows: the row's own for one, `{all: […]}` or `{any: […]}` for more."""
    if not rows:
        raise BuilderError("add a row: a field, an operator and a value")
    conds = [row_condition(*row) for row in rows]
    if len(conds) == 1:
        return conds[0]
    return {"any" if match == "any" else "all": conds}


def to_yaml(condition: dict[str, Any]) -> str:
    """One line of YAML flow style, the subject first (`{kpi: orders_count, gte: 2}`), for the YAML box."""
    import yaml
    text = yaml.safe_dump(condition, default_flow_style=True, allow_unicode=True, width=10_000, sort_keys=False)
    return str(text).strip().removesuffix("...").strip()
