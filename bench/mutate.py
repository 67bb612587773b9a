"""`make mutate`: mutation testing (cosmic-ray) of the critical modules, each against a fast, targeted test
subset. Not part of `make test`: it runs the subset once per mutant.

For each target a copy of the tracked tree is made under build/mutate/<target>/ (mutants are written into
that copy, never into the work tree), the subset is run once unmutated (it must pass; its duration sets the
per-mutant timeout), `cosmic-ray init` lists the mutants, the operators below keep the ones that change
behaviour in a way a test can see (boundaries, negations, constants, arithmetic), optionally restricted to
the module's critical functions and sampled down to a budget (seeded, so a re-run tests the same sample),
and `cosmic-ray exec` runs them. Results: bench/results/mutation.json and mutation.md (survivors with their
diff), and a section of the bench report. A partial run (`--only`) replaces only the targets it ran: the
others keep their last result, each target stamped with the commit and date it was measured at.

A survivor listed in EQUIVALENTS (same target, same removed and added line) is a mutant that cannot change
behaviour; it is still counted as a survivor, and reported apart with its justification.

    python -m bench.mutate                 # every target, default budget
    python -m bench.mutate --only engine,tokens --budget 0     # budget 0 = every kept mutant
    python -m bench.mutate --only feedback --recheck   # only the last run's survivors, against today's tests
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LIB = "layers/common/python/retention"
RESULTS = REPO / "bench" / "results"


@dataclass
class Target:
    name: str
    module: str
    tests: list[str]
    functions: list[str] = field(default_factory=list)  # empty: every function of the module
    budget: int | None = None  # mutants run (sampled); None: the --budget given, 0: all


TARGETS = [
    Target("engine", f"{LIB}/journeys/engine.py",
           ["tests/unit/test_engine_guards.py", "tests/unit/test_engine_paths.py", "tests/unit/test_engine_mutants.py",
            "tests/unit/test_engine.py", "tests/unit/test_cart_trigger.py"]),
    Target("tokens", f"{LIB}/core/tokens.py", ["tests/unit/test_tokens.py", "tests/unit/test_tokens_edges.py",
                                                     "tests/unit/test_tokens_mutants.py"]),
    Target("nps", f"{LIB}/surveys/nps.py", ["tests/unit/test_nps.py", "tests/unit/test_nps_edges.py",
                                                "tests/unit/test_nps_mutants.py"]),
    Target("sender", f"{LIB}/messaging/sender.py",
           ["tests/unit/test_sender_rules.py", "tests/integration/test_sender_mutants.py",
            "tests/integration/test_sender.py",
            # the sender's coupon and recommendation paths (the rest of that file is the catalogue)
            "tests/integration/test_products.py::test_empty_pool_and_no_recommendations_skip_with_reasons",
            "tests/integration/test_products.py::test_hmac_fallback_when_the_step_allows_it"], budget=30),
    Target("feedback", f"{LIB}/messaging/feedback.py", ["tests/integration/test_feedback_mutants.py",
                                                                   "tests/integration/test_feedback.py"], budget=30),
    Target("ingestion", f"{LIB}/ingestion/ingestor.py",
           ["tests/integration/test_ingest_mutants.py", "tests/integration/test_expiry_contracts.py",
            "tests/integration/test_ingest.py"], budget=25),
]

# Surviving mutants that cannot change behaviour: (target, function, original line, mutated line, why). Lines are
# compared without whitespace (cosmic-ray re-spaces what it mutates); function "None" is module level. A test
# cannot tell these apart from the original; each needs a reason here, not a test that cannot fail.
# (cosmic-ray's `# pragma: no mutate` would skip every mutant of the line, and would go into the module itself.)
EQUIVALENTS: list[tuple[str, str, str, str, str] | tuple[str, str, str, str, str, str]] = [
    ("engine", "rule_of", 'return slot.split("#", 1)[0]', 'return slot.split("#", 2)[0]',
     "the part before the first `#` is the same whatever the split limit"),
    ("engine", "in_global_control", "if percent <= 0:", "if percent <= -1:",
     "for -1 < percent <= 0 the next line's `h % 10000 < percent * 100` is False too (a bucket is never negative)"),
    ("engine", "_on_scheduled_trigger",
     "self._date_triggers(sp, fx, now + timedelta(seconds=1))  # next year's",
     "self._date_triggers(sp, fx, now + timedelta(seconds=2))  # next year's",
     "the occurrence after a yearly date that just fired is about a year away: 1 s or 2 s past it give the same one"),
    ("engine", "_start",
     'holdout = in_holdout(profile.id, rule.id, float(getattr(rule, "holdout_percent", 0) or 0)) or \\',
     'holdout = in_holdout(profile.id, rule.id, float(getattr(rule, "holdout_percent", 0) or -1)) or \\',
     "in_holdout holds nobody out at any percent <= 0 (tested in test_rules/test_engine_guards)"),
    ("engine", "_on_due_journey", 'or int(journey.get("step", -1)) != int(step):',
     'or int(journey.get("step", -2)) != int(step):',
     "a JOURNEY item's ref carries the step index it was written at (>= 0, by _advance): any negative default "
     "for a journey without a step reads the item as stale"),
    ("engine", "_start",
     'holdout = in_holdout(profile.id, rule.id, float(getattr(rule, "holdout_percent", 0) or 0)) or \\',
     'holdout = in_holdout(profile.id, rule.id, float(getattr(rule, "holdout_percent", -1) or 0)) or \\',
     "the Rule model always has holdout_percent (default 0): getattr's default is never used"),
    ("engine", "_on_due_journey", 'or int(journey.get("step", -1)) != int(step):',
     'or int(journey.get("step", -0)) != int(step):',
     "every journey is written by _start with a step: the default is never read"),
    ("engine", "_on_due_journey", "fx.changed = True", "fx.changed = False",
     "_advance, called on the next line, sets fx.changed = True on its first turn (it always runs one)"),
    ("sender", "_sms_destination_ok",
     "return bool(address) and address is not _INVALID and sms_country_allowed(str(address), countries)",
     "return bool(address) and address is not _INVALID or sms_country_allowed(str(address), countries)",
     "an empty or invalid address has no country code: sms_country_allowed is False for it anyway"),
    ("engine", "_can_enter", "cooldown = re_entry.cooldown or timedelta(0)",
     "cooldown = re_entry.cooldown or timedelta(-1)",
     "entered_at is an earlier processing time, never after now (the dry-run drops journeys entered from its "
     "start): `entered <= now` holds with 0 or -1 day alike"),
    ("engine", "in_global_control", "if percent <= 0:", "if percent < 0:",
     "at percent 0 the next line's `h % 10000 < 0` is False as well"),
    ("engine", "_start",
     'holdout = in_holdout(profile.id, rule.id, float(getattr(rule, "holdout_percent", 0) or 0)) or \\',
     'holdout = in_holdout(profile.id, rule.id, float(getattr(rule, "holdout_percent", 1) or 0)) or \\',
     "the Rule model always has holdout_percent (default 0): getattr's default is never used"),
    ("engine", "_on_event", "fx.changed = True", "fx.changed = False",
     "every caller of _on_event has set fx.changed already (process's message loop, _advance, _on_due_event, "
     "_segments' transitions) except replay_event, whose caller (the dry-run) never reads it"),
    ("engine", "_refresh_trigger", "return True", "return False",
     "after the trigger was updated (not the emptied-cart return, which the line above tells apart): falling "
     "through, the trigger check reaches _start, which refuses a running journey",
     'journey["trigger"] = {"name": name, "properties": _small(folded)}'),
    ("engine", "_refresh_trigger", "return False", "return True",
     "not a cart event: `continue` skips the trigger check, which for this running journey would reach "
     "_start and be refused; fx.changed is already set by the message",
     "if not cart.is_cart_event(name):"),
    ("engine", "_refresh_trigger", "return False", "return True",
     "the event does not match the trigger: `continue` skips a trigger check that fails anyway; fx.changed is "
     "already set by the message", "if not rule.trigger_matches_event(name, props):"),
    ("engine", "_start", "fx.changed = True", "fx.changed = False",
     "_advance, called at the end of _start, sets fx.changed = True on its first turn"),
    ("engine", "_advance", "fx.changed = True", "fx.changed = False",
     "both callers (_start, _on_due_journey) set fx.changed = True just before calling _advance"),
    ("engine", "_attribute", "fx.changed = True", "fx.changed = False",
     "_attribute runs only inside process's message loop, after its fx.changed = True"),
    ("feedback", "None",
     'STATUS_RANK = {"sent": 0, "pending": 0, "delivered": 1, "rejected": 2, "bounced": 3, "complained": 4}',
     'STATUS_RANK = {"sent": 0, "pending": 0, "delivered": 1, "rejected": 2, "bounced": 3, "complained": 5}',
     "only the order of the ranks is used (`r >= rank`): complained stays the highest"),
    ("feedback", "handle", 'ledger_id = (tags.get("ledger") or [None])[0]',
     'ledger_id = (tags.get("ledger") or [None])[-1]',
     "the sender tags each message with exactly one ledger value (EmailTags): first and last are the same"),
    ("feedback", "handle", 'self._brake(event, counter, now, str(mail.get("messageId") or ""))',
     'self._brake(event, counter, now, str(mail.get("messageId") and ""))',
     "the hint only picks the write shard of the brake's hourly counter; Brake.evaluate sums every shard"),
    ("feedback", "handle",
     'add_counters(self.d.dynamodb, table, str(ledger.get("rule", "unknown")), int(ledger.get("step", 0)),',
     'add_counters(self.d.dynamodb, table, str(ledger.get("rule", "unknown")), int(ledger.get("step", -1)),',
     "every ledger item is written by the sender's claim with its step: the default is never read"),
    ("ingestion", "_is_plain",
     "if effects or fx.sends or fx.counters or fx.transitions or fx.due or fx.events or fx.history:",
     "if effects or fx.sends or fx.counters or fx.transitions and fx.due or fx.events or fx.history:",
     "every due item is an item of `effects` (transaction_items), and every transition comes with an fx.events "
     "row: the or-chain is true whenever either is"),
    ("ingestion", "_is_plain",
     "if effects or fx.sends or fx.counters or fx.transitions or fx.due or fx.events or fx.history:",
     "if effects or fx.sends or fx.counters or fx.transitions or fx.due and fx.events or fx.history:",
     "every due item is an item of `effects` (transaction_items), and fx.events rows are too: the or-chain is "
     "true whenever either is"),
    ("ingestion", "_customer", "break  # a retried delivery: everything was stored before",
     "continue  # a retried delivery: everything was stored before",
     "the chunk is empty there: `continue` ends `while chunk:` just as `break` does, and the queue is empty"),
    ("ingestion", "_customer", "break", "continue",
     "the chunk is empty there (`if not chunk:`): `continue` ends `while chunk:` just as `break` does",
     "if not chunk:"),  # 6th: the line above the mutated one (other bare breaks of _customer are not this)
    ("nps", "_clear_error", "for item in error.errors(include_url=False):",
     "for item in error.errors(include_url=True):",
     "the message reads only `loc`, `type` and `msg` of each error; the URL is a key of its own, never shown"),
]

# Operators kept (cosmic-ray names, regular expressions). Left out: every-operator-to-every-other binary
# and comparison swaps (mostly duplicates of the kept ones: `<` → `is`, `+` → `>>`), variable
# replacement/insertion and decorator removal (noise, or import-time failures).
KEEP = [
    r"core/ReplaceComparisonOperator_(Eq_NotEq|NotEq_Eq|Lt_LtE|LtE_Lt|Gt_GtE|GtE_Gt|Is_IsNot|IsNot_Is|In_NotIn|NotIn_In)$",
    r"core/ReplaceBinaryOperator_(Add_Sub|Sub_Add|Mul_Div|Div_Mul|FloorDiv_Mul|Mod_Mul|Pow_Mul|BitAnd_BitOr|BitOr_BitAnd)$",
    r"core/AddNot$", r"core/ReplaceTrueWithFalse$", r"core/ReplaceFalseWithTrue$",
    r"core/ReplaceAndWithOr$", r"core/ReplaceOrWithAnd$", r"core/NumberReplacer$",
    r"core/ZeroIterationForLoop$", r"core/ReplaceBreakWithContinue$", r"core/ReplaceContinueWithBreak$",
    r"core/ExceptionReplacer$", r"core/ReplaceUnaryOperator_(Not|USub)_Delete$",
]


def copy_tree(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if not src.is_file() or rel.startswith(("bench/results/", "docs/")):
            continue
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out)


def env_for(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{root / 'layers/common/python'}:{root}", "PYTHONDONTWRITEBYTECODE": "1",
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}


def test_command(target: Target) -> str:
    return " ".join([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                     "--no-header", *target.tests])


def annotation_spans(module: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the module's annotations are: with `from __future__ import annotations` they are never
    evaluated, so a mutant inside one (`str | None` → `str & None`) cannot change behaviour."""
    import ast
    tree = ast.parse(module.read_text())
    nodes: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            nodes += [x.annotation for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg)
                      if x is not None and x.annotation is not None]
            if node.returns is not None:
                nodes.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            nodes.append(node.annotation)
    return [((n.lineno, n.col_offset), (n.end_lineno or n.lineno, n.end_col_offset or 0)) for n in nodes]


