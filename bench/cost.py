"""Section 5: the cost model — the counted requests and capacity units (section 1), CPU (section 2) and log
volume (bench.logs) priced with AWS list prices (us-east-1, no free tier), for a reference shop, beside the
published list prices of Klaviyo, Customer.io and Amazon Pinpoint for the same shop. Sources and dates:
bench/PRICES.md."""

from __future__ import annotations

import math
from typing import Any

PRICES_AS_OF = "2025 (model's knowledge of the public pricing pages; re-check before quoting)"
PRICES = {
    "apigw_rest_per_million": 3.50,           # REST API, first 333 M requests/month
    "apigw_http_per_million": 1.00,           # HTTP API, first 300 M requests/month (evaluated, not deployed)
    "lambda_arm_gb_s": 0.0000133334,          # arm64, first 7.5 B GB-s tier
    "lambda_per_million_requests": 0.20,
    "ddb_wru_per_million": 0.625,             # on-demand, after the November 2024 price cut
    "ddb_rru_per_million": 0.125,
    "ddb_storage_gb_month": 0.25,             # Standard table class
    "ddb_pitr_gb_month": 0.20,                # continuous backups
    "sqs_per_million": 0.40,                  # standard queue, per 64 KB chunk
    "ses_per_thousand": 0.10,                 # outbound email (no attachments)
    "sms_us_per_message": 0.00581 + 0.00266,  # AWS End User Messaging US base + average carrier fee
    "sns_publish_per_million": 0.50,          # SES event publishing to the SNS topic
    "cw_logs_ingest_gb": 0.50,
    "cw_logs_storage_gb_month": 0.03,
    "cw_custom_metric_month": 0.30,
    "cw_alarm_month": 0.10,
    "xray_per_million_traces": 5.00,
    "eventbridge_scheduled_rule": 0.0,
}
SHOP = {"customers": 100_000, "events": 10_000_000, "emails": 1_000_000, "sms": 50_000}
ASSUMPTIONS: dict[str, Any] = {
    "events_per_request": 5,  # Segment server libraries flush every 0.5 s: 10 M/month is ~4 events/s on average
    # Product views (15 %): the measured "Product Viewed" row is a customer's first view (it starts the
    # browse-abandonment journey and moves the potential segment cold → warm); "repeat" is a next view in the
    # same stretch of browsing (journey running, segment unchanged). 1.5 M views for 100,000 customers is 15 per
    # customer a month; a journey starts at most once per 7-day cooldown and the segment moves at most once per
    # 30-day warm window, so at most ~4 of the 15 start something: one in three (5 % of events) is a first view,
    # on the pessimistic side (a session's 3–5 product pages count one).
    "event_mix": {"track (plain: no rule, no product)": 0.75, "Product Viewed": 0.05,
                  "Product Viewed (repeat)": 0.10,
                  "identify (known customer, traits change)": 0.07, "identify (new customer: email + consent)": 0.01,
                  "Order Completed (2 products)": 0.02},
    "journey_steps_per_message": 1.5,  # a send step plus, on average, half a wait/branch/exit step due on its own
    "segment_rechecks_per_customer_month": 4,
    "ses_events_per_email": {"Delivery": 1.0, "Open": 0.25, "Click": 0.03},
    "warm_containers": 5,  # each refreshes the configuration every 30 s
    "retention_days": None,  # raw events: settings.event_retention_days' default (filled in by model())
    "pitr_tables": "all but the raw events and the messageId markers (infra/constructs/storage.py NO_PITR)",
    "dedupe_days": 30,  # messageId markers (settings.dedupe_window_days)
    "ledger_months_kept": 13,  # the send ledger has no TTL: storage grows; priced at 13 months
    "index_overhead_bytes": 100,  # DynamoDB storage overhead per item
    "latency_ms": {"read": 5, "write": 6, "transaction": 15, "sqs": 8, "ses": 40, "sns": 60},
    "ingest_workers": 8,  # customers of one request written in parallel (retention.ingestion.ingestor.Ingestor)
    "lambda_memory_gb": {"track_event": 0.5, "evaluate_triggers": 0.5, "send_message": 0.5, "feedback": 0.5,
                         "recompute": 0.5},
    "cold_starts_per_month": 8 * 24 * 30,  # ~1 per function per hour (INIT is billed since August 2025)
    "cold_start_s": 1.0,
    # custom metrics: CloudWatch bills $0.30 a metric-month, prorated by the hours a metric receives data.
    # retention.core.observability.count publishes only METRICS (the rest of the ~24 counts are fields of one
    # `counts` log line per invocation, priced with the logs): the 2 headline volumes (EventsAccepted,
    # Messages_sent) have data nearly every hour at this volume; the 3 alarmed ones (PendingSendsUnknown,
    # CouponPoolEmpty, MarketingPaused) only when something is wrong, taken at 20 % of the hours, on the
    # pessimistic side: 2 + 3 × 0.2 = 2.6 metric-months (filled in by model(); was 5 + 19 × 0.2 ≈ 9 when every
    # count was a metric, 24 when every count was sent every invocation).
    # Alarms: infra/stack.py makes 16 (3 DLQs, the sweeper's unknown sends, 8 function errors, an empty coupon
    # pool, the brake, SES's 2 reputation metrics; tests/infra/test_infra_email_alarms.py).
    "custom_metrics": None, "alarms": 16,
    "alarmed_metric_hours": 0.2,
    "xray_sampling": {"reservoir_per_s": 0, "rate": 0.01},  # infra/stack.py TraceSampling
}
COMPETITORS = {
    "Klaviyo": {"monthly_usd": 1380, "sms_usd": 750,
                "basis": "Email plan at 100,000 active profiles (≈ $1,380/month, includes 1 M email sends); SMS "
                         "credits extra (≈ $0.015 per US SMS credit at this volume → ≈ $750 for 50,000)",
                "url": "https://www.klaviyo.com/pricing"},
    "Customer.io": {"monthly_usd": 1000, "sms_usd": 50_000 * 0.0083,
                    "basis": "Premium from $1,000/month (billed annually); Essentials starts at $100/month for "
                             "5,000 profiles and grows with profiles; SMS through the customer's Twilio account "
                             "(≈ $0.0083 per US SMS)",
                    "url": "https://customer.io/pricing/"},
    "Amazon Pinpoint": {"monthly_usd": SHOP["customers"] * 0.0012 + SHOP["events"] / 1e6 * 1.0
                        + SHOP["emails"] / 1000 * 0.10,
                        "sms_usd": SHOP["sms"] * (0.00581 + 0.00266),
                        "basis": "$0.0012 per monthly targeted endpoint + $1 per million events + $0.10 per 1,000 "
                                 "emails (its perpetual free allowance — 5,000 endpoints, 100 M events — not applied, "
                                 "like AWS's own free tier above: with it ≈ $214); SMS at the AWS End User Messaging "
                                 "price. Closed to new customers since May 20, 2025; end of support October 30, 2026",
                        "url": "https://aws.amazon.com/pinpoint/pricing/"},
}


