"""`retention catalog import FILE`, `retention catalog delete PRODUCT_ID` and `retention coupons upload POOL
FILE` (admin API: PUT /admin/catalog, DELETE /admin/catalog/{product_id}, POST /admin/coupons/{pool}).

Catalogue formats (by extension, or `--format`):
- `csv`: a header row; columns product_id (or id, sku), name, url, image_url, price, currency, category,
  brand, in_stock, accessories (ids separated by `,` or `;`), consumable, consumable_days (days until a
  bought one runs out: a `Product Replenishment Due` event that many days after each order).
- `jsonl`: one product object per line, the fields of `PUT /admin/catalog`.
- `yml`: a Yandex Market YML feed (`<yml_catalog><shop><categories>…<offers><offer id available>` with
  url, price, currencyId, categoryId, picture, name or model, vendor); categories by name;
  `<param name="consumable_days">30</param>` (or `replenish_days`) sets the replenishment days.
- `rss`: a Google Merchant feed (RSS 2.0 `<item>` or Atom `<entry>` with `g:id`, `g:title`, `g:link`,
  `g:image_link`, `g:price` "1500.00 RUB", `g:availability`, `g:product_type`, `g:brand`); a custom label
  `g:custom_label_0`…`4` of `consumable_days:30` sets the replenishment days.

A bad row is reported with its line (`FILE:LINE: why`) and skipped; the good rows are imported. Products
go in batches (500 per request); `FILE.progress` holds the last line of the last accepted batch, so
`--resume` continues a large import where it stopped.
"""

from __future__ import annotations

import csv
import xml.sax
import xml.sax.handler
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retention.products.catalog import Product

from cli.client import CliError, path_part
from cli.context import Ctx
from cli.files import json_lines
from cli.output import table

BATCH = 500
CODES_PER_REQUEST = 5000
G = "http://base.google.com/ns/1.0"
DAYS_NAMES = ("consumable_days", "replenish_days")  # a YML <param name> or a Merchant custom label


@dataclass
class FeedRow:
    line: int
    product: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class Outcome:
    imported: int = 0
    bad: list[str] = field(default_factory=list)


def _validated(line: int, raw: dict[str, Any]) -> FeedRow:
    try:
        product = Product.model_validate(raw)
    except ValueError as exc:
        errors = getattr(exc, "errors", None)
        first = errors()[0] if callable(errors) and errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return FeedRow(line, error=f"{where}: {first.get('msg', exc)}" if where else str(exc))
    unset = {k for k in ("consumable", "consumable_days") if not getattr(product, k)}
    return FeedRow(line, product=product.model_dump(exclude=unset or None))


def csv_rows(path: Path) -> Iterator[FeedRow]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"product_id", "id", "sku"} & {f.strip() for f in reader.fieldnames}:
            raise CliError(f"{path}:1: the header needs a product_id (or id, sku) column", exit_code=1)
        for record in reader:
            raw = {k.strip(): (v or "").strip() for k, v in record.items() if k}
            raw.setdefault("product_id", raw.get("id") or raw.get("sku") or "")
            if not raw.get("in_stock"):
                raw.pop("in_stock", None)
            for optional in ("consumable", "consumable_days"):
                if not raw.get(optional):
                    raw.pop(optional, None)
            yield _validated(reader.line_num, raw)


def jsonl_rows(path: Path) -> Iterator[FeedRow]:
    for line in json_lines(path, "a product is a JSON object"):
        yield FeedRow(line.number, error=line.error) if line.value is None else _validated(line.number, line.value)


class _Feed(xml.sax.handler.ContentHandler):
    """Collects the records of an XML feed (YML offers, Merchant items) with the line each starts on."""

    def __init__(self, record_tags: set[str]) -> None:
        super().__init__()
        self.record_tags = record_tags
        self.records: list[tuple[int, dict[str, str], dict[str, list[str]]]] = []
        self.categories: dict[str, str] = {}
        self._current: tuple[int, dict[str, str], dict[str, list[str]]] | None = None
        self._text: list[str] = []
        self._category: str | None = None
        self._param: str | None = None
        self._locator: Any = None

    def setDocumentLocator(self, locator: Any) -> None:
        self._locator = locator

    def startElementNS(self, name: tuple[str | None, str], qname: str | None, attrs: Any) -> None:
        local = name[1]
        attributes = {k[1]: v for k, v in attrs.items()}
        line = self._locator.getLineNumber() if self._locator else 0
        if local in self.record_tags and self._current is None:
            self._current = (line, attributes, {})
        elif local == "param" and self._current is not None:
            self._param = attributes.get("name")
        elif local == "category" and self._current is None:
            self._category = attributes.get("id")
        self._text = []

    def characters(self, content: str) -> None:
        self._text.append(content)

    def endElementNS(self, name: tuple[str | None, str], qname: str | None) -> None:
        ns, local = name
        text = "".join(self._text).strip()
        if self._current is not None:
            if local in self.record_tags:
                self.records.append(self._current)
                self._current = None
            else:
                key = f"g:{local}" if ns == G else local
                if local == "param" and self._param:  # YML: <param name="…">value</param>
                    key = f"param:{self._param.strip().lower()}"
                    self._param = None
                self._current[2].setdefault(key, []).append(text)
        elif local == "category" and self._category is not None:
            self.categories[self._category] = text
            self._category = None
        self._text = []


