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
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8787")),
                        help="0: any free port, chosen when the server binds (see --port-file)")
    parser.add_argument("--port-file", default=None,
                        help="write the bound port here once /health answers (for a parent process)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--demo", type=int, default=int(os.environ.get("DEMO", "0") or 0), metavar="CUSTOMERS",
                        help="also generate a demo shop of this many customers, in the background (DEMO=N)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    cfg = LocalConfig(port=args.port, host=args.host, write_key=os.environ.get("WRITE_KEY", "dev-write-key"),
                      admin_token=os.environ.get("ADMIN_TOKEN", "dev-admin-token"))
    # no metrics are published locally (Powertools would print EMF JSON on stdout for every invocation and
    # again when Ctrl-C interrupts one): set before any handler module is imported
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    stack = LocalStack(cfg)
    print("starting the local stack (moto, template synthesis, scenario library)…", flush=True)
    try:
        stack.start()
    except KeyboardInterrupt:  # Ctrl-C while starting: a line, not a traceback
        print("stopped", flush=True)
        stack.stop()
        return
    url = f"http://{cfg.host}:{cfg.port}"
    print(f"""
Retention engine running at {url}
  write key    : {cfg.write_key}     (HTTP Basic user name; POST {url}/v1/batch)
  admin token  : {cfg.admin_token}   (Authorization: Bearer …; GET {url}/admin/customers/<id>)
  console      : {url}/console/   (sign in with the admin token above)
  outbox       : GET {url}/_local/outbox
  virtual clock: GET {url}/_local/clock, POST {url}/_local/clock/advance {{"seconds": N}}
  feedback     : POST {url}/_local/feedback {{"to": "<email>", "type": "Open|Click|Bounce|Complaint|Delivery"}}

The CLI (another terminal):
  export RETENTION_URL={url} RETENTION_ADMIN_TOKEN={cfg.admin_token} RETENTION_WRITE_KEY={cfg.write_key}
  ./retention rules list
Ctrl-C stops it.""", flush=True)
    if args.port_file:
        _report_port(args.port_file, cfg.port)
    if args.demo > 0:
        threading.Thread(target=_demo, args=(url, cfg, args.demo), daemon=True).start()
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    print("stopping…", flush=True)
    stack.stop()


def _report_port(path: str, port: int) -> None:
    """Written whole or not at all (rename): the parent never reads half a number."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        fh.write(str(port))
    os.replace(tmp, path)


def _demo(url: str, cfg: LocalConfig, customers: int) -> None:
    """The demo shop goes in after /health answers: the stack is usable while it loads."""
    from local.demo import DemoError, generate
    print(f"generating a demo shop of {customers} customers in the background…", flush=True)
    try:
        summary = generate(url, cfg.write_key, customers=customers, admin_token=cfg.admin_token)
    except DemoError as exc:
        print(f"demo failed: {exc}", flush=True)
        return
    print(f"demo shop ready: {summary.get('customers')} customers, {summary.get('events')} events, "
          f"{summary.get('orders')} orders (try: .venv/bin/retention report)", flush=True)


if __name__ == "__main__":
    main()
