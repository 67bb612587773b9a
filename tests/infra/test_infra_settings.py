"""Every function gets from the stack the environment it checks at its cold start
(retention.core.settings.REQUIRED), and the permissions to use what it names."""

from __future__ import annotations

import pytest
from retention.core.settings import REQUIRED

from infra.stack import ACCESS, QUEUE_SENDERS

NAMES = list(ACCESS)


def test_every_function_declares_its_requirements():
    assert set(REQUIRED) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_stack_sets_what_the_function_requires(synth, name):
    env = synth.function(name)["Properties"]["Environment"]["Variables"]
    assert [var for var in REQUIRED[name] if not env.get(var)] == []


@pytest.mark.parametrize("name", NAMES)
def test_the_function_may_use_the_tables_and_queues_it_requires(synth, name):
    grants = synth.grants(name)
    for var in REQUIRED[name]:
        if var.endswith("_TABLE"):
            table = var.removesuffix("_TABLE").lower()
            assert ("dynamodb:GetItem", f"table:{table}") in grants or ("dynamodb:PutItem", f"table:{table}") in grants, var
        else:
            queue = var.removesuffix("_QUEUE_URL").lower()
            assert ("sqs:SendMessage", f"queue:{queue}") in grants, f"{name} requires {var} but may not send to it"


@pytest.mark.parametrize("name", NAMES)
def test_what_a_function_may_touch_it_requires(name):
    """The other way round: a table or queue granted to a function is one it checks at its cold start."""
    tables = {f"{t.upper()}_TABLE" for t in ACCESS[name]}
    queues = {f"{q.upper()}_QUEUE_URL" for q, senders in QUEUE_SENDERS.items() if name in senders}
    assert tables | queues == set(REQUIRED[name])
