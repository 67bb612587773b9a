"""`retention`: the marketer's CLI, an HTTP client of the admin API (the same against the local stack
and a deployment).

    retention [--url URL] [--token TOKEN] [--json] <command> …

URL: `--url`, else $RETENTION_URL, else http://127.0.0.1:8787. Admin token: `--token`, else
$RETENTION_ADMIN_TOKEN, else dev-admin-token. Write key (import): `--write-key`, else
$RETENTION_WRITE_KEY, else dev-write-key.

Exit codes: 0 done; 1 the operation failed (validation problems — each named `file:line` —, an API
error, rejected import rows, a lint warning with --strict); 2 usage (bad arguments, a missing file,
the API unreachable); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import requests
from retention.core.errors import RetentionError

from cli import commands, definitions, ops
from cli.client import ApiClient, CliError
from cli.context import Ctx

Handler = Callable[[Ctx, argparse.Namespace], int]


def _common() -> argparse.ArgumentParser:
    """Global options, accepted before or after the command (SUPPRESS: a later default never overwrites)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="API base URL (env RETENTION_URL)")
    common.add_argument("--token", default=argparse.SUPPRESS, help="admin token (env RETENTION_ADMIN_TOKEN)")
    common.add_argument("--json", dest="json_output", action="store_true", default=argparse.SUPPRESS,
                        help="print the API's JSON instead of tables")
    common.add_argument("--no-progress", dest="no_progress", action="store_true", default=argparse.SUPPRESS,
                        help="never draw progress bars")
    return common


class _Builder:
    def __init__(self) -> None:
        self.common = _common()
        self.root = argparse.ArgumentParser(
            prog="retention", parents=[self.common],
            description="Retention engine CLI: definitions, previews, dry-runs, imports, reports (admin API client).",
            epilog="exit codes: 0 done, 1 failed (validation, API error, rejected rows), 2 usage or API unreachable")
        self.groups = self.root.add_subparsers(dest="group", metavar="COMMAND", required=True)

    def group(self, name: str, help_text: str) -> Any:
        parser = self.groups.add_parser(name, help=help_text, parents=[self.common], description=help_text)
        return parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    def leaf(self, sub: Any, name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text,
                                                         parents=[self.common])
        parser.set_defaults(handler=handler)
        return parser


