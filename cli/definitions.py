"""`retention rules|templates|segments …`: validate, diff, apply, list, get, versions, rollback, enable,
disable, lint, preview, dry-run, segment counts and manual assignments.

Files are YAML, one definition per document (`---` between several). Validation runs locally (the
library's own parsers) against what the API says is applied, or against `scenarios/` with
`--offline`; `apply` sends each document as YAML with its file name, so the API's errors name the
file and the line too.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from retention.core import yamlio
from retention.core.errors import RetentionError

from cli.client import ApiError, CliError, path_part
from cli.context import Ctx
from cli.output import fmt, pct, table

COLLECTIONS: dict[str, tuple[str, str]] = {"rules": ("RULE", "id"), "templates": ("TEMPLATE", "id"),
                                           "segments": ("SEGDEF", "group")}
_DOC_MARKER = re.compile(r"^(?:---|\.\.\.)(?:\s|$)")


@dataclass
class Document:
    path: str  # as the user wrote it: what error messages show
    body: Any
    linemap: yamlio.LineMap
    text: str  # this document alone, preceded by blank lines so its line numbers are the file's
    line: int  # first line of the document in the file

    def key(self, collection: str) -> str | None:
        value = self.body.get(COLLECTIONS[collection][1]) if isinstance(self.body, dict) else None
        return value if isinstance(value, str) and value else None


# ---- files -------------------------------------------------------------------------------------------

def expand(paths: list[str]) -> list[Path]:
    """Files as given; a directory stands for its *.yaml / *.yml files (sorted)."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            if not found:
                raise CliError(f"{raw}: no *.yaml files in this directory", exit_code=2)
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise CliError(f"{raw}: no such file or directory", exit_code=2)
    return out


def split_documents(text: str) -> list[tuple[int, str]]:
    """(first line, padded text) of each YAML document: the text is prefixed with as many newlines as
    lines before it, so a parser (here or in the API) reports the file's line numbers."""
    lines = text.splitlines(keepends=True)
    chunks: list[tuple[int, str]] = []
    start = 0
    for index, line in enumerate([*lines, "---\n"]):
        if _DOC_MARKER.match(line):
            body = "".join(lines[start:index])
            if any(text.strip() and not text.lstrip().startswith("#") for text in lines[start:index]):
                chunks.append((start + 1, "\n" * start + body))
            start = index + 1
    return chunks


