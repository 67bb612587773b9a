"""Definition documents cannot stall the admin API (issue 15, items 10 and 12): alias expansion is capped
before anything walks the document, and deeply nested JSON is a 400."""

from __future__ import annotations

import time

import pytest
from retention.core.errors import ValidationError
from retention.core.yamlio import load_yaml_documents

LAUGHS = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
       f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]" for i in range(8)]
)


def test_billion_laughs_is_refused_fast() -> None:
    assert len(LAUGHS) < 800
    started = time.process_time()
    with pytest.raises(ValidationError, match="expands to more than"):
        load_yaml_documents(LAUGHS, "rules/x.yaml")
    assert time.process_time() - started < 1.0


def test_ordinary_anchors_still_work() -> None:
    text = "defaults: &d {channel: email, wait: 1d}\nsteps:\n  - *d\n  - {<<: *d, step: 2}\n"
    ((data, _),) = load_yaml_documents(text, "rules/y.yaml")
    assert data["steps"][1] == {"channel": "email", "wait": "1d", "step": 2}


def test_oversized_documents_are_refused() -> None:
    with pytest.raises(ValidationError, match="larger than"):
        load_yaml_documents("a: " + "x" * (600 * 1024), "rules/z.yaml")


def test_deep_yaml_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="nested"):
        load_yaml_documents("a: " + "[" * 5000 + "]" * 5000, "rules/deep.yaml")
    with pytest.raises(ValidationError, match="nested"):
        load_yaml_documents("a: " + "[" * 100 + "]" * 100, "rules/deep.yaml")


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deep_json_bodies_are_400(depth: int) -> None:
    from retention.core.errors import BadRequestError
    from retention.core.http import parse_json_object
    with pytest.raises(BadRequestError, match="nested deeper"):
        parse_json_object('{"a": ' + "[" * depth + "]" * depth + "}")