def filter_session(session: Path, target: Target, budget: int, seed: int) -> dict[str, int]:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult
    keep = re.compile("|".join(f"(?:{k})" for k in KEEP))
    counts = {"listed": 0, "operator_filtered": 0, "function_filtered": 0, "sampled_out": 0}
    spans = annotation_spans(session.parent / target.module)
    with use_db(str(session), WorkDB.Mode.open) as db:
        candidates = []
        for item in db.pending_work_items:
            counts["listed"] += 1
            m = item.mutations[0]
            pos = tuple(m.start_pos)
            if not keep.match(m.operator_name) or any(a <= pos < b for a, b in spans):
                reason = "operator_filtered"
            elif target.functions and (m.definition_name or "").split(".")[-1] not in target.functions:
                reason = "function_filtered"
            else:
                # job ids are random per `init`: the sample is drawn by what the mutant is, so a re-run of
                # the same module tests the same mutants
                candidates.append((f"{m.operator_name}|{m.occurrence}|{tuple(m.start_pos)}", item.job_id))
                continue
            counts[reason] += 1
            db.set_result(item.job_id, WorkResult(output=reason, worker_outcome=WorkerOutcome.SKIPPED))
        if budget and len(candidates) > budget:
            rng = random.Random(f"{seed}|{target.name}")
            chosen = {job for _key, job in rng.sample(sorted(candidates), budget)}
            for _key, job in candidates:
                if job not in chosen:
                    counts["sampled_out"] += 1
                    db.set_result(job, WorkResult(output="sampled_out", worker_outcome=WorkerOutcome.SKIPPED))
    return counts