def _per_event(rows: dict[str, Any], metric: str, batch: float) -> float:
    """One event of the mix at `batch` events per request: each kind's cost is a per-event part plus a
    per-request part, solved from its single-message and 100-message measurements."""
    total = 0.0
    for kind, weight in ASSUMPTIONS["event_mix"].items():
        single = rows[f"{kind} — single"][metric]
        hundred = rows[f"{kind} — batch of 100"][metric]
        per_request = (single - hundred) * 100 / 99
        per_event = hundred - per_request / 100
        total += weight * (per_event + per_request / batch)
    return total


def _split(rows: dict[str, Any], metric: str) -> tuple[float, float]:
    """(per-request part, per-event part) of the event mix's `metric`, solved as in `_per_event`."""
    shared = each = 0.0
    for kind, weight in ASSUMPTIONS["event_mix"].items():
        single = rows[f"{kind} — single"][metric]
        hundred = rows[f"{kind} — batch of 100"][metric]
        per_request = (single - hundred) * 100 / 99
        shared += weight * per_request
        each += weight * (hundred - per_request / 100)
    return shared, each


def _op(rows: dict[str, Any], row: str, op: str) -> float:
    return float(rows[row]["by_operation"].get(op, 0))


def _retention_days() -> int:
    from retention.core.config import Settings
    return int(Settings().event_retention_days)


def _custom_metrics() -> float:
    from retention.core.observability import ALARMED, HEADLINE
    return round(len(HEADLINE) + len(ALARMED) * ASSUMPTIONS["alarmed_metric_hours"], 2)


