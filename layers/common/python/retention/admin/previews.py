"""What the admin API does beyond CRUD, for the marketer CLI and the web console:

- definitions validated with `file:line` (the client names its file in `X-Retention-Source`; YAML keeps
  its line map) and applied with their text; a changed segment group fans out a recompute;
- rule **preview**: every send step of a rule rendered for one customer (subject, text, SMS) with the
  real renderer and a synthetic `SendRequest` — nothing is claimed, sent or written;
- rule **dry-run**: the stored events of the last N days replayed through the rule on copies of the
  profiles, stepped by the engine itself on a virtual clock, one page of the events table per call (a
  cursor); nothing is written;
- **segment counts**: one page of profiles per call, a condition or a segment, with a cursor;
- **manual segment assignments** with a reason and an expiry, then a re-evaluation of the customer.

Cursors are opaque strings (base64 of DynamoDB's LastEvaluatedKey); a client passes them back as is.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from retention.core import clock, ddb, yamlio
from retention.core.config import definition_key
from retention.core.errors import BadRequestError, NotFoundError, RetentionError, ValidationError
from retention.core.runtime import Deps
from retention.customers.store import ProfileRepo, customer_of_pk, from_item, profile_pk
from retention.journeys.catalogue import Catalogue
from retention.language import conditions

DRY_RUN_PAGE = 200  # events read per dry-run call (the last customer of a page is always completed)
COUNT_PAGE = 500  # profile-table items examined per count call
MAX_PAGE = 1000
MAX_DAYS = 400  # the events table keeps 400 days by default
MAX_STEPS = 50  # as the engine: a journey that runs more steps than this in one go is cut
REPLAYABLE_TRIGGERS = ("event", "segment_entered", "segment_exited")
ATTEMPTS = 6

# ---------------------------------------------------------------------------------------------------
# cursors


def encode_cursor(key: Mapping[str, Any] | None) -> str | None:
    if not key:
        return None
    raw = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: Any) -> dict[str, Any] | None:
    if cursor in (None, ""):
        return None
    if not isinstance(cursor, str):
        raise BadRequestError("cursor must be the string returned by the previous call")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error) as exc:
        raise BadRequestError("invalid cursor: pass back the cursor of the previous answer unchanged") from exc
    if not isinstance(key, dict) or set(key) != {"pk", "sk"} or not all(
            isinstance(v, dict) and isinstance(v.get("S"), str) for v in key.values()):
        raise BadRequestError("invalid cursor: pass back the cursor of the previous answer unchanged")
    return key


def _page_limit(value: Any, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise BadRequestError(f"limit must be a whole number, got {value!r}") from None
    return min(max(limit, 1), MAX_PAGE)


# ---------------------------------------------------------------------------------------------------
# definitions: parse with lines, validate with lines


def parse_definition_text(text: str, source: str) -> tuple[dict[str, Any], yamlio.LineMap]:
    """One YAML (or JSON) document with its line map; more or fewer is an error naming the source."""
    documents = yamlio.load_yaml_documents(text, source)
    if not documents:
        raise ValidationError(f"{source}: empty document: a definition is a mapping")
    if len(documents) > 1:
        second = documents[1][1].line_for(())
        where = f"{source}:{second}" if second else source
        raise ValidationError(f"{where}: one definition per request; this body holds {len(documents)} documents")
    body, linemap = documents[0]
    if not isinstance(body, dict):
        raise ValidationError(yamlio.located(source, linemap, (), "a definition is a mapping"))
    return body, linemap


_TEMPLATE_PROBLEM = re.compile(
    r"^(locales\.[^.:\s]+(?:\.(?:subject|preheader|html|text|sms))?):\s*(?:line (\d+):\s*)?(.*)$", re.S)


def template_problems(body: Any, source: str, linemap: yamlio.LineMap | None = None) -> list[str]:
    """Everything wrong with a template document, each as `source:line: path: message` (the line of a
    Jinja error inside a block scalar is the file's line, not the part's)."""
    import pydantic

    from retention.language.templates import Template, validate_template
    if not isinstance(body, Mapping):
        return [yamlio.located(source, linemap, (), "a template is a mapping with id, category and locales")]
    lines = linemap or yamlio.LineMap.from_data(body)
    try:
        template = Template.model_validate(dict(body))
    except pydantic.ValidationError as exc:
        return yamlio.validation_messages(exc, lines, source)
    out = []
    for problem in validate_template(template):
        match = _TEMPLATE_PROBLEM.match(problem)
        if not match:
            out.append(f"{source}: {problem}")
            continue
        dotted, inner, message = match.groups()
        path = tuple(dotted.split(".", 2))
        line = lines.line_for(path)
        value: Any = body
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        if inner and line is not None:
            # a multi-line part is a block scalar (`html: |`): its first line is the one after the key
            line += int(inner) if isinstance(value, str) and "\n" in value else 0
            message = f"line {inner} of the {path[-1]}: {message}"
        where = f"{source}:{line}" if line is not None else source
        out.append(f"{where}: {dotted}: {message}")
    return out


def locate_warning(source: str, linemap: yamlio.LineMap | None, message: str, locale: str | None = None,
                   code: str = "") -> str:
    """`source:line` of a lint warning: `steps[i]` in the message, else the locale's part."""
    path: tuple[Any, ...] = ()
    step = re.match(r"^steps\[(\d+)\]", message)
    if step:
        path = ("steps", int(step.group(1)))
    elif locale:
        part = "sms" if code.startswith("sms") else "subject" if code.startswith("subject") else None
        path = ("locales", locale, part) if part else ("locales", locale)
    line = linemap.line_for(path) if linemap is not None and path else None
    return f"{source}:{line}" if line is not None else source