def collect(session: Path, target: Target) -> dict[str, Any]:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome
    out: dict[str, Any] = {"killed": 0, "timeout": 0, "survived": 0, "incompetent": 0, "pending": 0, "invalid": 0,
                           "survivors": []}
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            m = item.mutations[0]
            if "No module named" in (result.output or "") and "cosmic" not in (result.output or ""):
                out["invalid"] += 1  # the test run could not start (the environment broke): not a kill
                continue
            if result.test_outcome == TestOutcome.SURVIVED:
                out["survived"] += 1
                diff = _short_diff(result.diff or "")
                out["survivors"].append({"line": m.start_pos[0], "function": m.definition_name,
                                         "operator": m.operator_name, "diff": diff,
                                         "equivalent": equivalent_of(target.name, m.definition_name, diff,
                                                                     m.start_pos[0])})
            elif result.test_outcome == TestOutcome.KILLED:
                out["timeout" if (result.output or "").strip() == "timeout" else "killed"] += 1
            else:
                out["incompetent"] += 1
        out["pending"] = sum(1 for _ in db.pending_work_items)
    out["survivors"].sort(key=lambda s: s["line"])
    out["equivalent"] = sum(1 for s in out["survivors"] if s["equivalent"])
    out["survived_behaviour"] = out["survived"] - out["equivalent"]
    return out


