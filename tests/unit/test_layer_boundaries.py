"""What the Lambda layer ships: the domain library only. Dev-only code (the local runtime's whole-table
scans, the synchronous recompute, the CLI, the bench) lives outside it."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[2] / "layers" / "common" / "python" / "retention"
MODULES = sorted(LIBRARY.rglob("*.py"))
# a full scan is the job of the recompute worker (parallel scan) and of the admin's counts and dry-runs
# erasure scans the due index for the person's items: it is keyed by due time, not by customer, and an
# erasure is a rare admin request, never a per-minute path
SCANNERS = {"schedule/recompute.py", "admin/previews.py", "customers/erasure.py"}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_the_layer_imports_nothing_dev_only() -> None:
    offenders = {p.relative_to(LIBRARY).as_posix(): sorted(imported(p) & {"local", "cli", "infra", "bench", "tests",
                                                                          "moto"})
                 for p in MODULES}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_scans_only_where_a_full_scan_is_the_job() -> None:
    scanning = {p.relative_to(LIBRARY).as_posix() for p in MODULES if ".scan(" in p.read_text()}
    assert scanning <= SCANNERS


def test_the_local_clock_s_helpers_are_out_of_the_layer() -> None:
    text = "".join(p.read_text() for p in MODULES)
    assert "def next_due_at" not in text and "def run_all" not in text
