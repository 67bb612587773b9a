"""Settings that fail fast: a function's required environment is checked at its cold start, and an unset
queue URL is an error where work would be queued, never a fan-out silently skipped."""

from __future__ import annotations

from typing import Any

import pytest
from retention.core import runtime
from retention.core.settings import REQUIRED, Env, SettingsError

from tests.support import LambdaContext, load_handler


def without(env: Env, *variables: str) -> Env:
    fields = {f.alias: getattr(env, name) for name, f in Env.model_fields.items() if f.alias}
    return Env.model_validate({k: v for k, v in fields.items() if k not in variables})


def test_an_empty_environment_names_every_missing_variable() -> None:
    with pytest.raises(SettingsError) as err:
        Env().require("track_event")
    for var in REQUIRED["track_event"]:
        assert var in str(err.value)
    assert "RECOMPUTE_QUEUE_URL" not in str(err.value)  # not one track_event needs


def test_a_complete_environment_passes(stack: Any) -> None:
    for function in REQUIRED:
        assert stack.deps.env.require(function) is stack.deps.env


@pytest.mark.parametrize(("function", "variable"), [("evaluate_triggers", "RECOMPUTE_QUEUE_URL"),
                                                    ("feedback", "MESSAGES_TABLE"),
                                                    ("send_message", "SEND_QUEUE_URL")])
def test_a_handler_fails_at_its_first_invocation_naming_the_variable(stack: Any, function: str,
                                                                      variable: str) -> None:
    handler = load_handler(function, "settings")
    runtime.set_deps(runtime.Deps(without(stack.deps.env, variable), dynamodb=stack.deps.dynamodb,
                                  sqs=stack.deps.sqs, sesv2=stack.deps.sesv2, sns=stack.deps.sns))
    stack.counter.reset()
    with pytest.raises(SettingsError, match=variable):
        handler.lambda_handler({"Records": []}, LambdaContext(function))
    assert not stack.counter.calls  # it failed before any work


SEGMENT = {"group": "markers", "mode": "multi", "segments": [{"id": "tagged", "manual_only": True}]}


def test_a_segment_change_without_a_recompute_queue_is_an_error_not_a_skipped_recompute(stack: Any) -> None:
    from retention.admin.previews import Previews
    d = runtime.Deps(without(stack.deps.env, "RECOMPUTE_QUEUE_URL"), dynamodb=stack.deps.dynamodb,
                     sqs=stack.deps.sqs)
    d.config = stack.deps.config
    with pytest.raises(SettingsError, match="RECOMPUTE_QUEUE_URL"):
        Previews(d).apply("SEGDEF", "markers", dict(SEGMENT), source="test")


def test_a_segment_change_fans_the_recompute_out(stack: Any) -> None:
    from retention.admin.previews import Previews
    out = Previews(stack.deps).apply("SEGDEF", "markers", dict(SEGMENT), source="test")
    assert out["recompute"] == 16
    queued = stack.deps.sqs.get_queue_attributes(QueueUrl=stack.recompute_queue,
                                                 AttributeNames=["ApproximateNumberOfMessages"])
    assert int(queued["Attributes"]["ApproximateNumberOfMessages"]) == 16


def test_sends_without_a_send_queue_are_an_error() -> None:
    from retention.journeys.effects import enqueue
    from retention.messaging.requests import SendRequest
    fields = {n: "x" for n, f in SendRequest.model_fields.items() if f.is_required()}
    with pytest.raises(SettingsError, match="SEND_QUEUE_URL"):
        enqueue(object(), "", [SendRequest.model_construct(**fields)])
    enqueue(object(), "", [])  # nothing to send: nothing to check