def session_counts(session: Path) -> dict[str, int]:
    """listed / operator_filtered / function_filtered / sampled_out, read back from a session."""
    from cosmic_ray.work_db import WorkDB, use_db
    counts = {"listed": 0, "operator_filtered": 0, "function_filtered": 0, "sampled_out": 0}
    with use_db(str(session), WorkDB.Mode.open) as db:
        counts["listed"] = db.num_work_items
        for _item, result in db.completed_work_items:
            if result.output in counts and result.output != "listed":
                counts[result.output] += 1
    return counts


def _norm(line: str) -> str:
    return re.sub(r"\s+", "", line)  # cosmic-ray re-spaces what it mutates (`[: 9]`, `- 1`, `base= 1.1`)


SIGNATURE_STAR = ("`*` → `/` in a def is cosmic-ray's Mul_Div on the keyword-only marker: the earlier parameters "
                  "become positional-only, the later ones stay accepted by keyword; no call passes the earlier "
                  "ones by name (grep), so no call behaves differently")


def _line_above(target: str, line: int | None) -> str:
    module = next((REPO / t.module for t in TARGETS if t.name == target), None)
    if module is None or not line or not module.exists():
        return ""
    lines = module.read_text().splitlines()
    return lines[line - 2].strip() if 2 <= line <= len(lines) + 1 else ""


