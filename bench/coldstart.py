"""Section 3: cold start — the import time of every functions/*/handler.py as a ratio to `import boto3`,
each in a fresh interpreter (subprocess), paired with an `import boto3` run next to it (alternating which goes
first) and reported as the median of the pairs' ratios, with the environment of a
deployed function (LAMBDA_TASK_ROOT set: Powertools' Tracer is active and loads the X-Ray SDK, as it does
with active tracing).

Two variants:
- precompiled: the .pyc files of every module are there (what `pip install` leaves on a laptop);
- layer as built: what infra/layer.py ships — the layer's packages (every third-party package the handlers
  import but the runtime's boto3 family, plus the retention library) copied into a fresh directory and
  byte-compiled there with `--invalidation-mode unchecked-hash`, first on sys.path; boto3 and the standard
  library come precompiled, as in the Lambda runtime. (Before the layer shipped .pyc, every layer module
  was compiled from source at each cold start: 3.2–4.8× `import boto3`.)

Each import is timed twice: wall clock (what a cold start waits) and the CPU time of the importing process
(`cpu_ratio_to_boto3`): on a shared, loaded machine the wall clock of a ~100 ms import swings several-fold
with scheduling, the CPU time much less; when the two ratios disagree, trust the CPU one and re-run on a
quiet machine. The bars use the wall-clock ratio.

A handler over the bar gets an `-X importtime` breakdown: self time summed by top-level package, and the
handler's direct imports with their cumulative time."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BAR = 1.3

_TIMED = """
import sys, time
sys.path.insert(0, {fn_dir!r})
try:  # a development artefact (pip install -e): loaded before the timing, it is not on Lambda
    import __editable___retention_engine_0_1_0_finder  # noqa: F401
