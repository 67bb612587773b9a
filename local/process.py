"""The local stack as a separate process (what `make run` starts), for the e2e tests and the bench."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_local(module: str = "local.main", *, log_name: str | None = None,
                timeout: float = 240) -> tuple[subprocess.Popen[bytes], str, IO[Any]]:
    """Start `python -m <module> --port N` on a free port and wait for /health; its output goes to
    build/<log_name>.log. Returns (process, base URL, the open log file)."""
    port = free_port()
    env = {**os.environ, "PORT": str(port), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
           "PYTHONPATH": f"{REPO / 'layers' / 'common' / 'python'}:{REPO}"}
    (REPO / "build").mkdir(exist_ok=True)
    logfile = open(REPO / "build" / f"{log_name or f'local-{port}'}.log", "w")  # noqa: SIM115 - the caller closes it
    proc = subprocess.Popen([sys.executable, "-m", module, "--port", str(port)], cwd=REPO, env=env,  # noqa: S603
                            stdout=logfile, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:  # noqa: S310 - our own http URL
                if resp.status == 200:
                    return proc, url, logfile
        except OSError:
            pass
        if proc.poll() is not None:
            logfile.close()
            raise RuntimeError(f"local stack exited with {proc.returncode} (see {logfile.name})")
        if time.monotonic() > deadline:
            stop_local(proc, logfile)
            raise RuntimeError(f"local stack did not answer /health in time (see {logfile.name})")
        time.sleep(0.5)


def stop_local(proc: subprocess.Popen[bytes], logfile: IO[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    logfile.close()