def equivalent_of(target: str, function: str | None, diff: str, line: int | None = None) -> str | None:
    """The justification of a survivor listed in EQUIVALENTS (or a keyword-only marker turned into `/`),
    None otherwise."""
    minus = [_norm(x[1:]) for x in diff.splitlines() if x.startswith("-") and not x.startswith("---")]
    plus = [_norm(x[1:]) for x in diff.splitlines() if x.startswith("+") and not x.startswith("+++")]
    if len(minus) == len(plus) == 1 and re.search(r"(^|[,(])\*,", minus[0]) and \
            plus[0] == re.sub(r"(^|[,(])\*,", r"\1/,", minus[0], count=1):
        return SIGNATURE_STAR  # a bare `*,` only exists in a parameter list
    for name, func, old, new, why, *above in EQUIVALENTS:
        if (name == target and str(function).split(".")[-1] == func and minus == [_norm(old)]
                and plus == [_norm(new)] and (not above or _line_above(target, line) == above[0])):
            return why
    return None


def code_stamp() -> str:
    """The commit the copies are made from, `+dirty` when tracked files differ from it."""
    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    commit = git("rev-parse", "--short=12", "HEAD").stdout.strip() or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results").stdout.strip()
    return commit + ("+dirty" if dirty else "")


def _short_diff(diff: str) -> str:
    return "\n".join(line for line in diff.splitlines() if line.startswith(("-", "+"))
                     and not line.startswith(("---", "+++")))[:400]


