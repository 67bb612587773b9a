"""`retention import FILE`: customers and orders (CSV) or Segment messages (JSON lines) into /v1/batch.

- CSV columns: user_id, email, phone, first_name, created_at, order_id, total, currency, shop,
  ordered_at (other non-empty columns become identify traits). A row with `order_id` is an
  `Order Completed` track event at `ordered_at` with messageId `import-<order_id>`; a row with an
  email (or phone, first_name) is an identify call with messageId
  `import-identify-<user_id>-<sha of the traits>`. Deterministic ids: a re-run is deduplicated by the
  API, so importing twice changes nothing.
- JSON lines: one Segment message per line, sent as is (without `sentAt`, so historical timestamps are
  kept; a message without messageId gets `import-<sha of the line>`).
- 100 messages per request (never splitting a row), 4 requests in parallel, 429 / 5xx / connection
  errors retried with backoff (Retry-After honoured), a 413 split in two.
- `FILE.progress` holds the last line whose messages were all accepted (rows commit in file order);
  `--resume` continues after it; it is removed when the import completes.
- Events older than the history horizon only update profiles and KPIs (the API's rule), so years of
  orders can be imported without starting journeys.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli.client import ApiError, CliError
from cli.context import Ctx
from cli.files import json_lines

CSV_HELP = """CSV columns (a header row; UTF-8; any order; empty cells are ignored):
  user_id       required: the shop's customer id (the userId of every event)
  email, phone, first_name
                contact data (an identify call); created_at = the sign-up time (ISO 8601)
  email_consent, sms_consent
                true/false (yes/no): marketing consent as the shop recorded it; without email_consent=true
                no marketing email goes out (transactional messages do not need it)
  order_id, ordered_at, total, currency, shop
                one Order Completed per order_id at ordered_at (required with order_id); a customer with
                several orders has several rows (the contact columns may repeat or stay empty)
  any other column
                an identify trait as is (birthday, timezone, locale, vip …; true/false become booleans)
Example:
  user_id,email,first_name,email_consent,order_id,ordered_at,total,currency,shop
  u1,anna@example.com,Анна,true,o-1,2025-03-01T12:00:00Z,1290,RUB,moscow-1