# ---------------------------------------------------------------------------------------------------
# dry-run: the pure part (a rule, one customer's profile copy and events → the journeys it would run),
# stepped by the engine's own code (retention.journeys.engine) on a virtual clock


def _as_dt(value: Any) -> datetime:
    return value if isinstance(value, datetime) else clock.parse_iso(str(value))


def sender_skip(channel: str, profile: Any, rule: Any) -> tuple[str | None, str | None]:
    """(the channel used, why the sender would skip it), by the sender's own checks
    (retention.messaging.sender.channel_decision) on today's profile."""
    from retention.customers.profile import consent_flags
    from retention.messaging.sender import channel_decision, suppression_reasons
    consent = consent_flags(profile)
    used, _, why = channel_decision(channel, profile, transactional=bool(rule.is_transactional),
                                    suppressed=suppression_reasons(profile),
                                    consented=lambda ch: consent.get(ch, False))
    return used, why


def simulate(rule: Any, profile: Any, events: Sequence[Mapping[str, Any]], *, since: datetime, now: datetime,
             settings: Any) -> list[dict[str, Any]]:
    """The journeys `rule` would have run for one customer over `events` (time order, each
    {name, properties, timestamp, message_id}) from `since`, on a copy of the profile: the engine enters,
    exits and steps the journeys itself (due items kept on a virtual clock, then run past `now` to show
    what is still to come). Future steps the sender would skip today (the customer unsubscribed, has no
    consent or address, or left the audience) are not listed: the entry says why (`stopped`). Pure."""
    from retention.customers.profile import facts as profile_facts
    from retention.customers.store import StoredProfile
    from retention.journeys.engine import Definitions, Engine, rule_of
    from retention.schedule.due import DueItem
    engine = Engine(Definitions(rules=[rule], groups=[], settings=settings))
    # journeys of this rule entered in the window are replayed; one entered before still counts for
    # re-entry (still running, or its cooldown)
    for slot in [s for s in profile.journeys if rule_of(s) == rule.id]:
        entered = profile.journeys[slot].get("entered_at")
        if not entered or _as_dt(entered) >= since:
            del profile.journeys[slot]
    before = {slot: j.get("entry") for slot, j in profile.journeys.items()}
    sp = StoredProfile(profile=profile, version=1)
    pending: list[DueItem] = []
    trace: list[dict[str, Any]] = []
    entries: dict[str, dict[str, Any]] = {}
    budget = MAX_STEPS * 20  # due items one customer may run (a runaway rule is cut, like the engine's own cap)

    def record(fx: Any, triggered_by: Mapping[str, Any] | None) -> None:
        pending.extend(d for d in fx.due if d.kind == "JOURNEY")
        for slot, journey in profile.journeys.items():
            entry = journey.get("entry")
            if rule_of(slot) != rule.id or not entry or before.get(slot) == entry or entry in entries:
                continue
            trig = triggered_by or {}
            entries[entry] = {"customer_id": profile.id, "entered_at": journey["entered_at"],
                              "trigger": {"event": trig.get("name"), "message_id": trig.get("message_id")},
                              "holdout": bool(journey.get("holdout")),
                              "state": "control" if journey.get("holdout") else "active", "steps": [],
                              "_journey": journey, "_properties": trig.get("properties") or {}}

    def run_due(until: datetime | None) -> None:
        nonlocal budget
        while pending and budget > 0:
            pending.sort(key=lambda d: d.at)
            if until is not None and pending[0].at > until:
                return
            item = pending.pop(0)
            budget -= 1
            record(engine.process(sp, due_items=[item], now=item.at, trace=trace), None)

    for ev in events:
        at = _as_dt(ev["timestamp"])
        if at < since:
            continue
        run_due(at)
        event = {"name": str(ev.get("name") or ""), "properties": ev.get("properties") or {}, "timestamp": at,
                 "message_id": ev.get("message_id")}
        record(engine.replay_event(sp, event, now=at, trace=trace), event)
    run_due(None)

    for row in trace:
        entry = entries.get(row.pop("entry"))
        if "engagement" in row:  # a dry-run knows no opens or clicks: the engine found none
            row["assumed"] = f"no {row.pop('engagement')} message"
        if entry is not None and not entry["holdout"]:
            entry["steps"].append(row)
    now_iso = clock.iso(now)
    out = []
    for entry in entries.values():
        journey = entry.pop("_journey")  # the entry's own state (a later entry takes its slot)
        properties = entry.pop("_properties")
        ended = journey.get("ended_at")
        reason = str(journey.get("exit_reason") or "")
        if reason.startswith("goal:") or reason == "too_many_steps":
            entry["state"] = "exited"
            entry["exit"] = {"at": ended, "event": reason.removeprefix("goal:")}
        elif ended and not entry["holdout"]:
            entry["state"] = "completed" if ended <= now_iso else "active"
        if ended:
            entry["ends_at"] = ended
        for step in entry["steps"]:
            step["future"] = step["at"] > now_iso
        future = [s for s in entry["steps"] if s["future"]]
        if future:
            trigger = {"name": entry["trigger"]["event"], "properties": properties,
                       "timestamp": _as_dt(entry["entered_at"])}
            facts = {**profile_facts(profile, now), "event": trigger}
            in_audience = rule.audience is None or bool(conditions.evaluate(rule.audience, facts))
            skips = [sender_skip(s["channel"], profile, rule)[1] or (None if in_audience else "audience")
                     for s in future if s["kind"] == "send"]
            if skips and all(skips):
                entry["steps"] = [s for s in entry["steps"] if not s["future"]]
                entry["stopped"] = skips[0]
        out.append(entry)
    return sorted(out, key=lambda e: e["entered_at"])