def _parse_xml(path: Path, tags: set[str]) -> _Feed:
    handler = _Feed(tags)
    # the operator's own feed file; external entities are off, and expat (>= 2.4.1) caps entity expansion
    parser = xml.sax.make_parser()  # noqa: S317
    parser.setFeature(xml.sax.handler.feature_namespaces, True)
    parser.setFeature(xml.sax.handler.feature_external_ges, False)
    parser.setContentHandler(handler)
    try:
        parser.parse(str(path))
    except xml.sax.SAXParseException as exc:
        # the rows before the broken markup are still imported; the error names its line
        handler.records.append((exc.getLineNumber() or 0, {"__error__": f"broken XML: {exc.getMessage()}"}, {}))
    return handler


def _first(fields: dict[str, list[str]], *names: str) -> str:
    for name in names:
        for value in fields.get(name, []):
            if value:
                return value
    return ""


def yml_rows(path: Path) -> Iterator[FeedRow]:
    feed = _parse_xml(path, {"offer"})
    for line, attrs, fields in feed.records:
        if "__error__" in attrs:
            yield FeedRow(line, error=attrs["__error__"])
            continue
        name = _first(fields, "name") or " ".join(x for x in (_first(fields, "typePrefix"), _first(fields, "vendor"),
                                                                 _first(fields, "model")) if x)
        available = attrs.get("available")
        raw = {"product_id": attrs.get("id") or "", "name": name, "url": _first(fields, "url"),
               "image_url": _first(fields, "picture"), "price": _first(fields, "price") or None,
               "currency": _first(fields, "currencyId") or "RUB",
               "category": feed.categories.get(_first(fields, "categoryId"), _first(fields, "categoryId")),
               "brand": _first(fields, "vendor")}
        if available is not None:
            raw["in_stock"] = available
        days = _first(fields, *(f"param:{name}" for name in DAYS_NAMES))
        if days:
            raw["consumable_days"] = days
        if not raw["product_id"]:
            yield FeedRow(line, error="an offer without id")
            continue
        yield _validated(line, raw)


def merchant_rows(path: Path) -> Iterator[FeedRow]:
    feed = _parse_xml(path, {"item", "entry"})
    for line, attrs, fields in feed.records:
        if "__error__" in attrs:
            yield FeedRow(line, error=attrs["__error__"])
            continue
        price = _first(fields, "g:sale_price", "g:price")
        amount, _, currency = price.partition(" ")
        raw: dict[str, Any] = {
            "product_id": _first(fields, "g:id"), "name": _first(fields, "g:title", "title"),
            "url": _first(fields, "g:link", "link"), "image_url": _first(fields, "g:image_link"),
            "price": amount or None, "currency": currency or "RUB",
            "category": _first(fields, "g:product_type", "g:google_product_category").split(">")[-1].strip(),
            "brand": _first(fields, "g:brand")}
        availability = _first(fields, "g:availability")
        if availability:
            raw["in_stock"] = availability
        for label in (_first(fields, f"g:custom_label_{i}") for i in range(5)):
            name, sep, value = label.replace("=", ":").partition(":")
            if sep and name.strip().lower() in DAYS_NAMES:
                raw["consumable_days"] = value.strip()
        if not raw["product_id"]:
            yield FeedRow(line, error="an item without g:id")
            continue
        yield _validated(line, raw)


READERS = {"csv": csv_rows, "jsonl": jsonl_rows, "yml": yml_rows, "rss": merchant_rows}
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".yml": "yml", ".rss": "rss",
              ".xml": "rss"}


def _format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path.suffix.lower() == ".xml":  # a YML feed is XML too: look at the root element
        head = path.open(encoding="utf-8", errors="replace").read(2048)
        return "yml" if "<yml_catalog" in head else "rss"
    found = EXTENSIONS.get(path.suffix.lower())
    if not found:
        raise CliError(f"{path}: unknown format; use --format csv|jsonl|yml|rss", exit_code=2)
    return found


