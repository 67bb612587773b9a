"""Ingestion behaviour that surviving mutants of `make mutate` showed untested (bench/results/mutation.md).
Each test names the mutant it kills. On moto."""

from __future__ import annotations

from typing import Any

import pytest
from retention.core import clock
from retention.customers.store import ProfileRepo

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


def profile(stack: Any, uid: str) -> Any:
    return ProfileRepo(stack.deps.dynamodb, stack.deps.env.profiles_table).load(uid, clock.now())


def identify(uid: str, mid: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": uid, "messageId": mid, "traits": traits}


def test_a_new_customer_is_stamped_with_the_source_that_created_it(stack: Any) -> None:
    """Kills `if not sp.exists:` → `if not not sp.exists:` in `_customer`: the source whose message created
    a customer owns it (key scopes read `meta.created_by`); a later source does not take it over."""
    stack.ingest([identify("u1", "m1", first_name="Anna")], source="src_shop")
    assert profile(stack, "u1").profile.meta["created_by"] == "src_shop"
    stack.ingest([identify("u1", "m2", first_name="Anya")], source="src_crm")
    sp = profile(stack, "u1")
    assert sp.profile.meta["created_by"] == "src_shop" and sp.profile.traits["first_name"] == "Anya"
