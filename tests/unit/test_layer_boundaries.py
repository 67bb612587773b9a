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


# ---- DynamoDB key prefixes: built only by the subpackage that owns them (issue 13) -------------------------
# A prefix is the `NAME#` a key starts with (pk or sk). The same letters in two tables are two prefixes with
# their own owners (an alias `A#` in the profiles table, a pool's available code `A#` under `POOL#` in the
# products table; a segment history `H#` in a profile, an hour `H#` under the brake's `BRAKE#`).
KEY_OWNERS: dict[str, set[str]] = {
    "A#": {"customers", "products"}, "BRAKE#": {"messaging"}, "C#": {"customers"}, "CAT#": {"products"},
    "CB#": {"products"}, "CODE#": {"products"}, "CP#": {"products"}, "D#": {"products"}, "E#": {"ingestion"},
    "EV#": {"analytics"},
    "H#": {"customers", "messaging"}, "ISSUE#": {"products"}, "L#": {"messaging"}, "M#": {"ingestion"},
    "NPS#": {"surveys"}, "O#": {"customers"}, "P#": {"products"}, "PI#": {"customers"}, "POOL#": {"products"},
    "POP#": {"products"},
    "S#": {"analytics"}, "SEGDAY#": {"analytics"}, "SEGSIZE#": {"analytics"}, "SOURCE#": {"core"},
    "SESSION#": {"console"}, "SUP#": {"messaging"}, "SV#": {"surveys"}, "TEST#": {"messaging"},
    "TOKEN#": {"admin"}, "V#": {"core"}, "W#": {"surveys"}, "X#": {"customers"},
}
ROOT = LIBRARY.parents[3]
OUTSIDE = [p for d in ("local", "cli", "functions", "bench") for p in sorted((ROOT / d).rglob("*.py"))]


def key_prefixes(path: Path) -> dict[str, int]:
    """`NAME#` at the start of a string literal or f-string (docstrings and comments left out): {prefix: line}."""
    import re
    tree = ast.parse(path.read_text())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            match = re.match(r"[A-Z][A-Z0-9_]*#", node.value)
            if match:
                found.setdefault(match.group(0), node.lineno)
    return found


def test_key_prefixes_are_built_by_their_owners_only() -> None:
    wrong = []
    for path in MODULES:
        owner = path.relative_to(LIBRARY).parts[0]
        for prefix, line in key_prefixes(path).items():
            if owner not in KEY_OWNERS.get(prefix, set()):
                wrong.append(f"{path.relative_to(LIBRARY)}:{line}: {prefix} (owned by {KEY_OWNERS.get(prefix)})")
    for path in OUTSIDE:  # dev code (a bench's scratch keys aside) imports the owner's helpers
        for prefix, line in key_prefixes(path).items():
            if prefix in KEY_OWNERS:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {prefix} (owned by {KEY_OWNERS[prefix]})")
    assert wrong == []


def test_the_prefix_finder_sees_f_strings() -> None:
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write('"""P# in a docstring"""\nk = f"L#{x}"\nq = {":l": {"S": "SEGDEF#"}}\n')
    assert key_prefixes(Path(fh.name)) == {"L#": 2, "SEGDEF#": 3}