except ImportError:
    pass
{pre}
t0, c0 = time.perf_counter(), time.process_time()
{body}
t1, c1 = time.perf_counter(), time.process_time()
print(f"BENCH_IMPORT_S={{t1 - t0:.6f}}")
print(f"BENCH_IMPORT_CPU_S={{c1 - c0:.6f}}")
"""


def handler_names() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "functions").glob("*/handler.py"))


def lambda_env(name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "AWS_ENDPOINT"))}
    env.update({
        "PYTHONPATH": str(REPO / "layers" / "common" / "python"),
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "LAMBDA_TASK_ROOT": str(REPO / "functions" / name), "AWS_LAMBDA_FUNCTION_NAME": f"retention-{name}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512", "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
        "POWERTOOLS_SERVICE_NAME": f"retention-{name}", "POWERTOOLS_METRICS_NAMESPACE": "Retention",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",  # as infra/stack.py sets it for every function
        "PROFILES_TABLE": "profiles", "EVENTS_TABLE": "events", "CONFIG_TABLE": "config", "DUE_TABLE": "due",
        "MESSAGES_TABLE": "messages", "IDEMPOTENCY_TABLE": "idempotency",
        "SEND_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/000000000000/send",
        "RECOMPUTE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/000000000000/recompute",
        "SENDER_EMAIL": "Shop <news@example.com>", "DUE_SHARDS": "4",
    })
    return env


_LAYER: dict[str, str] = {}


def built_layer() -> str:
    """A directory laid out like the deployed layer's python/: the handlers' third-party packages (minus what
    the runtime provides) and the library, byte-compiled with unchecked-hash .pyc, as infra/layer.py does."""
    if "dir" in _LAYER:
        return _LAYER["dir"]
    import shutil

    from infra.layer import RUNTIME_PROVIDED
    probe = ("import sys, os\n"
             + "".join(f"sys.path.insert(0, {str(REPO / 'functions' / n)!r}); import importlib; "
                       f"sys.modules.pop('handler', None); importlib.import_module('handler'); sys.path.pop(0)\n"
                       for n in handler_names())
             + "print('\\n'.join(sorted({(m.__file__ or '') for m in list(sys.modules.values()) "
               "if getattr(m, '__file__', None) and 'site-packages' in m.__file__})))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=str(REPO), env=lambda_env("track_event"),
                         capture_output=True, text=True, timeout=300, check=True).stdout
    tops: set[Path] = set()
    for line in out.splitlines():
        path = Path(line)
        parts = path.parts
        if "site-packages" not in parts:
            continue
        i = parts.index("site-packages")
        top = Path(*parts[:i + 2])
        name = top.name.removesuffix(".py").split(".")[0].lower()
        if name in RUNTIME_PROVIDED or (name.startswith("_") and name != "_yaml"):
            continue
        tops.add(top)
    root = Path(tempfile.mkdtemp(prefix="bench-layer-")) / "python"
    root.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for top in sorted(tops):
        if top.is_dir():
            shutil.copytree(top, root / top.name, ignore=ignore)
        else:
            shutil.copy2(top, root / top.name)
    shutil.copytree(REPO / "layers" / "common" / "python" / "retention", root / "retention", ignore=ignore)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                    str(root)], capture_output=True, timeout=600, check=False)
    _LAYER["dir"] = str(root)
    _LAYER["packages"] = ",".join(sorted(t.name for t in tops))
    return str(root)


def _run(target: str, variant: str, importtime: bool = False) -> tuple[float, str, float]:
    """Import `target` ("boto3" or a handler name) in a fresh interpreter; returns (wall seconds, stderr,
    CPU seconds of the importing process)."""
    name = target if target != "boto3" else "track_event"
    fn_dir = str(REPO / "functions" / name)
    body = "import boto3" if target == "boto3" else "import handler"
    pre = ""
    env = lambda_env(name)
    if variant == "layer_as_built":
        layer = built_layer()
        env["PYTHONPATH"] = layer  # /opt/python comes before the runtime's packages
        pre = f"sys.path.insert(1, {layer!r})"
    code = _TIMED.format(fn_dir=fn_dir, pre=pre, body=body)
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", code]
    proc = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"import of {target} failed: {proc.stderr[-2000:]}")
    values = dict(x.split("=", 1) for x in proc.stdout.splitlines() if x.startswith("BENCH_IMPORT_"))
    return float(values["BENCH_IMPORT_S"]), proc.stderr, float(values["BENCH_IMPORT_CPU_S"])


def importtime_breakdown(stderr: str, top: int = 8, root: str = "handler") -> dict[str, Any]:
    """Self time summed per top-level package, and the direct imports of `root` (cumulative) — only for the
    lines of root's own subtree (importtime prints children before their parent)."""
    parsed = []
    for raw in stderr.splitlines():
        if not raw.startswith("import time:") or "|" not in raw or "self [us]" in raw:
            continue
        parts = raw.split("|")
        name_field = parts[2]
        parsed.append((int(parts[0].split(":")[1]), int(parts[1]),
                       (len(name_field) - len(name_field.lstrip(" "))) // 2, name_field.strip()))
    end = next((i for i, p in enumerate(parsed) if p[3] == root), None)
    if end is None:
        return {"self_ms_by_package": {}, "handler_imports_cumulative_ms": {}, "top_modules_self_ms": {}}
    depth = parsed[end][2]
    start = end
    while start > 0 and parsed[start - 1][2] > depth:
        start -= 1
    subtree = parsed[start:end + 1]
    by_package: dict[str, int] = {}
    for self_us, _, _, name in subtree:
        by_package[name.split(".")[0]] = by_package.get(name.split(".")[0], 0) + self_us
    children = {name: cum for _, cum, d, name in subtree if d == depth + 1}
    ranked = sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)[:top]
    kids = sorted(children.items(), key=lambda kv: kv[1], reverse=True)[:top]
    modules = sorted(((name, self_us) for self_us, _, _, name in subtree), key=lambda kv: kv[1], reverse=True)
    return {"self_ms_by_package": {k: round(v / 1000, 1) for k, v in ranked},
            "handler_imports_cumulative_ms": {k: round(v / 1000, 1) for k, v in kids},
            "top_modules_self_ms": {k: round(v / 1000, 1) for k, v in modules[:top]}}


def run(log: Any = print, reps: int = 5, layer_reps: int = 5) -> dict[str, Any]:
    started = time.perf_counter()
    names = handler_names()
    targets = ["boto3", *names]
    results: dict[str, Any] = {}
    for variant, n in (("precompiled", reps), ("layer_as_built", layer_reps)):
        for t in targets:  # warm the .pyc of the precompiled variant and the OS file cache
            _run(t, variant)
        samples: dict[str, list[float]] = {t: [] for t in targets}
        cpu: dict[str, list[float]] = {t: [] for t in targets}
        ratios: dict[str, list[float]] = {t: [] for t in names}
        cpu_ratios: dict[str, list[float]] = {t: [] for t in names}
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        for rep in range(n):
            for t in names:
                # paired: `import boto3` right next to each handler (alternating which goes first), so a
                # noisy neighbour's burst hits both sides of one ratio alike; the handler's ratio is the
                # median of its pairs' ratios
                pair = ["boto3", t] if rep % 2 == 0 else [t, "boto3"]
                got = {x: _run(x, variant) for x in pair}
                (b_wall, _, b_cpu), (h_wall, _, h_cpu) = got["boto3"], got[t]
                samples["boto3"].append(b_wall)
                cpu["boto3"].append(b_cpu)
                samples[t].append(h_wall)
                cpu[t].append(h_cpu)
                ratios[t].append(h_wall / b_wall)
                cpu_ratios[t].append(h_cpu / max(b_cpu, 1e-9))
        base = statistics.median(samples["boto3"])
        cpu_base = statistics.median(cpu["boto3"])
        rows = {}
        for t in names:
            med = statistics.median(samples[t])
            ratio = statistics.median(ratios[t])
            rows[t] = {"median_ms": round(med * 1000, 1), "ratio_to_boto3": round(ratio, 2),
                       "meets_bar": ratio <= BAR, "samples_ms": [round(x * 1000, 1) for x in samples[t]],
                       "pair_ratios": [round(x, 2) for x in ratios[t]],
                       "cpu_median_ms": round(statistics.median(cpu[t]) * 1000, 1),
                       "cpu_ratio_to_boto3": round(statistics.median(cpu_ratios[t]), 2)}
        results[variant] = {"boto3_median_ms": round(base * 1000, 1),
                            "boto3_samples_ms": [round(x * 1000, 1) for x in samples["boto3"]],
                            "boto3_cpu_median_ms": round(cpu_base * 1000, 1), "load_average_1min": load,
                            "handlers": rows}
        log(f"  coldstart {variant}: boto3 {base * 1000:.0f} ms (CPU {cpu_base * 1000:.0f} ms); " + ", ".join(
            f"{t} {r['ratio_to_boto3']:.2f}x (CPU {r['cpu_ratio_to_boto3']:.2f}x)" for t, r in rows.items()))
    # why: -X importtime for the handlers over the bar (precompiled variant: the code, not the compiler)
    why: dict[str, Any] = {}
    for t, r in results["precompiled"]["handlers"].items():
        if not r["meets_bar"]:
            _, err, _ = _run(t, "precompiled", importtime=True)
            why[t] = importtime_breakdown(err)
    _, err, _ = _run("boto3", "precompiled", importtime=True)
    results["boto3_breakdown"] = importtime_breakdown(err, top=5, root="boto3")
    results["why"] = why
    results["bar"] = BAR
    results["layer_packages"] = _LAYER.get("packages", "").split(",")
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    return results


if __name__ == "__main__":
    import json
    print(json.dumps(run(reps=3, layer_reps=2), indent=1))