def run_target(target: Target, budget: int, seed: int, log: Any, stamp: str) -> dict[str, Any]:
    root = REPO / "build" / "mutate" / target.name
    env = env_for(root)
    cmd = test_command(target)
    t0 = time.monotonic()
    base = subprocess.run(cmd, shell=True, cwd=root, env=env, capture_output=True, text=True)
    baseline = time.monotonic() - t0
    if base.returncode != 0:
        raise SystemExit(f"{target.name}: the test subset fails without any mutant:\n{base.stdout[-3000:]}")
    timeout = max(30.0, 4 * baseline)
    (root / "mutate.toml").write_text(
        "[cosmic-ray]\n"
        f'module-path = "{target.module}"\n'
        f"timeout = {timeout:.0f}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(cmd)}\n\n"
        '[cosmic-ray.distributor]\nname = "local"\n')
    session = root / "session.sqlite"
    cr = Path(sys.executable).with_name("cosmic-ray")
    subprocess.run([str(cr), "init", "mutate.toml", str(session)], cwd=root, env=env, check=True,
                   capture_output=True)
    counts = filter_session(session, target, budget if target.budget is None else target.budget, seed)
    tested = counts["listed"] - counts["operator_filtered"] - counts["function_filtered"] - counts["sampled_out"]
    log(f"{target.name}: {counts['listed']} mutants listed, {tested} to run "
        f"(baseline {baseline:.1f}s, timeout {timeout:.0f}s)")
    t0 = time.monotonic()
    subprocess.run([str(cr), "exec", "mutate.toml", str(session)], cwd=root, env=env, check=True,
                   capture_output=True)
    seconds = time.monotonic() - t0
    res = collect(session, target)
    ran = res["killed"] + res["timeout"] + res["survived"]
    rate = round(100 * res["survived"] / ran, 1) if ran else None
    log(f"{target.name}: killed {res['killed']} (+{res['timeout']} by timeout), survived {res['survived']}, "
        f"incompetent {res['incompetent']} → survival {rate} % in {seconds:.0f}s")
    return {"target": target.name, "module": target.module, "tests": target.tests, "commit": stamp,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "seed": seed,
            "budget": budget if target.budget is None else target.budget,
            "functions": target.functions or "all", **counts, "baseline_seconds": round(baseline, 1),
            "seconds": round(seconds), "survival_rate_percent": rate, **res}


def recheck_target(target: Target, log: Any, stamp: str) -> dict[str, Any]:
    """Run again only the survivors of the target's last session, against the current test subset: the
    module must be byte-identical to the session's copy (else the mutants would not be the same). The
    earlier kills are kept (tests were added, not weakened: an assumption the full run does not need)."""
    import sqlite3
    root = REPO / "build" / "mutate" / target.name
    session = root / "session.sqlite"
    prev_json = json.loads((RESULTS / "mutation.json").read_text())
    prev = next(t for t in prev_json["targets"] if t["target"] == target.name)
    if not session.exists() or (root / target.module).read_bytes() != (REPO / target.module).read_bytes():
        raise SystemExit(f"{target.name}: no session, or the module changed since it: run the target again")
    keep = session.read_bytes()
    copy_tree(root)
    session.write_bytes(keep)
    (root / "STAMP").write_text(stamp + "\n")
    env = env_for(root)
    cmd = test_command(target)
    (root / "mutate.toml").write_text(
        "[cosmic-ray]\n"
        f'module-path = "{target.module}"\n'
        f"timeout = {max(30.0, 4 * float(prev.get('baseline_seconds') or 30)):.0f}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(cmd)}\n\n"
        '[cosmic-ray.distributor]\nname = "local"\n')
    with sqlite3.connect(session) as db:
        n = db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'").rowcount
    log(f"{target.name}: re-running {n} survivors against {', '.join(target.tests)}")
    cr = Path(sys.executable).with_name("cosmic-ray")
    t0 = time.monotonic()
    subprocess.run([str(cr), "exec", "mutate.toml", str(session)], cwd=root, env=env, check=True,
                   capture_output=True)
    res = collect(session, target)
    ran = res["killed"] + res["timeout"] + res["survived"]
    rate = round(100 * res["survived"] / ran, 1) if ran else None
    log(f"{target.name}: {n} survivors re-run, {res['survived']} still survive → survival {rate} %")
    return {**prev, "tests": target.tests, "commit": stamp, "seconds": round(time.monotonic() - t0),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "survival_rate_percent": rate,
            "rechecked": f"{n} survivors of the run of {prev.get('date')} ({prev.get('commit')}) re-run", **res}


