"""The local stack as a separate process (what `make run` starts), for the e2e tests and the bench."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]


def start_local(module: str = "local.main", *, log_name: str | None = None,
                timeout: float = 600) -> tuple[subprocess.Popen[bytes], str, IO[Any]]:
    """Start `python -m <module> --port 0` and wait until it reports the port it bound (the OS picks a free
    one at bind time, so parallel starts never race for a port) and /health answers. Its output goes to
    build/<log_name>.log, one per pytest-xdist worker. Returns (process, base URL, the open log file)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    name = f"{log_name or 'local'}{'-' + worker if worker else ''}"
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
           "PYTHONPATH": f"{REPO / 'layers' / 'common' / 'python'}:{REPO}"}
    env.pop("PORT", None)
    (REPO / "build").mkdir(exist_ok=True)
    port_file = REPO / "build" / f"{name}.port"
    port_file.unlink(missing_ok=True)
    logfile = open(REPO / "build" / f"{name}.log", "w")  # noqa: SIM115 - the caller closes it
    proc = subprocess.Popen([sys.executable, "-m", module, "--port", "0", "--port-file", str(port_file)],  # noqa: S603
                            cwd=REPO, env=env, stdout=logfile, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        if port_file.exists():
            url = f"http://127.0.0.1:{int(port_file.read_text())}"
            try:
                with urllib.request.urlopen(url + "/health", timeout=10) as resp:  # noqa: S310 - our own URL
                    if resp.status == 200:
                        return proc, url, logfile
            except OSError:
                pass
        if proc.poll() is not None:
            logfile.close()
            raise RuntimeError(f"local stack exited with {proc.returncode} (see {logfile.name})")
        if time.monotonic() > deadline:
            stop_local(proc, logfile)
            raise RuntimeError(f"local stack did not start in time (see {logfile.name})")
        time.sleep(0.5)


def stop_local(proc: subprocess.Popen[bytes], logfile: IO[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    logfile.close()