def _definition_commands(b: _Builder, collection: str) -> None:
    noun = collection[:-1]
    sub = b.group(collection, f"{noun} definitions (YAML, versioned)")
    p = b.leaf(sub, "validate", f"validate {noun} files locally (references checked against what is applied)",
               lambda c, a: definitions.validate(c, collection, a.files, a.offline))
    p.add_argument("files", nargs="+", metavar="FILE|DIR")
    p.add_argument("--offline", action="store_true", help="check references against scenarios/ instead of the API")
    p = b.leaf(sub, "diff", f"changes between a file and the applied {noun}",
               lambda c, a: definitions.diff(c, collection, a.files))
    p.add_argument("files", nargs="+", metavar="FILE")
    p = b.leaf(sub, "apply", f"apply {noun} files (or every *.yaml of a directory)",
               lambda c, a: definitions.apply(c, collection, a.files))
    p.add_argument("files", nargs="+", metavar="FILE|DIR")
    b.leaf(sub, "list", f"applied {collection}", lambda c, a: definitions.list_(c, collection))
    p = b.leaf(sub, "get", f"one applied {noun} (its YAML)", lambda c, a: definitions.get(c, collection, a.id))
    p.add_argument("id")
    p = b.leaf(sub, "versions", f"every applied version of a {noun}",
               lambda c, a: definitions.versions(c, collection, a.id))
    p.add_argument("id")
    p = b.leaf(sub, "rollback", "re-apply an earlier version (default: the previous one)",
               lambda c, a: definitions.rollback(c, collection, a.id, a.version))
    p.add_argument("id")
    p.add_argument("--version", type=int, help="the version to go back to")
    if collection in ("rules", "templates"):
        p = b.leaf(sub, "lint", "advice (seed 001's subject-line lessons, consent, holdouts …) for files or an id",
                   lambda c, a: definitions.lint(c, collection, a.targets, a.offline, a.strict))
        p.add_argument("targets", nargs="+", metavar="FILE|ID")
        p.add_argument("--offline", action="store_true", help="templates from scenarios/ instead of the API")
        p.add_argument("--strict", action="store_true", help="exit 1 when there is a warning")
    if collection == "rules":
        p = b.leaf(sub, "enable", "enable a rule", lambda c, a: definitions.set_enabled(c, "rules", a.id, True))
        p.add_argument("id")
        p = b.leaf(sub, "disable", "disable a rule", lambda c, a: definitions.set_enabled(c, "rules", a.id, False))
        p.add_argument("id")
        p = b.leaf(sub, "preview", "render every send step of a rule for one customer (nothing is sent)",
                   lambda c, a: definitions.preview(c, a.id, a.customer, a.file, a.html))
        p.add_argument("id")
        p.add_argument("--customer", required=True, help="the customer's userId")
        p.add_argument("--file", help="preview this file's version of the rule instead of the applied one")
        p.add_argument("--html", action="store_true", help="also print the HTML parts")
        p = b.leaf(sub, "dry-run", "replay the last N days of stored events through a rule (nothing is sent)",
                   lambda c, a: definitions.dry_run(c, a.id, a.days, a.file, a.limit, a.all))
        p.add_argument("id", metavar="ID|FILE", help="a rule id, or a file holding one rule")
        p.add_argument("--days", type=float, default=7, help="how far back (default 7)")
        p.add_argument("--file", help="dry-run this file's version of the rule instead of the applied one")
        p.add_argument("--limit", type=int, help="events read per request (default: the API's)")
        p.add_argument("--all", action="store_true", help="list every entry, not the first 20")
    if collection == "segments":
        p = b.leaf(sub, "count", "count customers in a segment (group/id or id) or matching a condition",
                   lambda c, a: definitions.count(c, a.target, a.limit))
        p.add_argument("target", metavar="DEFINITION|ID",
                       help="a segment (lifecycle/loyal), a condition file, or an inline condition "
                            "('{kpi: orders_count, gte: 3}')")
        p.add_argument("--limit", type=int, help="profiles read per request (default 500)")
        p = b.leaf(sub, "assign", "assign a customer to a segment by hand (with a reason, optionally until)",
                   lambda c, a: definitions.assign(c, a.customer, a.group, a.segment, a.reason, a.until))
        p.add_argument("customer")
        p.add_argument("group")
        p.add_argument("segment")
        p.add_argument("--reason", required=True)
        p.add_argument("--until", help="a duration (30d) or an ISO timestamp; default: no expiry")
        p = b.leaf(sub, "unassign", "remove a manual assignment (the rules decide again)",
                   lambda c, a: definitions.unassign(c, a.customer, a.group))
        p.add_argument("customer")
        p.add_argument("group")


def _bootstrap(ctx: Ctx, args: argparse.Namespace) -> int:
    from cli.bootstrap import BootstrapError, run
    try:
        return run(args.stack, args.name, Path(args.scenarios), args.source, ctx.out, region=args.region)
    except BootstrapError as exc:
        raise CliError(str(exc), exit_code=2) from exc