def merged_targets(fresh: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets just run, and for the others their last result from mutation.json (in TARGETS order)."""
    path = RESULTS / "mutation.json"
    old: dict[str, dict[str, Any]] = {}
    if path.exists():
        prev = json.loads(path.read_text())
        for t in prev.get("targets", []):
            t.setdefault("commit", prev.get("commit", "unknown"))
            t.setdefault("date", prev.get("date"))
            t.setdefault("seed", prev.get("seed"))
            old[t["target"]] = t
    old.update({t["target"]: t for t in fresh})
    order = [t.name for t in TARGETS]
    return sorted(old.values(), key=lambda t: order.index(t["target"]) if t["target"] in order else len(order))


def write_results(fresh: list[dict[str, Any]], budget: int, seed: int) -> dict[str, Any]:
    from importlib.metadata import version
    targets = merged_targets(fresh)
    for t in targets:  # equivalence judged with the current list, also for targets kept from a previous run
        for s in t["survivors"]:
            s["equivalent"] = equivalent_of(t["target"], s["function"], s["diff"], s.get("line"))
        t["equivalent"] = sum(1 for s in t["survivors"] if s["equivalent"])
        t["survived_behaviour"] = t["survived"] - t["equivalent"]
    ran = sum(t["killed"] + t["timeout"] + t["survived"] for t in targets)
    survived = sum(t["survived"] for t in targets)
    behaviour = sum(t["survived_behaviour"] for t in targets)
    try:
        tool = f"cosmic-ray {version('cosmic-ray')}"
    except Exception:  # run from a bare path (PYTHONPATH) without package metadata
        tool = "cosmic-ray"
    doc = {"tool": tool, "date": max((t.get("date") or "") for t in targets) if targets else None,
           "budget_per_module": ", ".join(f"{t['target']} {t.get('budget') or 'all'}" for t in targets),
           "seed": seed, "operators": KEEP,
           "mutants_run": ran, "survived": survived, "survived_behaviour": behaviour,
           "survival_rate_percent": round(100 * survived / ran, 1) if ran else None,
           "behaviour_survival_rate_percent": round(100 * behaviour / ran, 1) if ran else None, "targets": targets}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mutation.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    (RESULTS / "mutation.md").write_text(markdown(doc))
    latest = RESULTS / "latest.md"
    if latest.exists():  # the bench report's mutation section, without re-running the bench
        from bench.report import with_mutation_section
        latest.write_text(with_mutation_section(latest.read_text(), doc))
    return doc


def markdown(doc: dict[str, Any]) -> str:
    lines = [f"# Mutation testing ({doc['tool']}, latest {doc['date']})", "",
             f"Survival rate: **{doc['survival_rate_percent']} %** ({doc['survived']} of {doc['mutants_run']} mutants "
             f"run survived, {doc['survived_behaviour']} of them not listed as equivalent: "
             f"{doc['behaviour_survival_rate_percent']} %; sample size per module: {doc['budget_per_module']}; "
             f"seed {doc['seed']}). Each module was measured at its own commit and date (a partial run keeps the "
             "others' last result; `+dirty`: the work tree had uncommitted changes then — before this stamp "
             "ignored bench/results/, those files alone made it dirty).", "",
             "| module | measured at | tests | listed | kept (operators, not annotations) | run | killed | timeout "
             "| survived | equivalent | survival | not applied (tool error) | time |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in doc["targets"]:
        kept = t["listed"] - t["operator_filtered"] - t["function_filtered"]
        ran = t["killed"] + t["timeout"] + t["survived"]
        unrun = (f" ({t['pending'] + t.get('invalid', 0)} not run: interrupted)"
                 if t.get("pending") or t.get("invalid") else "")
        lines.append(f"| {t['module'].split('retention/')[-1]} | {t.get('commit')}, {t.get('date')} | "
                     f"{', '.join(Path(x).name for x in t['tests'])} | "
                     f"{t['listed']} | {kept} | {ran}{unrun} | {t['killed']} | {t['timeout']} | {t['survived']} | "
                     f"{t.get('equivalent', 0)} | {t['survival_rate_percent']} % | {t.get('incompetent', 0)} | "
                     f"{t['seconds'] or '?'} s |")
    lines += ["", "Not applied: cosmic-ray's ExceptionReplacer fails on some `except` clauses (dotted names in a "
              "tuple, `binascii.Error`): those mutants are counted apart, neither killed nor survived.", "",
              "Operators kept: " + ", ".join(f"`{k}`" for k in doc["operators"]), ""]
    for t in doc["targets"]:
        for title, group in (("Survivors", [s for s in t["survivors"] if not s.get("equivalent")]),
                             ("Equivalent survivors (cannot change behaviour)",
                              [s for s in t["survivors"] if s.get("equivalent")])):
            if not group:
                continue
            lines += [f"## {title} in {t['module'].split('retention/')[-1]}", ""]
            for s in group:
                lines += [f"- line {s['line']} `{s['function']}` {s['operator']}"
                          + (f": {s['equivalent']}" if s.get("equivalent") else ""), "  ```diff",
                          *[f"  {d}" for d in s["diff"].splitlines()], "  ```"]
            lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated targets: " + ", ".join(t.name for t in TARGETS))
    parser.add_argument("--budget", type=int, default=int(os.environ.get("MUTATE_BUDGET", "60")),
                        help="mutants run per module, sampled (0 = all)")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--recheck", action="store_true",
                        help="re-run only the last session's survivors against the current tests")
    parser.add_argument("--collect", action="store_true",
                        help="run nothing: write the results of the sessions already in build/mutate/")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATE_JOBS", "2")),
                        help="modules mutated at the same time (each in its own copy)")
    args = parser.parse_args()
    chosen = [t for t in TARGETS if not args.only or t.name in args.only.split(",")]

    def log(msg: str) -> None:
        print(msg, flush=True)

    if args.recheck:
        stamp = code_stamp()
        doc = write_results([recheck_target(t, log, stamp) for t in chosen], args.budget, args.seed)
        log(f"survival rate {doc['survival_rate_percent']} % over {doc['mutants_run']} mutants (rechecked)")
        return
    if args.collect:
        done = []
        for t in chosen:
            session = REPO / "build" / "mutate" / t.name / "session.sqlite"
            if session.exists():
                res = collect(session, t)
                ran = res["killed"] + res["timeout"] + res["survived"]
                stamp_file = session.with_name("STAMP")
                done.append({"target": t.name, "module": t.module, "tests": t.tests, "functions": t.functions or "all",
                             "commit": stamp_file.read_text().strip() if stamp_file.exists() else "unknown",
                             "date": datetime.fromtimestamp(session.stat().st_mtime, UTC).strftime(
                                 "%Y-%m-%d %H:%M UTC"), "seed": args.seed,
                             "budget": args.budget if t.budget is None else t.budget,
                             **session_counts(session), "baseline_seconds": None, "seconds": None,
                             "survival_rate_percent": round(100 * res["survived"] / ran, 1) if ran else None, **res})
        doc = write_results(done, args.budget, args.seed)
        log(f"survival rate {doc['survival_rate_percent']} % over {doc['mutants_run']} mutants (collected)")
        return
    stamp = code_stamp()
    for t in chosen:  # every copy first: the work tree may change while the mutants run
        copy_tree(REPO / "build" / "mutate" / t.name)
        (REPO / "build" / "mutate" / t.name / "STAMP").write_text(stamp + "\n")  # for --collect
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda t: run_target(t, args.budget, args.seed, log, stamp), chosen))
    doc = write_results(results, args.budget, args.seed)
    log(f"survival rate {doc['survival_rate_percent']} % over {doc['mutants_run']} mutants "
        f"→ {RESULTS / 'mutation.md'}")


if __name__ == "__main__":
    main()