# ---------------------------------------------------------------------------------------------------
# the admin API's service


class Previews:
    def __init__(self, d: Deps) -> None:
        self.d = d
        self.repo = ProfileRepo(d.dynamodb, d.env.profiles_table)
        self.library = Catalogue(d.config)

    # ---- definitions ---------------------------------------------------------------------------------
    def validate(self, kind: str, body: dict[str, Any], *, source: str, linemap: yamlio.LineMap | None = None,
                 text: str | None = None) -> Any:
        """A definition checked against what is applied; errors list every problem as `source:line: …`."""
        if kind == "RULE":  # against the applied templates and segments it refers to
            from retention.language.rules import parse_rule
            groups = self.library.segment_groups()
            return parse_rule(body, source=source, linemap=linemap, templates=set(self.library.templates()),
                              segments={s.id for g in groups for s in g.segments},
                              segment_groups={g.group: [s.id for s in g.segments] for g in groups})
        if kind == "TEMPLATE":
            from retention.language.templates import Template
            problems = template_problems(body, source, linemap)
            if problems:
                raise ValidationError("\n".join(problems))
            return Template.model_validate(body)
        if kind == "SEGDEF":
            from retention.language.segments import load_groups
            group = body.get("group")
            current = {definition_key(kind, k): v["body"] for k, v in self.d.config.current(kind).items() if k != group}
            groups = load_groups({**current, source: text if text is not None else body})
            return next(g for g in groups if g.group == group)
        raise BadRequestError(f"unknown kind {kind}")

    def apply(self, kind: str, def_id: str, body: dict[str, Any], *, source: str,
              linemap: yamlio.LineMap | None = None, text: str | None = None, author: str = "api") -> dict[str, Any]:
        key = "group" if kind == "SEGDEF" else "id"
        body.setdefault(key, def_id)
        if body[key] != def_id:
            raise BadRequestError(f"{key} in the body ('{body[key]}') differs from the URL ('{def_id}')")
        self.validate(kind, body, source=source, linemap=linemap, text=text)
        stored_text = text.strip("\n") + "\n" if text and text.strip() else None
        item = self.d.config.apply(kind, def_id, body, text=stored_text, enabled=bool(body.get("enabled", True)),
                                   author=author)
        out = {"id": def_id, "version": int(item["version"]), "changed": bool(item.get("changed", True))}
        self._recompute(kind, out)
        return out

    def rollback(self, kind: str, def_id: str, version: int | None = None) -> dict[str, Any]:
        item = self.d.config.rollback(kind, def_id, version)
        out = {"id": def_id, "version": int(item["version"]), "changed": bool(item.get("changed", True))}
        self._recompute(kind, out)
        return out

    def _recompute(self, kind: str, out: dict[str, Any]) -> None:
        """A changed segment group re-evaluates every profile (parallel scan fanned out over SQS)."""
        if kind == "SEGDEF" and out["changed"]:
            from retention.schedule.recompute import Recompute
            out["recompute"] = Recompute(self.d).fan_out("definition_change")

    def lint(self, kind: str, def_id: str) -> dict[str, Any]:
        from retention.language import lint
        item = self.d.config.get_definition(kind, def_id)
        if kind == "RULE":
            rule = self.rule(def_id)
            warnings = lint.lint_rule(rule, self.library.templates())
        elif kind == "TEMPLATE":
            warnings = lint.lint_template(item["body"])
        else:
            raise BadRequestError("lint covers rules and templates")
        return {"id": def_id, "version": int(item["version"]),
                "warnings": [w._asdict() for w in warnings]}

    # ---- rules ---------------------------------------------------------------------------------------
    def rule(self, rule_id: str, definition: Any = None) -> Any:
        """The applied rule, or a draft sent with the request (validated like an apply)."""
        from retention.language.rules import parse_rule
        if definition is not None:
            if not isinstance(definition, dict):
                raise BadRequestError("definition is a rule document (an object)")
            definition = dict(definition)
            definition.setdefault("id", rule_id)
            if definition["id"] != rule_id:
                raise BadRequestError(f"id in the definition ('{definition['id']}') differs from the URL ('{rule_id}')")
            return self.validate("RULE", definition, source=f"rules/{rule_id}")
        try:
            item = self.d.config.get_definition("RULE", rule_id)
        except NotFoundError:
            raise NotFoundError(f"rule '{rule_id}' not found") from None
        return parse_rule(item["body"], source=f"rule {rule_id}")

    def _customer(self, customer_id: str, now: datetime) -> Any:
        sp = self.repo.load(customer_id, now, consistent=False)
        if not sp.exists or sp.profile.erased:
            raise NotFoundError(f"customer '{customer_id}' not found")
        return sp

    def _trigger_event(self, rule: Any, profile: Any) -> tuple[dict[str, Any], str]:
        """The event a preview renders with: the journey's own trigger, else the customer's latest event
        that starts the rule, else the sample order of the template library."""
        journey = (profile.journeys or {}).get(rule.id) or {}
        trig = journey.get("trigger") or {}
        if trig.get("name"):
            return {"name": trig["name"], "properties": trig.get("properties") or {}}, "journey"
        for item in ddb.query(self.d.dynamodb, self.d.env.events_table, profile_pk(profile.id), forward=False,
                              limit=200):
            props = json.loads(item["properties"]) if item.get("properties") else {}
            if item.get("event") and rule.trigger_matches_event(item["event"], props):
                return {"name": item["event"], "properties": props}, "event"
        from retention.language.templates import sample_context
        sample = sample_context()["event"]
        names = rule.trigger_events
        return {"name": names[0] if names else sample["name"], "properties": sample["properties"]}, "sample"

    def preview(self, rule_id: str, customer_id: str, *, definition: Any = None,
                event: Mapping[str, Any] | None = None, locale: str | None = None) -> dict[str, Any]:
        """Every send step (every variant) rendered for the customer, with the checks the sender would
        make; no ledger, no send, no write. `locale` renders in that language instead of the customer's (the
        console's template page shows both)."""
        from retention.customers.profile import consent_flags
        from retention.customers.profile import facts as profile_facts
        from retention.language.rules import choose_variant
        from retention.messaging.rendering import Renderer
        from retention.messaging.requests import SendRequest
        now = clock.now()
        rule = self.rule(rule_id, definition)
        profile = self._customer(customer_id, now).profile
        if locale:
            profile.traits = {**profile.traits, "locale": locale}  # this copy only: nothing is written
        if event is not None:
            if not isinstance(event, Mapping) or not isinstance(event.get("properties", {}), Mapping):
                raise BadRequestError("event is {name, properties}")
            trigger, origin = {"name": event.get("name"), "properties": dict(event.get("properties") or {})}, "request"
        else:
            trigger, origin = self._trigger_event(rule, profile)
        renderer = Renderer(self.d.config, self.d.env)
        templates = self.library.templates()
        facts = {**profile_facts(profile, now), "event": {**trigger, "timestamp": now}}
        audience = rule.audience is None or bool(conditions.evaluate(rule.audience, facts))
        consent = consent_flags(profile)
        messages = []
        for index, step in rule.send_steps():
            _, chosen = choose_variant(step, profile.id, rule.id)
            spec = step.send
            options = [(v.template, str(v.name)) for v in spec.variants] if spec.variants else \
                [(str(spec.template), "default")]
            for template_id, variant in options:
                channel, skip = sender_skip(spec.channel, profile, rule)
                row: dict[str, Any] = {"step": index, "label": step.id, "variant": variant, "template": template_id,
                                       "chosen": variant == chosen, "channel": channel or spec.channel,
                                       "subject": None, "text": None, "html": None, "sms": None, "error": None,
                                       "would_skip": skip or (None if audience else "audience")}
                template = templates.get(template_id)
                if template is None:
                    row["error"] = f"template '{template_id}' is not applied"
                    messages.append(row)
                    continue
                req = SendRequest(customer_id=profile.id, rule=rule.id, entry="preview", step=index,
                                  channel=row["channel"], template=template_id, variant=variant,
                                  transactional=rule.is_transactional, event=trigger)
                try:
                    row.update(self._render(renderer, template, req, profile, row["channel"], now))
                except (RetentionError, LookupError, KeyError, ValueError) as exc:
                    row["error"] = getattr(exc, "message", None) or str(exc)
                messages.append(row)
        return {"rule": rule.id, "customer_id": profile.id, "trigger": {**trigger, "source": origin},
                "audience": audience, "consent": consent, "messages": messages}

    @staticmethod
    def _render(renderer: Any, template: Any, req: Any, profile: Any, channel: str | None,
                now: datetime) -> dict[str, Any]:
        from retention.language import templates as templates_mod
        if channel is None:
            channel = "email" if "email" in template.channels(profile.traits.get("locale")) else "sms"
        address = profile.traits.get("email") if channel == "email" else profile.traits.get("phone")
        if address:
            out = renderer.render(req, profile, channel, now)
            if channel == "sms":
                return {"channel": channel, "sms": out.sms or out.text}
            return {"channel": channel, "subject": out.subject, "text": out.text, "html": out.html}
        # no address: the same context and template, without the MIME envelope
        ctx = renderer.context(req, profile, channel, now)
        rendered = templates_mod.render(template, ctx["locale"], ctx, channel="sms" if channel == "sms" else "email")
        if channel == "sms":
            return {"channel": channel, "sms": rendered.sms or rendered.text}
        return {"channel": channel, "subject": rendered.subject, "text": rendered.text, "html": rendered.html}

    def dry_run(self, rule_id: str, *, days: Any, cursor: Any = None, limit: Any = None,
                definition: Any = None) -> dict[str, Any]:
        """One page of the events table (events of the last `days` days) replayed through the rule.

        A page ends on a customer boundary: the partition the scan stopped in is read to its end, and
        the cursor points past it, so every customer is simulated once with all of his events."""
        try:
            n_days = float(days)
        except (TypeError, ValueError):
            raise BadRequestError(f"days must be a number, got {days!r}") from None
        if not 0 < n_days <= MAX_DAYS:
            raise BadRequestError(f"days must be between 1 and {MAX_DAYS}")
        rule = self.rule(rule_id, definition)
        kind = rule.trigger.kind
        if kind not in REPLAYABLE_TRIGGERS:
            raise BadRequestError(
                f"rule '{rule.id}' starts on {kind}: a dry-run replays stored events, which works for "
                f"{', '.join(REPLAYABLE_TRIGGERS)} triggers")
        now = clock.now()
        since = now - timedelta(days=n_days)
        start = decode_cursor(cursor)
        table = self.d.env.events_table
        kwargs: dict[str, Any] = {"TableName": table, "Limit": _page_limit(limit, DRY_RUN_PAGE),
                                  "FilterExpression": "#ts >= :since", "ExpressionAttributeNames": {"#ts": "timestamp"},
                                  "ExpressionAttributeValues": {":since": {"S": clock.iso(since)}}}
        if start:
            kwargs["ExclusiveStartKey"] = start
        resp = self.d.dynamodb.scan(**kwargs)
        examined = int(resp.get("ScannedCount", 0))
        by_customer: dict[str, list[dict[str, Any]]] = {}
        for raw in resp.get("Items", []):
            item = ddb.deserialize(raw) or {}
            by_customer.setdefault(item["pk"], []).append(item)
        last_key = resp.get("LastEvaluatedKey")
        next_key: dict[str, Any] | None = None
        if last_key:
            pk, sk = last_key["pk"]["S"], last_key["sk"]["S"]
            last_sk = sk
            for item in self._rest_of_partition(pk, sk):
                examined += 1
                last_sk = item["sk"]
                if item.get("timestamp", "") >= clock.iso(since):
                    by_customer.setdefault(pk, []).append(item)
            next_key = ddb.key(pk, last_sk)
        customers = [c for c in map(customer_of_pk, by_customer) if c]
        profiles = self.repo.load_many(customers, now) if customers else {}
        settings = self.d.config.settings()
        entries: list[dict[str, Any]] = []
        events_in_window = 0
        for cid in customers:
            sp = profiles[cid]
            if not sp.exists or sp.profile.erased:
                continue
            events = []
            for item in sorted(by_customer[profile_pk(cid)], key=lambda i: i["sk"]):
                if item.get("type", "track") != "track" or not item.get("event"):
                    continue
                events.append({"name": item["event"], "timestamp": item["timestamp"],
                               "message_id": item.get("message_id"),
                               "properties": json.loads(item["properties"]) if item.get("properties") else {}})
            events_in_window += len(events)
            copy = sp.profile.model_copy(deep=True)
            entries += simulate(rule, copy, events, since=since, now=now, settings=settings)
        out: dict[str, Any] = {"rule": rule.id, "days": n_days, "from": clock.iso(since), "to": clock.iso(now),
                               "examined": examined, "events": events_in_window, "customers": len(customers),
                               "entries": entries, "cursor": encode_cursor(next_key)}
        if not start:
            out["total_estimate"] = self._item_count(table)
            out["notes"] = [
                "audience, consent and branch conditions are read on today's profiles",
                "opened/clicked branches assume the customer did not open or click",
                "sends are not checked against frequency caps or quiet hours",
            ]
        return out

    def _rest_of_partition(self, pk: str, after_sk: str) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"TableName": self.d.env.events_table,
                                  "KeyConditionExpression": "pk = :p AND sk > :s",
                                  "ExpressionAttributeValues": {":p": {"S": pk}, ":s": {"S": after_sk}}}
        out: list[dict[str, Any]] = []
        while True:
            resp = self.d.dynamodb.query(**kwargs)
            out += [ddb.deserialize(raw) or {} for raw in resp.get("Items", [])]
            if not resp.get("LastEvaluatedKey"):
                return out
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def _item_count(self, table: str) -> int | None:
        """DynamoDB's item count (refreshed about every six hours): the denominator of a progress bar."""
        try:
            return int(self.d.dynamodb.describe_table(TableName=table)["Table"].get("ItemCount", 0))
        except Exception:  # a progress estimate is not worth failing the call (no permission, throttling)
            return None

    # ---- segments ------------------------------------------------------------------------------------
    def count(self, *, condition: Any = None, segment: Any = None, cursor: Any = None,
              limit: Any = None) -> dict[str, Any]:
        """Customers matching a condition (evaluated now) or holding a segment, over one page of the
        profiles table; the client sums the pages."""
        from retention.customers.profile import facts as profile_facts
        from retention.language.segments import resolve_reference
        if (condition is None) == (segment is None):
            raise BadRequestError('give either "condition" (a condition object) or "segment" ("group/id" or "id")')
        groups = self.library.segment_groups()
        target: tuple[str, str] | None = None
        cond = None
        if condition is not None:
            cond = conditions.parse_condition(condition, source="condition")
            for ref, path in conditions.segment_reference_paths(cond, ("condition",)):
                try:
                    resolve_reference(groups, ref)
                except ValueError as exc:
                    raise ValidationError(f"{yamlio.format_path(path)}: {exc}") from None
        else:
            if not isinstance(segment, str) or not segment:
                raise BadRequestError('segment is a string: "group/id" or "id"')
            try:
                target = resolve_reference(groups, segment)
            except ValueError as exc:
                raise NotFoundError(str(exc)) from None
        start = decode_cursor(cursor)
        table = self.d.env.profiles_table
        kwargs: dict[str, Any] = {"TableName": table, "Limit": _page_limit(limit, COUNT_PAGE),
                                  "FilterExpression": "#sk = :p", "ProjectionExpression": "#pk, #sk, #doc, #sends, #v",
                                  "ExpressionAttributeNames": {"#pk": "pk", "#sk": "sk", "#doc": "doc",
                                                               "#sends": "sends", "#v": "version"},
                                  "ExpressionAttributeValues": {":p": {"S": "P"}}}
        if start:
            kwargs["ExclusiveStartKey"] = start
        resp = self.d.dynamodb.scan(**kwargs)
        now = clock.now()
        matched = scanned = 0
        for raw in resp.get("Items", []):
            item = ddb.deserialize(raw) or {}
            cid = str(item["pk"])[2:]
            profile = from_item(cid, item, now).profile
            if profile.erased:
                continue
            scanned += 1
            if target is not None:
                hit = target[1] in (profile.segments.get(target[0]) or {})
            else:
                assert cond is not None
                hit = bool(conditions.evaluate(cond, profile_facts(profile, now)))
            matched += int(hit)
        out: dict[str, Any] = {"matched": matched, "scanned": scanned, "examined": int(resp.get("ScannedCount", 0)),
                               "cursor": encode_cursor(resp.get("LastEvaluatedKey"))}
        if target is not None:
            out["segment"] = f"{target[0]}/{target[1]}"
        if not start:
            out["total_estimate"] = self._item_count(table)
        return out

    def assign(self, customer_id: str, group: Any, segment: Any, *, reason: Any, until: Any = None) -> dict[str, Any]:
        """A manual assignment (`profile.meta.manual_segments[group]`), saved with the profile's version
        check, then the customer's segments re-evaluated through the engine (transitions, journeys)."""
        now = clock.now()
        groups = {g.group: g for g in self.library.segment_groups()}
        if not isinstance(group, str) or group not in groups:
            raise NotFoundError(f"unknown segment group {group!r} (known: {', '.join(sorted(groups))})")
        if not isinstance(segment, str) or groups[group].segment(segment) is None:
            known = ", ".join(groups[group].segment_ids())
            raise NotFoundError(f"group '{group}' has no segment {segment!r} (known: {known})")
        if not isinstance(reason, str) or not reason.strip():
            raise BadRequestError("a manual assignment needs a reason")
        expires = self._until(until, now)
        assignment = {"segment": segment, "reason": reason.strip(), "until": clock.iso(expires) if expires else None,
                      "at": clock.iso(now)}
        self._update_manual(customer_id, now, lambda manual: manual.__setitem__(group, assignment))
        transitions = self._recheck(customer_id, now)
        return {"customer_id": customer_id, "group": group, **assignment, "transitions": transitions,
                "segments": self._segments_view(customer_id)}

    def unassign(self, customer_id: str, group: str) -> dict[str, Any]:
        now = clock.now()
        removed: list[Any] = []
        self._update_manual(customer_id, now, lambda manual: removed.append(manual.pop(group, None)))
        if removed[-1] is None:
            raise NotFoundError(f"customer '{customer_id}' has no manual assignment in group '{group}'")
        transitions = self._recheck(customer_id, now)
        return {"customer_id": customer_id, "group": group, "removed": removed[-1], "transitions": transitions,
                "segments": self._segments_view(customer_id)}

    @staticmethod
    def _until(until: Any, now: datetime) -> datetime | None:
        if until in (None, ""):
            return None
        from retention.language.rules import parse_duration
        if not isinstance(until, str):
            raise BadRequestError(f"until is a duration (30d) or an ISO timestamp, got {until!r}")
        try:
            expires = now + parse_duration(until)
        except ValueError:
            try:
                expires = clock.parse_iso(until)
            except ValueError:
                raise BadRequestError(f"until is a duration (30d) or an ISO timestamp, got {until!r}") from None
        if expires <= now:
            raise BadRequestError(f"until ({clock.iso(expires)}) is not in the future")
        return expires

    def _update_manual(self, customer_id: str, now: datetime, change: Any) -> None:
        for attempt in range(ATTEMPTS):
            sp = self._customer(customer_id, now)
            change(sp.profile.meta.setdefault("manual_segments", {}))
            try:
                self.repo.save(sp, now)
                return
            except Exception as exc:
                if not ddb.is_conditional_failure(exc):
                    raise
                ddb.backoff(attempt + 1)  # someone else wrote the profile: read it again
        raise RetentionError(f"customer '{customer_id}' kept changing; try again", code="conflict")

    def _recheck(self, customer_id: str, now: datetime) -> int:
        from retention.journeys.catalogue import definitions
        from retention.journeys.engine import Engine
        from retention.schedule.tick import Ticker
        d = self.d
        ticker = Ticker(ddb_client=d.dynamodb, sqs=d.sqs, env=d.env, config=d.config)
        return ticker.recheck(Engine(definitions(d.config)), customer_id, now)

    def _segments_view(self, customer_id: str) -> dict[str, Any]:
        from retention.admin.views import segments_view
        profile = self.repo.load(customer_id, clock.now()).profile
        return segments_view(profile.segments, self.library.segment_groups())


