"""`make run`: the whole stack on 127.0.0.1 with demo data; Ctrl-C stops it."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from local.runtime import LocalConfig, LocalStack


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the retention engine locally on moto")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8787")))
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    cfg = LocalConfig(port=args.port, host=args.host, write_key=os.environ.get("WRITE_KEY", "dev-write-key"),
                      admin_token=os.environ.get("ADMIN_TOKEN", "dev-admin-token"))
    stack = LocalStack(cfg)
    print("starting the local stack (moto, template synthesis, scenario library)…", flush=True)
    stack.start()
    url = f"http://{cfg.host}:{cfg.port}"
    print(f"""
Retention engine running at {url}
  write key    : {cfg.write_key}     (HTTP Basic user name; POST {url}/v1/batch)
  admin token  : {cfg.admin_token}   (Authorization: Bearer …; GET {url}/admin/customers/<id>)
  outbox       : GET {url}/_local/outbox
  virtual clock: GET {url}/_local/clock, POST {url}/_local/clock/advance {{"seconds": N}}
Ctrl-C stops it.""", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    print("stopping…", flush=True)
    stack.stop()


if __name__ == "__main__":
    main()
