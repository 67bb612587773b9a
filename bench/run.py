"""`make bench`: every section in one run on this machine, then bench/results/latest.json and latest.md.

    python -m bench.run                       # everything (≈ 8 minutes on a shared 2-core machine)
    python -m bench.run --only requests,cpu   # some sections; the others are taken from latest.json
    python -m bench.run --readme              # also rewrite README.md's `## Benchmarks and cost` section
    python -m bench.run --report-only --readme  # no measurement: cost model, bars and tables from latest.json

Sections: requests (AWS requests and capacity units, moto in process), growth (the same per plain event, sent
email and feedback at 0 / 100 / 500 / 2,000 orders), logs (log bytes per invocation),
cpu (AWS stubbed), coldstart (handler imports vs boto3), tick (1k/10k/100k profiles), throughput (the
local stack under a Segment client's load), then the cost model and the DESIGN §10 bars."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SECTIONS = ("requests", "growth", "logs", "cpu", "coldstart", "tick", "throughput", "hostile")


def _log(msg: str) -> None:
    print(msg, flush=True)


def _meta() -> dict[str, Any]:
    def version(pkg: str) -> str:
        try:
            from importlib.metadata import version as v
            return v(pkg)
        except Exception:
            return "?"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True,
                                    timeout=10).stdout.strip())
    except Exception:
        commit, dirty = "?", True
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
            "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "commit": commit + ("+uncommitted" if dirty else ""),
            "versions": {p: version(p) for p in ("moto", "boto3", "pydantic", "aws-lambda-powertools",
                                                 "segment-analytics-python")}}


def run_section(name: str, results: dict[str, Any]) -> Any:
    if name == "requests":
        from bench import aws_requests
        return aws_requests.run(log=_log)
    if name == "growth":
        from bench import growth
        return growth.run(log=_log)
    if name == "logs":
        from bench import logs
        return logs.run(log=_log)
    if name == "cpu":
        from bench import cpu
        return cpu.run(log=_log)
    if name == "coldstart":
        from bench import coldstart
        return coldstart.run(log=_log)
    if name == "tick":
        from bench import tick_scaling
        return tick_scaling.run(log=_log)
    if name == "throughput":
        from bench import throughput
        rows = (results.get("requests") or {}).get("rows")
        return throughput.run(log=_log, per_event=rows)
    if name == "hostile":
        from bench import hostile
        return hostile.run(log=_log)
    raise ValueError(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated sections to run (others from latest.json)")
    parser.add_argument("--readme", action="store_true", help="rewrite README.md's Benchmarks and cost section")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: recompute the cost model, bars and tables from latest.json")
    args = parser.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {sorted(unknown)}; choose from {SECTIONS}")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    RESULTS.mkdir(parents=True, exist_ok=True)
    previous: dict[str, Any] = {}
    latest = RESULTS / "latest.json"
    if (only or args.report_only) and latest.exists():
        previous = json.loads(latest.read_text())
    if args.report_only:
        only = ["-"]
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": previous["meta"] if args.report_only and previous else _meta()}
    timings: dict[str, float] = {}
    for name in SECTIONS:
        if only and name not in only:
            if name in previous:
                results[name] = previous[name]
                results.setdefault("reused", []).append(name)
            continue
        _log(f"[bench] {name} …")
        t0 = time.perf_counter()
        try:
            results[name] = run_section(name, results)
            if isinstance(results[name], dict):  # which code measured it (a reused section keeps its own)
                results[name]["measured_at_commit"] = results["meta"]["commit"]
        except Exception as exc:  # one broken section still leaves the others' results
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
            _log(f"[bench] {name} FAILED: {type(exc).__name__}: {exc}")
        timings[name] = round(time.perf_counter() - t0, 1)
        _log(f"[bench] {name} done in {timings[name]:.0f}s")
    from bench import cost, report
    if "rows" in (results.get("requests") or {}):
        try:
            results["cost"] = cost.model(results["requests"], _ok(results.get("cpu")), _ok(results.get("logs")))
        except Exception as exc:
            results["cost"] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
    results["bars"] = report.bars(results)
    if not args.report_only:
        results["meta"]["section_seconds"] = timings
        results["meta"]["total_seconds"] = round(time.perf_counter() - started, 1)
        results["meta"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    else:
        results.pop("reused", None)
    latest.write_text(json.dumps(results, indent=1, ensure_ascii=False, default=str))
    md = report.render(results)
    (RESULTS / "latest.md").write_text(md)
    if args.readme:
        report.update_readme(REPO / "README.md", results)
    _log(f"[bench] wrote {latest.relative_to(REPO)} and latest.md in {time.perf_counter() - started:.0f}s")
    failed = [n for n in SECTIONS if isinstance(results.get(n), dict) and "error" in results[n]]
    if failed:
        _log(f"[bench] sections that failed: {failed}")
    return 1 if failed else 0


def _ok(section: Any) -> Any:
    return section if isinstance(section, dict) and "error" not in section else None


if __name__ == "__main__":
    sys.exit(main())
