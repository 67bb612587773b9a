"""Engine behaviour that surviving mutants of `make mutate` showed untested (bench/results/mutation.md):
the step limit of one advance, the global control group's assignment, exit reasons, the reason of a
segment set by a journey, and the size guard of the trigger properties kept for templates.

Each test names the mutant it kills. Pure: no AWS."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from retention.core import clock
from retention.core.config import Settings
from retention.customers.profile import Profile
from retention.customers.store import StoredProfile
from retention.ingestion.wire import Message
from retention.journeys.engine import Definitions, Engine, in_global_control
from retention.language.rules import parse_rule

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def engine(*bodies: dict[str, Any], **settings: Any) -> Engine:
    return Engine(Definitions(rules=[parse_rule(b) for b in bodies], groups=[], settings=Settings(**settings)))


def stored(cid: str = "c1") -> StoredProfile:
    return StoredProfile(profile=Profile(id=cid, created_at=NOW - timedelta(days=30)), version=1)


def track(event: str, mid: str, cid: str = "c1", **props: Any) -> Message:
    return Message(type="track", message_id=mid, user_id=cid, event=event, properties=props, timestamp=NOW,
                   received_at=NOW)


@pytest.fixture(autouse=True)
def _clock() -> Any:
    clock.set_now(NOW)
    yield
    clock.reset()


# ---- the step limit of one advance -----------------------------------------------------------------


def chain(n: int) -> dict[str, Any]:
    """A rule of `n` steps that never wait (each jumps to the next; the last one ends the journey)."""
    steps: list[dict[str, Any]] = [{"goto": i + 1} for i in range(n - 1)] + [{"goto": "end"}]
    return {"id": "chain", "trigger": {"event": "Go"}, "steps": steps}


def test_one_advance_runs_at_most_fifty_steps() -> None:
    """Kills `MAX_STEPS_PER_ADVANCE = 50` → 49 / 51. A journey of 49 steps that never wait completes in
    one advance (49 steps, then the end: 50 turns); one of 50 steps is stopped as `too_many_steps` after
    running exactly 50 steps."""
    sp = stored()
    engine(chain(49)).process(sp, messages=[track("Go", "m1")], now=NOW)
    assert sp.profile.journeys["chain"]["state"] == "completed"
    assert sp.profile.journeys["chain"]["exit_reason"] is None

    sp, trace = stored(), []  # type: ignore[var-annotated]
    engine(chain(50)).process(sp, messages=[track("Go", "m1")], now=NOW, trace=trace)
    journey = sp.profile.journeys["chain"]
    assert (journey["state"], journey["exit_reason"]) == ("exited", "too_many_steps")
    assert [row["step"] for row in trace] == list(range(50))


# ---- exit reasons ------------------------------------------------------------------------------------


def test_a_journey_exited_by_its_goal_records_why() -> None:
    """Kills `_end`: `if reason:` → `if not reason:` (the reason of an exit was dropped)."""
    rule = {"id": "cart", "trigger": {"event": "Checkout Started"}, "exit_when": {"event": "Order Completed"},
            "steps": [{"wait": "1h"}, {"send": {"channel": "email", "template": "first"}}]}
    eng, sp = engine(rule), stored()
    eng.process(sp, messages=[track("Checkout Started", "m1")], now=NOW)
    eng.process(sp, messages=[track("Order Completed", "m2")], now=NOW)
    journey = sp.profile.journeys["cart"]
    assert (journey["state"], journey["exit_reason"]) == ("exited", "goal:Order Completed")
    assert journey["ended_at"] == clock.iso(NOW) and journey["next_due"] is None


# ---- the global control group ------------------------------------------------------------------------


@pytest.mark.parametrize(("customer", "bucket"), [("cust-1", 38), ("cust-69", 23), ("c0", 4869), ("c1", 9241)])
def test_the_global_control_group_is_a_fixed_hash_bucket_of_the_customer_id(customer: str, bucket: int) -> None:
    """Kills `hexdigest()[:8]` → `[:9]` and `int(…, 16)` → `int(…, 17)`. The bucket (0-9999) is a published
    function of the customer id: the same customer stays in (or out of) the control group across releases,
    else the uplift compares groups that changed mid-measure. A customer is held out when bucket < percent
    × 100."""
    assert not in_global_control(customer, bucket / 100)
    assert in_global_control(customer, (bucket + 1) / 100)


def test_a_one_percent_global_control_group_holds_customers_out() -> None:
    """Kills `if percent <= 0` → `if percent <= 1` (a 1 % control group would be empty)."""
    assert in_global_control("cust-1", 1)  # bucket 38
    assert not in_global_control("cust-1", 0)
    held = sum(in_global_control(f"cust-{i}", 1) for i in range(2000))
    assert 8 <= held <= 40  # about 1 % of 2000


def test_a_customer_in_the_global_control_group_enters_held_out_and_gets_nothing() -> None:
    """The same bucket through the engine: at 1 %, `cust-1` (bucket 38) is held out of a marketing rule,
    `c0` (bucket 4869) is not."""
    rule = {"id": "news", "trigger": {"event": "News"}, "steps": [{"send": {"channel": "email", "template": "n"}}]}
    eng = engine(rule, control_group_percent=1)
    held, treated = stored("cust-1"), stored("c0")
    fx_held = eng.process(held, messages=[track("News", "m1", cid="cust-1")], now=NOW)
    fx_treated = eng.process(treated, messages=[track("News", "m1", cid="c0")], now=NOW)
    assert held.profile.journeys["news"]["holdout"] is True and fx_held.sends == []
    assert treated.profile.journeys["news"]["holdout"] is False and len(fx_treated.sends) == 1


# ---- a segment set by a journey ----------------------------------------------------------------------


@pytest.mark.parametrize(("reason", "expected"), [(None, "journey winback"), ("won back", "won back")])
def test_a_segment_set_by_a_journey_says_why(reason: str | None, expected: str) -> None:
    """Kills `spec.reason or f"journey {rule.id}"` → `and`: without a reason of its own the manual segment
    names the journey; with one it keeps it."""
    change: dict[str, Any] = {"group": "lifecycle", "segment": "won"}
    if reason:
        change["reason"] = reason
    rule = {"id": "winback", "trigger": {"event": "Back"}, "steps": [{"set_segment": change}]}
    sp = stored()
    engine(rule).process(sp, messages=[track("Back", "m1")], now=NOW)
    assert sp.profile.meta["manual_segments"]["lifecycle"] == {"segment": "won", "reason": expected, "until": None}


# ---- trigger properties kept for templates -----------------------------------------------------------


def kept(props: dict[str, Any]) -> dict[str, Any]:
    rule = {"id": "cart", "trigger": {"event": "Checkout Started"}, "steps": [{"wait": "1h"}]}
    sp = stored()
    engine(rule).process(sp, messages=[track("Checkout Started", "m1", **props)], now=NOW)
    return sp.profile.journeys["cart"]["trigger"]["properties"]  # type: ignore[no-any-return]


def test_non_ascii_trigger_properties_are_measured_as_written() -> None:
    """Kills `json.dumps(props, …, ensure_ascii=False)` → `True` in `_small`: a cart of Cyrillic product
    names is 2 KB as stored, 6 KB once escaped; it fits the 4000-character bound and is kept whole."""
    items = [{"name": "Кофемашина автоматическая", "sku": f"sku-{i}"} for i in range(40)]
    assert len(json.dumps({"items": items}, ensure_ascii=False)) < 4000 < len(json.dumps({"items": items}))
    assert kept({"items": items, "total": 10}) == {"items": items, "total": 10}


def test_trigger_properties_over_4000_characters_keep_only_their_scalars() -> None:
    """The bound itself: 4000 characters of JSON are kept whole, 4001 lose their lists and objects."""
    def props(size: int) -> dict[str, Any]:
        base = {"items": [""], "total": 10}
        pad = size - len(json.dumps(base, ensure_ascii=False))
        return {"items": ["x" * pad], "total": 10}
    assert len(json.dumps(props(4000), ensure_ascii=False)) == 4000
    assert kept(props(4000)) == props(4000)
    assert kept(props(4001)) == {"total": 10}