def build_parser(stdin: TextIO | None = None) -> argparse.ArgumentParser:
    from cli.importer import run_import
    from cli.report import run_report
    b = _Builder()

    sub = b.group("sources", "write keys for the ingestion API")
    p = b.leaf(sub, "create", "create a source; prints its write key once",
               lambda c, a: commands.sources_create(c, a.name, a.scopes))
    p.add_argument("name")
    p.add_argument("--scopes", default=None,
                   help="comma-separated: events, customers, contact, consent, or all (default: events,customers; "
                        "a browser or app key: events)")
    b.leaf(sub, "list", "sources and their state", lambda c, a: commands.sources_list(c))
    p = b.leaf(sub, "revoke", "revoke a source's write key", lambda c, a: commands.sources_revoke(c, a.source_id))
    p.add_argument("source_id")

    sub = b.group("tokens", "people's tokens for the admin API (roles: viewer, editor, admin)")
    p = b.leaf(sub, "create", "a token for a person; printed once",
               lambda c, a: commands.tokens_create(c, a.name, a.role, a.expires))
    p.add_argument("--name", required=True, help="who uses it (recorded in the audit log)")
    p.add_argument("--role", choices=("viewer", "editor", "admin"), default="viewer",
                   help="viewer reads; editor changes definitions and customers; admin also manages tokens, "
                        "sources, settings and sending (default viewer)")
    p.add_argument("--expires", help="a duration such as 90d, 12h, 2w (default: no expiry)")
    b.leaf(sub, "list", "tokens: who, role, state, expiry", lambda c, a: commands.tokens_list(c))
    p = b.leaf(sub, "revoke", "revoke a token (by its id, tok_…)", lambda c, a: commands.tokens_revoke(c, a.token_id))
    p.add_argument("token_id")

    about = "the audit log: every change of a rule, segment, template, setting, token, source or customer"
    p = b.groups.add_parser("audit", parents=[b.common], help=about, description=about)
    p.set_defaults(handler=lambda c, a: commands.audit(c, a.since, a.kind, a.who, a.limit))
    p.add_argument("--since", help="ISO date or time (e.g. 2026-12-01)")
    p.add_argument("--kind", help="rule, segment, template, setting, token, source, customer, sending …")
    p.add_argument("--who", help="a person's name")
    p.add_argument("--limit", type=int, default=100)

    sub = b.group("sending", "the send brake: marketing email pauses itself on high bounce or complaint rates")
    p = b.leaf(sub, "show", "active or paused, why, since when, the rates of the window",
               lambda c, a: ops.sending_show(c, a.identity))
    p.add_argument("--identity", help="the sending domain (default: the stack's sender)")
    p = b.leaf(sub, "resume", "resume marketing email (admin); a fresh window starts",
               lambda c, a: ops.sending_resume(c, a.identity))
    p.add_argument("--identity", help="the sending domain (default: the stack's sender)")

    about = ("after `make deploy`: the first admin token (for a named person), the scenario library and a first "
             "write key, with your AWS credentials (no admin token needed); a second run says what exists")
    p = b.groups.add_parser("bootstrap", parents=[b.common], help=about, description=about)
    p.set_defaults(handler=lambda c, a: _bootstrap(c, a))
    p.add_argument("--stack", required=True, help="the CloudFormation stack (Retention-<stage>, e.g. Retention-prod)")
    p.add_argument("--name", default=os.environ.get("USER") or "admin",
                   help="the person the admin token is for (default: $USER)")
    p.add_argument("--scenarios", default=str(Path(__file__).resolve().parents[1] / "scenarios"),
                   help="a scenarios folder (segments/, templates/, rules/; default: the bundled library)")
    p.add_argument("--source", default="shop", help="the name of the first source (default: shop)")
    p.add_argument("--region", help="AWS region of the stack (default: AWS_REGION / your profile's)")

    about = "check a deployment: DNS records of the sending domain, SES sandbox, quota and reputation"
    p = b.groups.add_parser("doctor", parents=[b.common], help=about, description=about)
    p.set_defaults(handler=lambda c, a: ops.doctor(c, a.stack, a.domain, a.region))
    p.add_argument("--stack", help="the CloudFormation stack (its outputs name the domain and DKIM records)")
    p.add_argument("--domain", help="the sending domain (default: from the stack)")
    p.add_argument("--region", help="AWS region")

    about = "the DNS records to publish for the stack's sending domain (DKIM, MAIL FROM, SPF, DMARC)"
    p = b.groups.add_parser("dns", parents=[b.common], help=about, description=about)
    p.set_defaults(handler=lambda c, a: ops.dns(c, a.stack, a.region))
    p.add_argument("--stack", required=True)
    p.add_argument("--region")

    for collection in ("rules", "templates", "segments"):
        _definition_commands(b, collection)

    sub = b.group("customers", "customer profiles")
    p = b.leaf(sub, "show", "profile, KPIs, segments, journeys, messages",
               lambda c, a: commands.customers_show(c, a.id))
    p.add_argument("id")
    p = b.leaf(sub, "events", "the customer's stored events",
               lambda c, a: commands.customers_events(c, a.id, a.limit))
    p.add_argument("id")
    p.add_argument("--limit", type=int, default=100)
    p = b.leaf(sub, "forget", "erase a customer (right to be forgotten)",
               lambda c, a: commands.customers_forget(c, a.id, a.yes, stdin or sys.stdin))
    p.add_argument("id")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    about = "import customers and orders (CSV) or Segment messages (JSON lines) through /v1/batch"
    from cli.importer import CSV_HELP
    p = b.groups.add_parser("import", parents=[b.common], help=about, description=about, epilog=CSV_HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(handler=lambda c, a: run_import(c, a.file, a.format, a.batch, a.resume, a.workers))
    p.add_argument("file")
    p.add_argument("--format", choices=("csv", "jsonl"), help="default: from the file extension")
    p.add_argument("--batch", type=int, default=100, help="messages per request (default 100)")
    p.add_argument("--resume", action="store_true", help="continue after the line in FILE.progress")
    p.add_argument("--workers", type=int, default=4, help="requests in parallel (default 4)")
    p.add_argument("--write-key", dest="write_key", help="the source's write key (env RETENTION_WRITE_KEY)")

    from cli import products
    sub = b.group("catalog", "the product catalogue")
    p = b.leaf(sub, "import", "import a CSV, JSON lines, Yandex Market YML or Google Merchant feed (upsert)",
               lambda c, a: products.import_catalog(c, a.file, a.format, a.batch, a.resume))
    p.add_argument("file")
    p.add_argument("--format", choices=("csv", "jsonl", "yml", "rss"), help="default: from the file")
    p.add_argument("--batch", type=int, default=products.BATCH, help=f"products per request (default {products.BATCH})")
    p.add_argument("--resume", action="store_true", help="continue after the line in FILE.progress")
    p = b.leaf(sub, "delete", "delete a product: out of the catalogue and every recommendation (audited)",
               lambda c, a: products.delete_product(c, a.product_id))
    p.add_argument("product_id")

    sub = b.group("coupons", "personal coupon pools")
    p = b.leaf(sub, "upload", "add codes (one per line, or the first CSV column) to a pool",
               lambda c, a: products.upload_coupons(c, a.pool, a.file, a.discount, a.valid_days))
    p.add_argument("pool")
    p.add_argument("file")
    p.add_argument("--discount", required=True, help='"10%%" or "500 RUB"')
    p.add_argument("--valid-days", dest="valid_days", type=int, required=True, help="days a code is valid once issued")
    p = b.leaf(sub, "stats", "issued, redeemed, revenue and codes left, per pool; fallback codes; the last days",
               lambda c, a: products.pool_stats(c, a.pool, a.days))
    p.add_argument("pool", nargs="?")
    p.add_argument("--days", type=int, help="the recent window in days (default 30)")

    sub = b.group("nps", "Net Promoter Score")
    p = b.leaf(sub, "report", "NPS with its label, by stage and shop, and the trend",
               lambda c, a: commands.nps_report(c, a.date_from, a.date_to, a.period))
    p.add_argument("--from", dest="date_from", help="YYYY-MM-DD (default: a year ago)")
    p.add_argument("--to", dest="date_to", help="YYYY-MM-DD (default: today)")
    p.add_argument("--period", choices=("day", "week", "month"), default="month")
    secret = b.leaf(sub, "secret", "the signing secret of the NPS webhook", lambda c, a: commands.nps_rotate(c))
    secret.add_argument("action", choices=("rotate",), help="rotate: a new secret, shown once (the old one stays "
                                                             "valid until the next rotation)")

    p = b.groups.add_parser("report", parents=[b.common], help="rule statistics: tables, PNG charts, one HTML page")
    p.set_defaults(handler=lambda c, a: run_report(c, a.rule, a.date_from, a.date_to, a.out))
    p.add_argument("--rule", action="append", help="a rule id (repeatable; default: every rule)")
    p.add_argument("--from", dest="date_from", help="YYYY-MM-DD")
    p.add_argument("--to", dest="date_to", help="YYYY-MM-DD")
    p.add_argument("--out", default="reports", help="directory for the PNG and HTML files (default reports/)")

    about = "generate a demo shop (customers, months of orders, pickups, refunds, NPS answers) through the API"
    p = b.groups.add_parser("demo", parents=[b.common], help=about, description=about)
    p.set_defaults(handler=lambda c, a: commands.demo(c, a.customers, a.months, a.seed))
    p.add_argument("--customers", type=int, default=3000, help="default 3000")
    p.add_argument("--months", type=int, default=4, help="months of history (default 4)")
    p.add_argument("--seed", type=int, default=7, help="the same seed gives the same shop (a rerun adds nothing)")

    sub = b.group("settings", "global settings (caps, quiet hours, control group …)")
    b.leaf(sub, "show", "the current settings", lambda c, a: commands.settings_show(c))
    p = b.leaf(sub, "set", "change settings: KEY=VALUE (YAML values; dotted keys reach inside)",
               lambda c, a: commands.settings_set(c, a.assignments))
    p.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    return b.root


def main(argv: Sequence[str] | None = None, *, session: requests.Session | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None, stdin: TextIO | None = None) -> int:
    """The console script. `session` lets tests point the HTTP layer at the handlers in process."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser(stdin)
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    client = ApiClient.from_options(getattr(args, "url", None), getattr(args, "token", None),
                                    getattr(args, "write_key", None), session=session)
    ctx = Ctx(client=client, out=out, err=err, json_output=bool(getattr(args, "json_output", False)),
              progress_enabled=False if getattr(args, "no_progress", False) else None)
    try:
        return int(args.handler(ctx, args))
    except CliError as exc:
        err.write(f"error: {exc.message}\n" if "\n" not in exc.message else exc.message + "\n")
        return exc.exit_code
    except RetentionError as exc:  # a local parse (invalid YAML, an invalid rule): messages name file:line
        err.write(exc.message + "\n")
        return 1
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