def apply_folder(d: Deps, base: Any = None, *, author: str = "library") -> dict[str, dict[str, Any]]:
    """A scenarios folder (segments/, templates/, rules/ of YAML) applied the way the admin API applies:
    segments first (validated together: groups refer to each other), then templates, then rules (validated
    against both). Returns {"KIND:id": {"version", "changed"}}. The local stack and `retention bootstrap` use
    it; an unchanged definition keeps its version."""
    from pathlib import Path

    from retention.core.yamlio import load_yaml_documents
    from retention.language.segments import load_groups, scenarios_dir
    base = Path(base) if base is not None else scenarios_dir()
    previews = Previews(d)
    applied: dict[str, dict[str, Any]] = {}
    texts = {f"{base.name}/segments/{p.name}": p.read_text(encoding="utf-8")
             for p in sorted((base / "segments").glob("*.y*ml"))}
    for group in load_groups(texts) if texts else []:
        item = d.config.apply("SEGDEF", group.group, group.to_data(), author=author)
        applied[f"SEGDEF:{group.group}"] = {"version": int(item["version"]), "changed": bool(item.get("changed"))}
    for folder, kind in (("templates", "TEMPLATE"), ("rules", "RULE")):
        for path in sorted((base / folder).glob("*.y*ml")):
            source, text = f"{base.name}/{folder}/{path.name}", path.read_text(encoding="utf-8")
            for body, linemap in load_yaml_documents(text, source):
                res = previews.apply(kind, str(body.get("id", "")), body, source=source, linemap=linemap,
                                     text=text, author=author)
                applied[f"{kind}:{res['id']}"] = {"version": int(res["version"]), "changed": bool(res.get("changed"))}
    return applied