def read_documents(path: Path) -> list[Document]:
    """Every non-empty document of a file; invalid YAML raises with file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot read: {exc}", exit_code=2) from exc
    docs = []
    for first, chunk in split_documents(text):
        for body, linemap in yamlio.load_yaml_documents(chunk, str(path)):
            docs.append(Document(str(path), body, linemap, chunk, first))
    return docs


def scenarios() -> Path:
    from retention.language.rules import scenarios_dir
    return scenarios_dir()


# ---- what is applied (for validation and lint) ----------------------------------------------------------

def applied_references(ctx: Ctx, offline: bool) -> tuple[set[str], dict[str, list[str]]]:
    """(template ids, {segment group: segment ids}) from the API, or from scenarios/ offline."""
    if offline:
        from retention.language.segments import default_groups
        templates: set[str] = set()
        for path in expand([str(scenarios() / "templates")]):
            templates |= {d.key("templates") or path.stem for d in read_documents(path)}
        return templates, {g.group: g.segment_ids() for g in default_groups()}
    templates = {row["id"] for row in ctx.client.get("/templates")["templates"]}
    groups: dict[str, list[str]] = {}
    for row in ctx.client.get("/segments")["segments"]:
        body = ctx.client.get(f"/segments/{path_part(row['id'])}")["body"]
        groups[row["id"]] = [str(s.get("id")) for s in body.get("segments", []) if isinstance(s, dict)]
    return templates, groups


def applied_templates(ctx: Ctx, ids: set[str], offline: bool) -> dict[str, Any]:
    """Template documents by id (for lint): from the API, or from scenarios/templates offline."""
    found: dict[str, Any] = {}
    if offline:
        for path in expand([str(scenarios() / "templates")]):
            for doc in read_documents(path):
                if doc.key("templates") in ids:
                    found[str(doc.key("templates"))] = doc.body
        return found
    for template_id in sorted(ids):
        try:
            found[template_id] = ctx.client.get(f"/templates/{path_part(template_id)}")["body"]
        except ApiError as exc:
            if exc.status != 404:
                raise
    return found


# ---- validate --------------------------------------------------------------------------------------------

def validate(ctx: Ctx, collection: str, files: list[str], offline: bool) -> int:
    paths = expand(files)
    problems: list[str] = []
    ok: list[str] = []
    try:
        if collection == "rules":
            problems, ok = _validate_rules(ctx, paths, offline)
        elif collection == "templates":
            problems, ok = _validate_templates(paths)
        else:
            problems, ok = _validate_segments(ctx, paths, offline)
    except RetentionError as exc:  # invalid YAML: the message names file:line
        problems = exc.message.splitlines()
    for line in ok:
        ctx.echo(line)
    for line in problems:
        ctx.warn(line)
    if problems:
        ctx.warn(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found")
        return 1
    return 0


def _validate_rules(ctx: Ctx, paths: list[Path], offline: bool) -> tuple[list[str], list[str]]:
    from retention.language.rules import RuleValidationError, load_rules
    templates, groups = applied_references(ctx, offline)
    texts = {str(p): p.read_text(encoding="utf-8") for p in paths}
    try:
        rules = load_rules(texts, templates=templates, segment_groups=groups)
    except RuleValidationError as exc:
        return exc.problems, []
    return [], [f"{r.source}: ok (rule {r.id}, {len(r.steps)} steps)" for r in rules]


def _validate_templates(paths: list[Path]) -> tuple[list[str], list[str]]:
    from retention.admin.previews import template_problems
    problems: list[str] = []
    ok: list[str] = []
    seen: dict[str, str] = {}
    for path in paths:
        for doc in read_documents(path):
            found = template_problems(doc.body, doc.path, doc.linemap)
            key = doc.key("templates")
            if key and key in seen:
                found.append(yamlio.located(doc.path, doc.linemap, ("id",), f"duplicate template id {key!r} "
                                            f"(also in {seen[key]})"))
            if key:
                seen.setdefault(key, doc.path)
            problems += found
            if not found:
                ok.append(f"{doc.path}: ok (template {key})")
    return problems, ok


def _validate_segments(ctx: Ctx, paths: list[Path], offline: bool) -> tuple[list[str], list[str]]:
    from retention.language.segments import load_groups
    texts: dict[str, Any] = {str(p): p.read_text(encoding="utf-8") for p in paths}
    mine = {d.key("segments") for p in paths for d in read_documents(p)}
    if offline:
        from retention.language.segments import segment_texts
        others: dict[str, Any] = {k: v for k, v in segment_texts(scenarios()).items()
                                  if all(d.key("segments") not in mine for d in read_documents(Path(k)))}
    else:
        others = {}
        for row in ctx.client.get("/segments")["segments"]:
            if row["id"] not in mine:
                body = ctx.client.get(f"/segments/{path_part(row['id'])}")["body"]
                others[f"applied segment group {row['id']}"] = body
    try:
        groups = load_groups({**others, **texts})
    except RetentionError as exc:
        return exc.message.splitlines(), []
    return [], [f"{g.source}: ok (group {g.group}, {len(g.segments)} segments)" for g in groups if g.group in mine]


# ---- diff ------------------------------------------------------------------------------------------------

def diff(ctx: Ctx, collection: str, files: list[str]) -> int:
    from retention.language.rules import diff_rules, parse_rule
    status = 0
    for path in expand(files):
        for doc in read_documents(path):
            key = doc.key(collection)
            if key is None:
                ctx.warn(yamlio.located(doc.path, doc.linemap, (), f"no {COLLECTIONS[collection][1]}: field"))
                status = 1
                continue
            try:
                old = ctx.client.get(f"/{collection}/{path_part(key)}")["body"]
            except ApiError as exc:
                if exc.status != 404:
                    raise
                old = None
            new = doc.body
            if collection == "rules":
                # both sides in canonical form: `4h` and `240m` are the same wait
                try:
                    new = parse_rule(doc.body, source=doc.path, linemap=doc.linemap).to_dict()
                except RetentionError as exc:
                    ctx.warn(exc.message)
                    status = 1
                    continue
                if old is not None:
                    # an old version the current language no longer reads: diff the raw documents
                    with contextlib.suppress(RetentionError):
                        old = parse_rule(old, source=f"applied rule {key}").to_dict()
            changes = diff_rules(old, new)
            ctx.echo(f"{doc.path}: {collection[:-1]} {key}: " + ("no changes" if not changes else
                                                                   f"{len(changes)} change(s)"))
            for line in changes:
                ctx.echo("  " + line)
    return status


# ---- apply -----------------------------------------------------------------------------------------------

def apply(ctx: Ctx, collection: str, files: list[str]) -> int:
    docs: list[Document] = []
    for path in expand(files):
        try:
            docs += read_documents(path)
        except RetentionError as exc:
            ctx.warn(exc.message)
            return 1
    if collection == "segments":
        docs = _dependency_order(docs)
    failures = 0
    for doc in docs:
        key = doc.key(collection)
        if key is None:
            ctx.warn(yamlio.located(doc.path, doc.linemap, (), f"no {COLLECTIONS[collection][1]}: field"))
            failures += 1
            continue
        try:
            # headers are Latin-1: a file name in Cyrillic travels percent-encoded
            res = ctx.client.admin("PUT", f"/{collection}/{path_part(key)}", data=doc.text.encode(),
                                   headers={"Content-Type": "application/yaml; charset=utf-8",
                                            "X-Retention-Source": quote(doc.path, safe="/\\:._-~+@ ")})
        except ApiError as exc:
            ctx.warn(exc.message)
            failures += 1
            continue
        state = "changed" if res.get("changed") else "unchanged"
        extra = f" (segment recompute: {res['recompute']} work items)" if res.get("recompute") else ""
        ctx.echo(f"{doc.path}: {collection[:-1]} {key} v{res['version']} {state}{extra}")
    if failures:
        ctx.warn(f"{failures} definition{'s' if failures != 1 else ''} not applied")
        return 1
    return 0


def _dependency_order(docs: list[Document]) -> list[Document]:
    """Segment groups that refer to each other go in dependency order (the API validates each apply
    against what is already applied)."""
    from retention.language.segments import load_groups
    try:
        order = [g.group for g in load_groups({f"{d.path}#{i}": d.body for i, d in enumerate(docs)})]
    except RetentionError:
        return docs  # the API will say what is wrong, file by file
    rank = {group: i for i, group in enumerate(order)}
    return sorted(docs, key=lambda d: rank.get(d.key("segments") or "", len(rank)))


# ---- list, get, versions, rollback, enable/disable ----------------------------------------------------

def list_(ctx: Ctx, collection: str) -> int:
    data = ctx.client.get(f"/{collection}")
    if ctx.json_output:
        ctx.dump(data)
        return 0
    rows = data.get(collection, [])
    if not rows:
        ctx.echo(f"no {collection} applied")
        return 0
    table(["id", "version", "enabled", "applied at"],
          [[r["id"], r["version"], r.get("enabled", True), (r.get("applied_at") or "")[:19]] for r in rows], ctx.out)
    return 0


def get(ctx: Ctx, collection: str, def_id: str) -> int:
    data = ctx.client.get(f"/{collection}/{path_part(def_id)}")
    if ctx.json_output:
        ctx.dump(data)
        return 0
    ctx.echo(f"# {collection[:-1]} {def_id} v{data['version']}" + ("" if data.get("enabled", True) else " (disabled)")
             + (f", applied {data['applied_at'][:19]}" if data.get("applied_at") else ""))
    text = data.get("text")
    ctx.out.write(text if text else yaml.safe_dump(data["body"], allow_unicode=True, sort_keys=False))
    return 0


def versions(ctx: Ctx, collection: str, def_id: str) -> int:
    data = ctx.client.get(f"/{collection}/{path_part(def_id)}/versions")
    if ctx.json_output:
        ctx.dump(data)
        return 0
    table(["version", "applied at", "enabled", "author"],
          [[v["version"], (v.get("applied_at") or "")[:19], v.get("enabled", True), v.get("author")]
           for v in data["versions"]], ctx.out)
    return 0


def rollback(ctx: Ctx, collection: str, def_id: str, version: int | None) -> int:
    res = ctx.client.post(f"/{collection}/{path_part(def_id)}/rollback", version=version)
    target = f"version {version}" if version is not None else "the previous version"
    if res.get("changed", True):
        ctx.echo(f"{collection[:-1]} {def_id}: rolled back to {target}, now v{res['version']}")
    else:
        ctx.echo(f"{collection[:-1]} {def_id}: already identical to {target} (v{res['version']})")
    return 0


def set_enabled(ctx: Ctx, collection: str, def_id: str, enabled: bool) -> int:
    res = ctx.client.post(f"/{collection}/{path_part(def_id)}/{'enable' if enabled else 'disable'}")
    ctx.echo(f"{collection[:-1]} {def_id} {'enabled' if enabled else 'disabled'} (v{res['version']})")
    return 0


# ---- lint ------------------------------------------------------------------------------------------------

def lint(ctx: Ctx, collection: str, targets: list[str], offline: bool, strict: bool) -> int:
    from retention.admin.previews import locate_warning
    from retention.language import lint as lint_mod
    from retention.language.rules import parse_rule
    warnings = 0
    for target in targets:
        if not Path(target).exists():
            data = ctx.client.get(f"/{collection}/{path_part(target)}/lint")
            for w in data["warnings"]:
                warnings += w.get("severity") == "warning"
                where = f" ({w['locale']})" if w.get("locale") else ""
                severity = w.get("severity", "warning")
                ctx.echo(f"{collection[:-1]} {target}{where}: {severity} {w['code']}: {w['message']}")
            if not data["warnings"]:
                ctx.echo(f"{collection[:-1]} {target}: no advice")
            continue
        for path in expand([target]):
            for doc in read_documents(path):
                # a file is linted for what it holds (`rules lint templates/welcome.yaml` works too)
                kind = collection
                if isinstance(doc.body, dict):
                    kind = "templates" if "locales" in doc.body else "rules" if "steps" in doc.body else collection
                try:
                    if kind == "rules":
                        rule = parse_rule(doc.body, source=doc.path, linemap=doc.linemap)
                        found = lint_mod.lint_rule(rule, applied_templates(ctx, rule.templates(), offline))
                    else:
                        found = lint_mod.lint_template(doc.body)
                except RetentionError as exc:
                    ctx.warn(exc.message)
                    warnings += 1
                    continue
                for w in found:
                    warnings += w.severity == "warning"
                    where = locate_warning(doc.path, doc.linemap, w.message, w.locale, w.code)
                    loc = f" ({w.locale})" if w.locale else ""
                    ctx.echo(f"{where}:{loc} {w.severity} {w.code}: {w.message}")
                if not found:
                    ctx.echo(f"{doc.path}: {doc.key(kind)}: no advice")
    return 1 if strict and warnings else 0


# ---- rules: preview and dry-run ------------------------------------------------------------------------

def _definition(path: str | None, rule_id: str) -> dict[str, Any] | None:
    if not path:
        return None
    docs = [d for d in read_documents(Path(path)) if d.key("rules") == rule_id]
    if not docs:
        raise CliError(f"{path}: no rule with id {rule_id!r}", exit_code=2)
    return dict(docs[0].body)


def _rule_target(command: str, target: str, file: str | None) -> tuple[str, dict[str, Any] | None]:
    """(rule id, the file's definition or None). A rule id never holds `/` or `.`, so such a target is a
    file: its one rule is used (as with `--file`), and a missing file says so rather than asking the API
    for a rule named like a path."""
    if file or ("/" not in target and "." not in target and not Path(target).is_file()):
        return target, _definition(file, target)
    path = Path(target)
    if not path.is_file():
        raise CliError(f"{target}: no such file; give a rule id, or a rule's file: "
                       f"retention rules {command} <id> --file {target}", exit_code=2)
    ids = [rid for d in read_documents(path) if (rid := d.key("rules"))]
    if len(ids) != 1:
        found = f"rules {', '.join(ids)}" if ids else "no rule"
        raise CliError(f"{target}: holds {found}; name one: retention rules {command} <id> --file {target}",
                       exit_code=2)
    return ids[0], _definition(target, ids[0])


def preview(ctx: Ctx, rule_id: str, customer: str, file: str | None, show_html: bool) -> int:
    body: dict[str, Any] = {"customer": customer}
    rule_id, definition = _rule_target("preview", rule_id, file)
    if definition is not None:
        body["definition"] = definition
    data = ctx.client.post(f"/rules/{path_part(rule_id)}/preview", body)
    if ctx.json_output:
        ctx.dump(data)
        return 0
    trig = data["trigger"]
    origin = {"journey": "the customer's journey", "event": "the customer's latest matching event",
              "sample": "SAMPLE data (no matching event stored)", "request": "the request"}[trig.get("source", "event")]
    ctx.echo(f"rule {data['rule']} for customer {data['customer_id']}: event {trig.get('name')!r} from {origin}")
    if not data.get("audience", True):
        ctx.echo("note: the customer is NOT in the rule's audience today: every send would be skipped")
    if not data["messages"]:
        ctx.echo("the rule has no send step")
    for m in data["messages"]:
        mark = " (this customer's variant)" if m.get("chosen") and m["variant"] != "default" else ""
        head = f"── step {m['step']} · {m['template']} · {m['channel']}"
        head += f" · variant {m['variant']}{mark}" if m["variant"] != "default" else ""
        ctx.echo("")
        ctx.echo(head)
        if m.get("would_skip"):
            ctx.echo(f"   would be skipped at send time: {m['would_skip']}")
        if m.get("error"):
            ctx.echo(f"   cannot render: {m['error']}")
            continue
        if m.get("subject") is not None:
            ctx.echo(f"Subject: {m['subject']}")
            ctx.echo("")
            ctx.echo(m.get("text") or "")
            if show_html and m.get("html"):
                ctx.echo("-- html --")
                ctx.echo(m["html"])
        if m.get("sms"):
            ctx.echo(f"SMS: {m['sms']}")
    errors = [m for m in data["messages"] if m.get("error")]
    return 1 if errors else 0


def dry_run(ctx: Ctx, rule_id: str, days: float, file: str | None, limit: int | None, show_all: bool) -> int:
    body: dict[str, Any] = {"days": days}
    rule_id, definition = _rule_target("dry-run", rule_id, file)
    if definition is not None:
        body["definition"] = definition
    if limit:
        body["limit"] = limit
    entries: list[dict[str, Any]] = []
    examined = events = customers = 0
    first: dict[str, Any] = {}
    bar = ctx.progress(f"replaying {rule_id}")
    while True:
        page = ctx.client.post(f"/rules/{path_part(rule_id)}/dry-run", body)
        first = first or page
        entries += page["entries"]
        examined += page["examined"]
        events += page["events"]
        customers += page["customers"]
        total = first.get("total_estimate")
        bar.update(examined, total=max(total, examined) if total else None,
                   extra=f"· {len(entries)} entries")
        if not page.get("cursor"):
            break
        body["cursor"] = page["cursor"]
    bar.finish()
    if ctx.json_output:
        ctx.dump({**first, "examined": examined, "events": events, "customers": customers, "entries": entries,
                  "cursor": None})
        return 0
    _print_dry_run(ctx, rule_id, first, entries, events, show_all)
    return 0


def _print_dry_run(ctx: Ctx, rule_id: str, first: dict[str, Any], entries: list[dict[str, Any]], events: int,
                   show_all: bool) -> None:
    treated = [e for e in entries if not e["holdout"]]
    people = {e["customer_id"] for e in entries}
    ctx.echo(f"dry-run of {rule_id} over {fmt(first['days'])} days ({first['from'][:16]} → {first['to'][:16]} UTC): "
             "nothing was sent or written")
    ctx.echo(f"events replayed: {events} · customers entering: {len(people)} · entries: {len(treated)}"
             f" (+{len(entries) - len(treated)} in the holdout)")
    if not entries:
        ctx.echo("no customer would have entered the journey in this period")
    counts: dict[tuple[int, str, str, str], list[int]] = {}
    for entry in treated:
        for step in entry["steps"]:
            if step["kind"] == "send":
                key = (step["step"], step["template"], step["variant"], step["channel"])
                past_future = counts.setdefault(key, [0, 0])
                past_future[1 if step.get("future") else 0] += 1
    if counts:
        ctx.echo("")
        ctx.echo("messages:")
        table(["step", "template", "variant", "channel", "by now", "still to come"],
              [[k[0], k[1], k[2], k[3], v[0], v[1]] for k, v in sorted(counts.items())], ctx.out, indent="  ")
    if entries:
        ctx.echo("")
        shown = entries if show_all else entries[:20]
        ctx.echo("entries" + ("" if show_all or len(entries) <= 20 else f" (first 20 of {len(entries)}; --all)") + ":")
        rows = []
        for e in shown:
            sends = [f"{s['template']}@{s['at'][5:16]}" for s in e["steps"] if s["kind"] == "send"]
            state = e["state"] + (f" ({e['exit']['event']} {e['exit']['at'][5:16]})" if e.get("exit") else "")
            rows.append([e["customer_id"], e["entered_at"][:16], e["trigger"]["event"], state,
                         ", ".join(sends) or ("held out" if e["holdout"] else "-")])
        table(["customer", "entered", "trigger", "state", "messages (template@MM-DD HH:MM)"], rows, ctx.out,
              indent="  ")
    for note in first.get("notes", []):
        ctx.echo(f"note: {note}")


# ---- segments: count, assign ----------------------------------------------------------------------------

def _count_target(arg: str) -> dict[str, Any]:
    """A file holding a condition, an inline condition (YAML/JSON), or a segment (`group/id` or `id`)."""
    path = Path(arg)
    if path.is_file():
        docs = read_documents(path)
        if len(docs) != 1 or not isinstance(docs[0].body, dict):
            raise CliError(f"{arg}: expected one condition document", exit_code=2)
        return {"condition": docs[0].body}
    if arg.lstrip().startswith("{") or ": " in arg:
        try:
            cond = yaml.safe_load(arg)
        except yaml.YAMLError as exc:
            raise CliError(f"cannot read the condition {arg!r}: {exc}", exit_code=2) from exc
        if not isinstance(cond, dict):
            raise CliError(f"a condition is a mapping such as '{{kpi: orders_count, gte: 3}}', got {arg!r}",
                           exit_code=2)
        return {"condition": cond}
    return {"segment": arg}


def count(ctx: Ctx, target: str, limit: int | None) -> int:
    body = _count_target(target)
    if limit:
        body["limit"] = limit
    matched = scanned = examined = 0
    first: dict[str, Any] = {}
    bar = ctx.progress("counting")
    while True:
        page = ctx.client.post("/segments/count", body)
        first = first or page
        matched += page["matched"]
        scanned += page["scanned"]
        examined += page.get("examined", page["scanned"])
        total = first.get("total_estimate")
        bar.update(examined, total=max(total, examined) if total else None, extra=f"· {matched} matched")
        if not page.get("cursor"):
            break
        body["cursor"] = page["cursor"]
    bar.finish()
    result = {"matched": matched, "scanned": scanned, **({"segment": first["segment"]} if "segment" in first else {})}
    if ctx.json_output:
        ctx.dump(result)
        return 0
    what = first.get("segment") or "condition"
    ctx.echo(f"{what}: {matched} of {scanned} profiles ({pct(matched / scanned if scanned else None)})")
    return 0


def assign(ctx: Ctx, customer: str, group: str, segment: str, reason: str, until: str | None) -> int:
    res = ctx.client.post(f"/customers/{path_part(customer)}/segments",
                          {"group": group, "segment": segment, "reason": reason, "until": until})
    if ctx.json_output:
        ctx.dump(res)
        return 0
    expiry = f" until {res['until'][:16]} UTC" if res.get("until") else " (no expiry)"
    ctx.echo(f"customer {customer}: {group} = {segment}{expiry}, reason: {res['reason']}")
    current = res.get("segments", {}).get("groups", {}).get(group)
    ctx.echo(f"re-evaluated: {res['transitions']} transition(s); {group} is now {fmt(current)}")
    return 0


def unassign(ctx: Ctx, customer: str, group: str) -> int:
    res = ctx.client.admin("DELETE", f"/customers/{path_part(customer)}/segments/{path_part(group)}")
    current = res.get("segments", {}).get("groups", {}).get(group)
    ctx.echo(f"customer {customer}: manual {group} assignment removed; {group} is now {fmt(current)}")
    return 0

