"""Thin handlers (DESIGN.md section 9): parse, call the library, answer — the logic lives in the layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
HANDLERS = sorted(FUNCTIONS.glob("*/handler.py"))


def own_logic_lines(path: Path) -> int:
    """Lines of the handler's own code: no blank lines, comments, docstrings or imports."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            skip.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return sum(1 for n, line in enumerate(path.read_text().splitlines(), 1)
               if n not in skip and line.strip() and not line.strip().startswith("#"))


def test_every_function_has_a_handler() -> None:
    assert len(HANDLERS) == 8


@pytest.mark.parametrize("path", HANDLERS, ids=lambda p: p.parent.name)
def test_a_handler_is_thin(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 60
    assert own_logic_lines(path) <= 40


@pytest.mark.parametrize("path", HANDLERS, ids=lambda p: p.parent.name)
def test_a_handler_wears_the_one_entry_decorator(path: Path) -> None:
    text = path.read_text()
    assert f'@entry("{path.parent.name}")' in text
    assert "Logger(" not in text and "Tracer(" not in text and "Metrics(" not in text