def model(requests: dict[str, Any], cpu: dict[str, Any] | None, logs: dict[str, Any] | None) -> dict[str, Any]:
    rows = requests["rows"]
    p, shop = PRICES, SHOP
    a = {**ASSUMPTIONS, "retention_days": ASSUMPTIONS["retention_days"] or _retention_days(),
         "custom_metrics": ASSUMPTIONS["custom_metrics"] or _custom_metrics()}
    b = a["events_per_request"]
    lat = a["latency_ms"]
    mem = a["lambda_memory_gb"]
    events, emails, sms, customers = shop["events"], shop["emails"], shop["sms"], shop["customers"]
    messages = emails + sms
    api_requests = events / b
    steps = messages * a["journey_steps_per_message"]
    rechecks = customers * a["segment_rechecks_per_customer_month"]
    ses_events = {k: emails * v for k, v in a["ses_events_per_email"].items()}
    ticks = 60 * 24 * 30
    refreshes = a["warm_containers"] * 2 * ticks
    nightly = customers * 30

    def row_units(name: str, n: float, metric: str) -> float:
        return n * float(rows[name][metric])

    fb = {k: ("SES feedback: Delivery (feedback function)" if k == "Delivery" else
              "SES feedback: Open (feedback function)") for k in ses_events}
    # ---- DynamoDB capacity units and requests, by origin
    origins = {
        "ingest": (events, None),
        "journey steps": (steps, "journey step (tick advancing one journey)"),
        "email sends": (emails, "sent email (send_message)"),
        "SMS sends": (sms, "sent SMS (send_message)"),
        "send reminder sweeps": (messages, "send reminder sweep (tick, per sent message)"),
        "SES feedback": (None, None),
        "segment re-checks": (rechecks, "segment re-check (SEGMENT due item, tick)"),
        "minute ticks (fixed)": (ticks, "empty tick (nothing due; per minute)"),
        "nightly recompute": (nightly, "nightly recompute (per stored customer)"),
        "config refresh": (refreshes, "config refresh (per container, every 30 s)"),
    }
    ddb: dict[str, dict[str, float]] = {}
    for origin, (n, name) in origins.items():
        if origin == "ingest":
            ddb[origin] = {m: events * _per_event(rows, m, b) for m in
                           ("wru", "rru", "ddb_read_requests", "ddb_write_requests", "other_requests")}
        elif origin == "SES feedback":
            ddb[origin] = {m: sum(row_units(fb[k], v, m) for k, v in ses_events.items())
                           for m in ("wru", "rru", "ddb_read_requests", "ddb_write_requests", "other_requests")}
        else:
            assert n is not None and name is not None
            ddb[origin] = {m: row_units(name, n, m) for m in
                           ("wru", "rru", "ddb_read_requests", "ddb_write_requests", "other_requests")}
    wru = sum(v["wru"] for v in ddb.values())
    rru = sum(v["rru"] for v in ddb.values())

    # ---- storage (steady state)
    ov = a["index_overhead_bytes"]
    sizes = requests.get("plain_event_item_bytes", {})
    stored = requests.get("stored_bytes", {})
    months = a["retention_days"] / 30.4
    gb = 1024 ** 3
    # a ledger item, and its entry in the keys-only by_customer index (keys alone; measured in section 1)
    ledger_bytes = stored.get("ledger", 500) + ov + stored.get("ledger_index", 100) + ov
    storage_gb = {
        f"events (raw, {a['retention_days']} days)": events * months * (sizes.get("events", 300) + ov) / gb,
        "messageId markers (30 days)": events * (a["dedupe_days"] / 30.4) * (sizes.get("idempotency", 80) + ov) / gb,
        "profiles, journeys, history": customers * (stored.get("customer_rows", 3000) + 2 * ov) / gb,
        "send ledger + keys-only GSI (13 months)": messages * a["ledger_months_kept"] * ledger_bytes / gb,
    }
    storage_total = sum(storage_gb.values())
    pitr_gb = storage_total - sum(v for k, v in storage_gb.items() if k.startswith(("events (raw", "messageId")))

    # ---- Lambda: duration = CPU (scaled to the memory's CPU share) + AWS round trips
    def cpu_ms(kind: str) -> float:
        if not cpu:
            return 0.5
        if kind == "event":  # a row the CPU section has not measured yet: its base kind's ("X (repeat)" → "X")
            return sum(w * cpu["ingest"][k if k in cpu["ingest"] else k.split(" (")[0]]["batch_per_event"]["cpu_ms"]
                       for k, w in a["event_mix"].items() if k in cpu["ingest"] or k.split(" (")[0] in cpu["ingest"])
        if kind == "send":
            vals = [v["whole_send_stubbed"]["cpu_ms"] for v in cpu["render"].values()]
            return sum(vals) / len(vals)
        return 0.5

    def share(memory_gb: float) -> float:
        return max(1.0, 1.769 / memory_gb)  # 1,769 MB = one vCPU

    txn_per_req = sum(w * (_op(rows, f"{k} — batch of 100", "dynamodb.TransactWriteItems")) for k, w in
                      a["event_mix"].items()) * b
    # wall time of one request: its CPU (all threads share it), the per-request round trips (the profiles'
    # BatchGetItem, the day's events counter, the send-queue batch), and one customer's own round trips: the
    # Ingestor works on up to `ingest_workers` customers at once (retention.ingestion.ingestor._in_parallel),
    # so a request of b events of b customers waits ceil(b / workers) customers' chains, not b of them
    rounds = math.ceil(b / a["ingest_workers"])
    per_event_txn = txn_per_req / b

    def chain(part: int) -> float:
        reads, writes, other = (_split(rows, m)[part] for m in (
            "ddb_read_requests", "ddb_write_requests", "other_requests"))
        txns = per_event_txn if part else 0.0
        return (reads * lat["read"] + max(0.0, writes - txns) * lat["write"] + txns * lat["transaction"]
                + other * lat["sqs"])
    ingest_ms = cpu_ms("event") * b * share(mem["track_event"]) + chain(0) + rounds * chain(1)
    send_row = rows["sent email (send_message)"]
    send_ms = (cpu_ms("send") * share(mem["send_message"]) + send_row["ddb_read_requests"] * lat["read"]
               + send_row["ddb_write_requests"] * lat["write"] + lat["ses"])
    sms_ms = send_ms - lat["ses"] + lat["sns"]
    step_row = rows["journey step (tick advancing one journey)"]
    step_ms = 1.0 * share(mem["evaluate_triggers"]) + step_row["ddb_read_requests"] * lat["read"] + \
        step_row["ddb_write_requests"] * lat["write"] + step_row["other_requests"] * lat["sqs"]
    tick_row = rows["empty tick (nothing due; per minute)"]
    tick_ms = 3.0 * share(mem["evaluate_triggers"]) + tick_row["total_requests"] * lat["read"]
    fb_row = rows["SES feedback: Delivery (feedback function)"]
    fb_ms = 0.5 * share(mem["feedback"]) + fb_row["ddb_read_requests"] * lat["read"] + \
        fb_row["ddb_write_requests"] * lat["write"]
    recheck_ms = 0.5 * share(mem["recompute"]) + lat["read"]
    gb_s = {
        "track_event": api_requests * ingest_ms / 1000 * mem["track_event"],
        "send_message": (emails * send_ms + sms * sms_ms) / 1000 * mem["send_message"],
        "evaluate_triggers": (ticks * tick_ms + (steps + rechecks) * step_ms) / 1000 * mem["evaluate_triggers"],
        "feedback": sum(ses_events.values()) * fb_ms / 1000 * mem["feedback"],
        "recompute (nightly)": nightly * recheck_ms / 1000 * mem["recompute"],
        "cold starts (INIT)": a["cold_starts_per_month"] * a["cold_start_s"] * 0.5,
    }
    invocations = {
        "track_event": api_requests, "send_message": messages / 10, "evaluate_triggers": ticks,
        "feedback": sum(ses_events.values()), "recompute (nightly)": 30 * 16,
    }

    # ---- SQS: enqueues counted in the rows + the consumers (Lambda pollers: receive + delete per batch, and
    # long polls while idle: ~15 receives a minute per queue)
    sqs_requests = sum(v["other_requests"] for k, v in ddb.items() if k in ("ingest", "journey steps")) \
        + messages / 10 * 2 + 2 * 15 * ticks

    # ---- logs: measured handler output + Lambda's own lines + API Gateway access logs
    log_bytes = 0.0
    per_request_log_bytes = 0.0
    if logs:
        per = logs["per_invocation"]
        over = logs["event_overhead_bytes"]
        # Lambda's START/END/REPORT: none at the stack's system log level WARN (bench.logs follows the setting)
        plat = logs["lambda_platform_bytes"] + logs.get("lambda_platform_lines", 3) * over

        def inv_bytes(key: str) -> float:
            return per[key]["bytes"] + per[key]["lines"] * over + plat
        # the function URL (IngestUrl) writes no access log: the function's own line is the request's record
        per_request_log_bytes = inv_bytes("track_event (1 event)") + over
        log_bytes += api_requests * per_request_log_bytes
        log_bytes += (messages / 10) * inv_bytes("send_message (batch of 10 records)")
        log_bytes += ticks * inv_bytes("evaluate_triggers (tick)")
        log_bytes += sum(ses_events.values()) * inv_bytes("evaluate_triggers (tick)")  # feedback: one line + EMF
    log_gb = log_bytes / gb

    # ---- X-Ray (active tracing, the stack's sampling rule: 1 % of requests, no reservoir)
    roots = api_requests + messages / 10 + ticks + sum(ses_events.values()) + 30 * 16
    seconds = 30 * 86400
    reservoir = min(roots, a["xray_sampling"]["reservoir_per_s"] * seconds)
    traces = reservoir + a["xray_sampling"]["rate"] * max(0.0, roots - reservoir)

    lines = {
        # ingestion through track_event's function URL (infra/stack.py `_ingest_url`, the README's setup):
        # no per-request fee; the REST API's other routes (surveys, preferences, admin) are a few thousand
        # requests a month
        "Ingestion endpoint (Lambda function URL)": 0.0,
        "Lambda requests": sum(invocations.values()) / 1e6 * p["lambda_per_million_requests"],
        "Lambda duration (arm64)": sum(gb_s.values()) * p["lambda_arm_gb_s"],
        "DynamoDB writes (WRU)": wru / 1e6 * p["ddb_wru_per_million"],
        "DynamoDB reads (RRU)": rru / 1e6 * p["ddb_rru_per_million"],
        "DynamoDB storage": storage_total * p["ddb_storage_gb_month"],
        "DynamoDB PITR (all tables but the raw events and the markers)": pitr_gb * p["ddb_pitr_gb_month"],
        "SQS": sqs_requests / 1e6 * p["sqs_per_million"],
        "SES email": emails / 1000 * p["ses_per_thousand"],
        "SMS (US)": sms * p["sms_us_per_message"],
        "SNS (SES events)": sum(ses_events.values()) / 1e6 * p["sns_publish_per_million"],
        "CloudWatch Logs": log_gb * (p["cw_logs_ingest_gb"] + p["cw_logs_storage_gb_month"]),
        "CloudWatch metrics + alarms": (a["custom_metrics"] * p["cw_custom_metric_month"]
                                        + a["alarms"] * p["cw_alarm_month"]),
        "X-Ray traces": traces / 1e6 * p["xray_per_million_traces"],
        "EventBridge schedules": 0.0,
    }
    total = sum(lines.values())
    without_sms = total - lines["SMS (US)"]
    # DESIGN §10: the engine's overhead = the AWS bill minus the SES and SMS delivery fees, per $ of SES fee
    overhead = total - lines["SES email"] - lines["SMS (US)"]
    # the same events through the REST API's /v1 routes (ApiUrl) instead: its fee and its access log lines
    rest_api_extra = api_requests / 1e6 * p["apigw_rest_per_million"] + (
        api_requests * (logs["access_log_bytes"] if logs else 0) / gb
        * (p["cw_logs_ingest_gb"] + p["cw_logs_storage_gb_month"]))

    # ---- per 1 M events and per 1 M emails (variable costs attributed to each)
    per_event_wru = ddb["ingest"]["wru"] / events
    per_event_rru = ddb["ingest"]["rru"] / events
    log_price = p["cw_logs_ingest_gb"] + p["cw_logs_storage_gb_month"]
    fb_per_email = sum(a["ses_events_per_email"].values())
    per_million_events = {
        "ingestion endpoint (function URL)": 0.0,
        "Lambda": (1e6 / b / 1e6 * p["lambda_per_million_requests"]
                   + 1e6 / b * ingest_ms / 1000 * mem["track_event"] * p["lambda_arm_gb_s"]),
        "DynamoDB requests": per_event_wru * p["ddb_wru_per_million"] + per_event_rru * p["ddb_rru_per_million"],
        f"DynamoDB storage (events {a['retention_days']} days, markers 30 days, no PITR)": 1e6 * (
            months * (sizes.get("events", 300) + ov) * p["ddb_storage_gb_month"]
            + a["dedupe_days"] / 30.4 * (sizes.get("idempotency", 80) + ov) * p["ddb_storage_gb_month"]) / gb,
        "logs + traces": 1e6 / b * (per_request_log_bytes / gb * log_price
                                    + traces / max(1.0, roots) * p["xray_per_million_traces"] / 1e6),
    }
    email_wru = sum(ddb[k]["wru"] for k in ("email sends", "SES feedback")) / emails + \
        sum(ddb[k]["wru"] for k in ("journey steps", "send reminder sweeps")) / messages
    email_rru = sum(ddb[k]["rru"] for k in ("email sends", "SES feedback")) / emails + \
        sum(ddb[k]["rru"] for k in ("journey steps", "send reminder sweeps")) / messages
    per_million_emails = {
        "SES": 1e6 / 1000 * p["ses_per_thousand"],
        "DynamoDB requests (step + send + sweep + feedback)": 1e6 * (email_wru * p["ddb_wru_per_million"]
                                                             + email_rru * p["ddb_rru_per_million"]) / 1e6,
        "Lambda (send + step + feedback)": 1e6 * (send_ms * mem["send_message"] + a["journey_steps_per_message"]
                                                   * step_ms * mem["evaluate_triggers"]
                                                   + fb_per_email * fb_ms * mem["feedback"])
        / 1000 * p["lambda_arm_gb_s"] + (0.1 + fb_per_email) * p["lambda_per_million_requests"],
        "SQS + SNS (events)": (0.1 + 0.2 + 0.1) * p["sqs_per_million"] + fb_per_email * p["sns_publish_per_million"],
        "ledger storage + PITR (13 months)": 1e6 * a["ledger_months_kept"] * ledger_bytes / gb
        * (p["ddb_storage_gb_month"] + p["ddb_pitr_gb_month"]),
    }

    comp = {}
    for name, c in COMPETITORS.items():
        comp[name] = {**c, "total_with_sms": c["monthly_usd"] + c["sms_usd"],
                      "ours_cheaper_by_x_without_sms": c["monthly_usd"] / without_sms,
                      "ours_cheaper_by_x_with_sms": (c["monthly_usd"] + c["sms_usd"]) / total}
    return {
        "prices": PRICES, "prices_as_of": PRICES_AS_OF, "shop": SHOP, "assumptions": a,
        "engine_overhead_usd": round(overhead, 2),
        "engine_overhead_vs_ses": round(overhead / lines["SES email"], 3),
        "rest_api_ingestion_would_add_usd": round(rest_api_extra, 2),
        "lines": {k: round(v, 2) for k, v in lines.items()}, "total": round(total, 2),
        "total_without_sms": round(without_sms, 2),
        "units": {"api_requests": api_requests, "wru": wru, "rru": rru, "sqs_requests": sqs_requests,
                  "lambda_gb_s": {k: round(v, 1) for k, v in gb_s.items()}, "lambda_invocations": invocations,
                  "log_gb": round(log_gb, 2), "xray_traces": round(traces), "storage_gb": {
                      k: round(v, 2) for k, v in storage_gb.items()},
                  "ddb_by_origin": {k: {m: round(x) for m, x in v.items()} for k, v in ddb.items()},
                  "lambda_ms": {"track_event per request": round(ingest_ms, 1), "email send": round(send_ms, 1),
                                "SMS send": round(sms_ms, 1), "journey step": round(step_ms, 1),
                                "tick": round(tick_ms, 1), "feedback": round(fb_ms, 1)}},
        "per_million_events": {k: round(v, 2) for k, v in per_million_events.items()},
        "per_million_events_total": round(sum(per_million_events.values()), 2),
        "per_million_emails": {k: round(v, 2) for k, v in per_million_emails.items()},
        "per_million_emails_total": round(sum(per_million_emails.values()), 2),
        "competitors": comp,
        "goal_10x_cheaper_than_customer_io": comp["Customer.io"]["ours_cheaper_by_x_without_sms"] >= 10,
    }
