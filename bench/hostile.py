"""Hostile ingestion bodies (issue 15): CPU seconds until the answer, through the library's request path
(retention.ingestion.api.accept: key, decode, parse, caps) with the key lookup stubbed. The bar: a 2 MB
hostile gzip body answers in < 0.5 s of CPU (the Lambda's timeout is 10 s; before the caps 2 MB of empty gzip
members took 8.4 s to answer 400)."""

from __future__ import annotations

import base64
import gzip
import json
import time
from datetime import UTC, datetime
from typing import Any

from retention.core.config import Source
from retention.core.errors import RetentionError, UnauthorizedError
from retention.ingestion import api

KEY = "wk_bench"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BAR_SECONDS = 0.5


class _Config:
    def source_of(self, key: str | None) -> Source:
        if key != KEY:
            raise UnauthorizedError("invalid write key")
        return Source(source_id="src_bench")


class _Deps:
    config = _Config()


def bodies() -> dict[str, bytes]:
    empty = gzip.compress(b"")
    many = json.dumps({"batch": [{}] * 115_000}).encode()
    nested = ('{"batch": [' + ",".join(['{"a":[[[]]]}'] * 380_000) + "]}").encode()  # ~5 MB after gunzip
    ctx_heavy = {"batch": [{"type": "track", "userId": "u", "event": "E", "messageId": f"m{i}"} for i in range(2500)],
                 "context": {"pad": "x" * 1500}}
    return {
        "2 MB of empty gzip members": empty * (2_000_000 // len(empty)),
        "gzip of 115,000 empty messages (tiny body)": gzip.compress(many, 9),
        "gzip bomb (5 MB+ of zeros)": gzip.compress(b"\x00" * (6 * 1024 * 1024), 9),
        "5 MB of nested JSON, 380,000 messages (gzip)": gzip.compress(nested, 6),
        "2,500 messages with a batch context (gzip)": gzip.compress(json.dumps(ctx_heavy).encode(), 6),
    }


def _answer(body: bytes, key: str | None) -> tuple[str, float]:
    headers = {"Content-Encoding": "gzip"}
    if key:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    started = time.process_time()
    try:
        api.accept(_Deps(), "batch", base64.b64encode(body).decode(), is_base64=True,  # type: ignore[arg-type]
                   headers=headers, received_at=NOW)
        answer = "200"
    except RetentionError as exc:
        answer = f"{exc.status} {exc.code}"
    except AttributeError:  # a valid body reached the ingestor, which the stub deps do not have
        answer = "parsed (would be ingested)"
    return answer, time.process_time() - started


def run(log: Any = print) -> dict[str, Any]:
    rows = []
    for name, body in bodies().items():
        for who, key in (("no key", None), ("bad key", "wrong"), ("valid key", KEY)):
            answer, cpu = min((_answer(body, key) for _ in range(3)), key=lambda r: r[1])
            rows.append({"body": name, "compressed_bytes": len(body), "key": who, "answer": answer,
                         "cpu_s": round(cpu, 4)})
            log(f"[hostile] {name} ({len(body)} B), {who}: {answer} in {cpu:.3f} s CPU")
    worst = max(r["cpu_s"] for r in rows)
    return {"rows": rows, "worst_cpu_s": worst, "bar_s": BAR_SECONDS, "ok": worst < BAR_SECONDS}


if __name__ == "__main__":
    run()