def import_catalog(ctx: Ctx, file: str, fmt: str | None = None, batch: int = BATCH, resume: bool = False) -> int:
    path = Path(file)
    if not path.is_file():
        raise CliError(f"{file}: no such file", exit_code=2)
    kind = _format(path, fmt)
    progress_file = Path(str(path) + ".progress")
    start = 0
    if resume and progress_file.exists():
        try:
            start = int(progress_file.read_text().strip() or 0)
        except ValueError:
            raise CliError(f"{progress_file}: not a line number; delete it to start over", exit_code=2) from None
        ctx.warn(f"resuming after line {start}")
    total = sum(1 for _ in path.open(encoding="utf-8", errors="replace"))
    bar = ctx.progress(f"importing {path.name}", total)
    outcome = Outcome()
    pending: list[dict[str, Any]] = []
    last_line = start

    def flush() -> None:
        if pending:
            ctx.client.put("/catalog", {"products": pending})
            outcome.imported += len(pending)
            pending.clear()
        progress_file.write_text(str(last_line))
        bar.update(last_line, extra=f"{outcome.imported} products, {len(outcome.bad)} bad")

    for row in READERS[kind](path):
        if row.line <= start:
            continue
        if row.error:
            outcome.bad.append(f"{path}:{row.line}: {row.error}")
        elif row.product is not None:
            pending.append(row.product)
        last_line = row.line
        if len(pending) >= batch:
            flush()
    last_line = max(last_line, total)
    flush()
    bar.finish(extra=f"{outcome.imported} products, {len(outcome.bad)} bad")
    progress_file.unlink(missing_ok=True)
    for message in outcome.bad:
        ctx.warn(message)
    if ctx.json_output:
        ctx.dump({"imported": outcome.imported, "bad": outcome.bad})
    else:
        ctx.echo(f"{outcome.imported} products imported, {len(outcome.bad)} bad rows")
    return 1 if outcome.bad else 0


def delete_product(ctx: Ctx, product_id: str) -> int:
    res = ctx.client.delete(f"/catalog/{path_part(product_id)}")
    if ctx.json_output:
        ctx.dump(res)
        return 0
    ctx.echo(f"product {res['product_id']} deleted: no longer recommended "
             f"({res.get('co_purchase_rows', 0)} co-purchase rows, {res.get('popular_days', 0)} popularity days "
             "removed)")
    return 0


def upload_coupons(ctx: Ctx, pool: str, file: str, discount: str, valid_days: int) -> int:
    path = Path(file)
    if not path.is_file():
        raise CliError(f"{file}: no such file", exit_code=2)
    codes: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        for number, record in enumerate(csv.reader(fh), start=1):
            code = (record[0] if record else "").strip()
            if not code or (number == 1 and code.lower() in ("code", "codes", "coupon", "promo")):
                continue
            codes.append(code)
    if not codes:
        raise CliError(f"{file}: no codes (one per line, or the first CSV column)", exit_code=1)
    accepted = 0
    rejected: list[dict[str, str]] = []
    stats: dict[str, Any] = {}
    for start in range(0, len(codes), CODES_PER_REQUEST):
        stats = ctx.client.post(f"/coupons/{path_part(pool)}", {
            "codes": codes[start:start + CODES_PER_REQUEST], "discount": discount, "valid_days": valid_days})
        accepted += int(stats.get("accepted") or 0)
        rejected += stats.get("rejected") or []
    for item in rejected:
        ctx.warn(f"rejected {item['code']}: {item['reason']}")
    if ctx.json_output:
        ctx.dump({**stats, "accepted": accepted, "rejected": rejected})
    else:
        ctx.echo(f"pool {pool}: {accepted} codes added, {len(rejected)} rejected; {stats.get('left')} left, "
                 f"discount {stats.get('discount')}, valid {stats.get('valid_days')} days")
    return 1 if rejected else 0


def pool_stats(ctx: Ctx, pool: str | None, days: int | None = None) -> int:
    """All time (codes of the pool, then the signed fallback codes) and the last `days` days (default 30)."""
    data = ctx.client.get(f"/coupons/{path_part(pool)}", days=days) if pool else ctx.client.get("/coupons", days=days)
    pools = [data] if pool else data["pools"]
    if ctx.json_output:
        ctx.dump(data)
        return 0
    span = f"{(pools[0].get('window') or {}).get('days', days or 30)}d" if pools else "window"
    headers = ["pool", "discount", "issued", "redeemed", "revenue", "left", "fallback issued", "fallback redeemed",
               f"{span} issued", f"{span} redeemed", f"{span} revenue", f"{span} fallback issued/redeemed"]
    rows = []
    for p in pools:
        fb = p.get("fallback") or {}
        win = p.get("window") or {}
        wfb = win.get("fallback") or {}
        rows.append([p["pool"], p.get("discount") or "-", p["issued"], p["redeemed"], p["revenue"], p["left"],
                     fb.get("issued", 0), fb.get("redeemed", 0), win.get("issued", 0), win.get("redeemed", 0),
                     win.get("revenue", 0), f"{wfb.get('issued', 0)}/{wfb.get('redeemed', 0)}"])
    table(headers, rows, ctx.out)
    return 0