Old orders (older than the history horizon, 24 h) update profiles, KPIs and segments and start no journey.
A re-run is deduplicated (deterministic messageIds); --resume continues after FILE.progress."""

COLUMNS = ("user_id", "email", "phone", "first_name", "created_at", "order_id", "total", "currency", "shop",
           "ordered_at")
IDENTIFY_TRAITS = ("email", "phone", "first_name", "created_at")
MAX_BATCH = 500
MAX_ATTEMPTS = 8


@dataclass
class Row:
    line: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass
class Batch:
    seq: int
    last_line: int
    messages: list[dict[str, Any]]
    lines: list[int]  # the file line of each message


@dataclass
class Result:
    lines: int = 0
    sent: int = 0
    accepted: int = 0
    duplicates: int | None = None
    rejected: list[tuple[int, str | None, str]] = field(default_factory=list)


def iso(value: str, column: str) -> str:
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
    except ValueError:
        raise ValueError(f"{column} {value!r} is not an ISO 8601 date or timestamp (2024-05-01T12:00:00Z)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def money(value: str) -> float:
    text = value.strip().replace("\u00a0", "").replace(" ", "").replace(",", ".")
    try:
        return round(float(text), 2)
    except ValueError:
        raise ValueError(f"total {value!r} is not a number") from None


def _trait_value(value: str) -> Any:
    lowered = value.strip().lower()
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no"):
        return False
    return value.strip()


def row_messages(record: dict[str, str], line: int) -> Row:
    """One CSV record → its identify and/or Order Completed messages (or why it is skipped)."""
    row = Row(line)
    values = {k: (v or "").strip() for k, v in record.items() if k}
    user = values.get("user_id", "")
    if not user:
        row.error = "no user_id"
        return row
    try:
        traits: dict[str, Any] = {k: values[k] for k in IDENTIFY_TRAITS if values.get(k)}
        if "created_at" in traits:
            traits["created_at"] = iso(traits["created_at"], "created_at")
        traits.update({k: _trait_value(v) for k, v in values.items() if k not in COLUMNS and v})
        if values.get("email") or values.get("phone") or values.get("first_name"):
            digest = hashlib.sha256(json.dumps(traits, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
            message: dict[str, Any] = {"type": "identify", "userId": user, "traits": traits,
                                       "messageId": f"import-identify-{user}-{digest}"}
            stamp = traits.get("created_at") or (iso(values["ordered_at"], "ordered_at")
                                                  if values.get("ordered_at") else None)
            if stamp:
                message["timestamp"] = stamp
            row.messages.append(message)
        if values.get("order_id"):
            if not values.get("ordered_at"):
                raise ValueError(f"order {values['order_id']} has no ordered_at")
            props: dict[str, Any] = {"order_id": values["order_id"]}
            if values.get("total"):
                props["total"] = props["revenue"] = money(values["total"])
            for key in ("currency", "shop"):
                if values.get(key):
                    props[key] = values[key]
            row.messages.append({"type": "track", "userId": user, "event": "Order Completed", "properties": props,
                                 "timestamp": iso(values["ordered_at"], "ordered_at"),
                                 "messageId": f"import-{values['order_id']}"})
    except ValueError as exc:
        row.messages = []
        row.error = str(exc)
    if not row.messages and row.error is None:
        row.error = "nothing to import (no email, phone, first_name or order_id)"
    return row


def csv_rows(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            return
        if "user_id" not in header:
            raise CliError(f"{path}:1: no user_id column (columns: {', '.join(COLUMNS)})", exit_code=2)
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(header):
                yield Row(reader.line_num, error=f"{len(values)} fields, the header has {len(header)}")
                continue
            yield row_messages(dict(zip(header, values, strict=False)), reader.line_num)


def jsonl_rows(path: Path) -> Iterator[Row]:
    for line in json_lines(path, "a line is one message (a JSON object)"):
        if line.value is None:
            yield Row(line.number, error=line.error)
            continue
        message = line.value
        message.pop("sentAt", None)  # keep the message's own timestamp (history import)
        if not message.get("messageId"):
            message["messageId"] = "import-" + hashlib.sha256(line.text.strip().encode()).hexdigest()[:24]
        yield Row(line.number, [message])


class Importer:
    def __init__(self, ctx: Ctx, path: Path, *, fmt: str | None = None, batch: int = 100, resume: bool = False,
                 workers: int = 4, sleep: Callable[[float], None] = time.sleep) -> None:
        if not path.is_file():
            raise CliError(f"{path}: no such file", exit_code=2)
        self.ctx = ctx
        self.path = path
        self.format = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
        if self.format not in ("csv", "jsonl"):
            raise CliError(f"unknown format {self.format!r}: csv or jsonl", exit_code=2)
        self.batch_size = min(max(batch, 1), MAX_BATCH)
        self.resume = resume
        self.workers = max(1, workers)
        self.sleep = sleep
        self.progress_file = Path(str(path) + ".progress")
        self.result = Result()
        self.reached = False  # the API answered at least once

    # ---- progress file ----------------------------------------------------------------------------------
    def start_line(self) -> int:
        if not self.progress_file.exists():
            return 0
        try:
            line = int(self.progress_file.read_text().strip() or 0)
        except ValueError:
            raise CliError(f"{self.progress_file}: not a line number; delete it to start over", exit_code=2) from None
        if self.resume:
            return line
        self.ctx.warn(f"note: {self.progress_file} says lines 1-{line} were imported; starting from the beginning "
                      "(--resume continues after it; already imported messages are deduplicated anyway)")
        return 0

    def commit(self, line: int) -> None:
        tmp = self.progress_file.with_name(self.progress_file.name + ".tmp")
        tmp.write_text(f"{line}\n")
        tmp.replace(self.progress_file)

    # ---- batches ----------------------------------------------------------------------------------------
    def rows(self) -> Iterator[Row]:
        return csv_rows(self.path) if self.format == "csv" else jsonl_rows(self.path)

    def batches(self, after: int) -> Iterator[Batch]:
        seq = 0
        messages: list[dict[str, Any]] = []
        lines: list[int] = []
        last = after
        seen_identify: set[str] = set()
        for row in self.rows():
            if row.line <= after:
                continue
            if row.error:
                self.result.rejected.append((row.line, None, row.error))
            fresh = []
            for m in row.messages:
                mid = str(m.get("messageId"))
                if m.get("type") == "identify" and mid.startswith("import-identify-"):
                    if mid in seen_identify:
                        continue  # the same customer on several order rows: one identify is enough
                    seen_identify.add(mid)
                fresh.append(m)
            if messages and len(messages) + len(fresh) > self.batch_size:
                yield Batch(seq, last, messages, lines)
                seq += 1
                messages, lines = [], []
            messages += fresh
            lines += [row.line] * len(fresh)
            last = row.line
        if messages or last > after:
            yield Batch(seq, last, messages, lines)

    # ---- one request, with retries ----------------------------------------------------------------------
    def post(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        if not messages:
            return {"accepted": 0, "rejected": []}
        last_problem = ""
        for attempt in range(MAX_ATTEMPTS):
            try:
                resp = self.ctx.client.batch(messages)
            except CliError as exc:  # connection refused / timeout: the API may come back …
                if not self.reached:
                    raise  # … unless it never answered: a wrong URL fails at once
                last_problem = exc.message
                self.sleep(min(30.0, 0.5 * 2 ** attempt) * random.uniform(0.5, 1.0))
                continue
            self.reached = True
            if resp.status_code == 200:
                return dict(resp.json())
            if resp.status_code == 413 and len(messages) > 1:
                half = len(messages) // 2
                first, second = self.post(messages[:half]), self.post(messages[half:])
                rejected = list(first.get("rejected", [])) + [
                    {**r, "index": int(r["index"]) + half} for r in second.get("rejected", [])]
                merged = {"accepted": first.get("accepted", 0) + second.get("accepted", 0), "rejected": rejected}
                if "duplicates" in first or "duplicates" in second:
                    merged["duplicates"] = first.get("duplicates", 0) + second.get("duplicates", 0)
                return merged
            if resp.status_code == 429 or resp.status_code >= 500:
                last_problem = f"HTTP {resp.status_code}"
                retry_after = resp.headers.get("Retry-After", "")
                delay = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else \
                    min(30.0, 0.5 * 2 ** attempt) * random.uniform(0.5, 1.0)
                self.sleep(delay)
                continue
            err = self.ctx.client.error_of(resp)
            if resp.status_code == 401:
                hint = "check the write key (--write-key or RETENTION_WRITE_KEY)"
                raise ApiError(401, err.code, f"{err.message}: {hint}")
            raise err
        raise CliError(f"gave up after {MAX_ATTEMPTS} attempts ({last_problem})")

    # ---- the run ----------------------------------------------------------------------------------------
    def run(self) -> Result:
        after = self.start_line()
        with self.path.open("rb") as handle:
            total_lines = sum(1 for _ in handle)
        self.result.lines = max(0, total_lines - after)
        bar = self.ctx.progress(f"importing {self.path.name}", total_lines)
        bar.update(after)
        in_flight: dict[Future[dict[str, Any]], Batch] = {}
        done_seqs: set[int] = set()
        last_line: dict[int, int] = {}
        state = {"next": 0, "committed": after}
        fatal: list[CliError] = []

        def collect(futures: set[Future[dict[str, Any]]]) -> None:
            for fut in futures:
                batch = in_flight.pop(fut)
                try:
                    reply = fut.result()
                except CliError as exc:
                    fatal.append(exc)
                    continue
                self.result.accepted += int(reply.get("accepted", 0))
                if "duplicates" in reply:
                    self.result.duplicates = (self.result.duplicates or 0) + int(reply["duplicates"])
                for r in reply.get("rejected", []):
                    index = int(r.get("index", -1))
                    line = batch.lines[index] if 0 <= index < len(batch.lines) else batch.last_line
                    self.result.rejected.append((line, r.get("messageId"), str(r.get("error"))))
                done_seqs.add(batch.seq)
                while state["next"] in done_seqs:
                    state["committed"] = last_line.pop(state["next"])
                    done_seqs.discard(state["next"])
                    state["next"] += 1
                self.commit(state["committed"])
                bar.update(state["committed"], extra=f"· {self.result.accepted} accepted")

        pool = ThreadPoolExecutor(max_workers=self.workers)
        try:
            for batch in self.batches(after):
                if fatal:
                    break
                while len(in_flight) >= self.workers * 2:
                    collect(wait(set(in_flight), return_when=FIRST_COMPLETED).done)
                last_line[batch.seq] = batch.last_line
                self.result.sent += len(batch.messages)
                in_flight[pool.submit(self.post, batch.messages)] = batch
            while in_flight:
                collect(wait(set(in_flight), return_when=FIRST_COMPLETED).done)
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.finish()
            raise CliError(f"interrupted: lines up to {state['committed']} are imported; run again with --resume "
                           "to continue", exit_code=130) from None
        finally:
            pool.shutdown(wait=True)
        bar.finish()
        if fatal:
            raise CliError(f"import stopped: {fatal[0].message}\nlines up to {state['committed']} are imported; "
                           f"run again with --resume to continue", exit_code=fatal[0].exit_code)
        self.progress_file.unlink(missing_ok=True)
        return self.result


def run_import(ctx: Ctx, path: str, fmt: str | None, batch: int, resume: bool, workers: int) -> int:
    importer = Importer(ctx, Path(path), fmt=fmt, batch=batch, resume=resume, workers=workers)
    res = importer.run()
    rejected = sorted(res.rejected)
    dup = f" ({res.duplicates} already imported)" if res.duplicates else ""
    if ctx.json_output:
        ctx.dump({"file": path, "lines": res.lines, "sent": res.sent, "accepted": res.accepted,
                  "duplicates": res.duplicates,
                  "rejected": [{"line": line, "messageId": mid, "error": err} for line, mid, err in rejected]})
    else:
        ctx.echo(f"imported {path}: {res.lines} lines, {res.sent} messages sent, {res.accepted} accepted{dup}, "
                 f"{len(rejected)} rejected")
        for line, mid, error in rejected:
            ctx.echo(f"  {path}:{line}: " + (f"{mid}: " if mid else "") + error)
    return 1 if rejected else 0
