"""Reading the operator's files: the JSON-lines reader the customer import and the catalogue import share."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class JsonLine:
    number: int
    text: str
    value: dict[str, Any] | None = None
    error: str | None = None


def json_lines(path: Path, what: str) -> Iterator[JsonLine]:
    """Each non-blank line as a JSON object, or the reason it is not one (`what` says what a line must be)."""
    with path.open(encoding="utf-8-sig") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except ValueError as exc:
                yield JsonLine(number, text, error=f"not JSON: {exc}")
                continue
            if not isinstance(value, dict):
                yield JsonLine(number, text, error=what)
                continue
            yield JsonLine(number, text, value)
