"""Message templates: the model, sandboxed rendering, the render context, validation at apply time.

A template is data (YAML in `scenarios/templates/`, versions in DynamoDB)::

    id: cart-reminder
    category: marketing            # transactional: exempt from caps, sent without marketing consent
    description: first abandoned-cart reminder
    default_locale: ru
    locales:
      ru: {subject: "…", preheader: "…", html: "…", text: "…", sms: "…"}
      en: {…}

Email needs `subject` and `html` and/or `text` (text is derived from html when absent); SMS needs
`sms`. Every part is a Jinja2 template rendered in an `ImmutableSandboxedEnvironment` with
`StrictUndefined` (a misspelt variable is an error, found by `validate_template` at apply time
against `sample_context`), autoescape for `html` only.

Rendering cost is bounded without timers or threads (cheap enough for every send):
- a budget of 100 000 *operations* per part: every iteration of every `{% for %}` (the parser is
  hooked so each loop's iterable is wrapped by a counting guard) and every call (macros,
  methods, globals) spends one; the wall clock is looked at every 256 operations (2 s cap);
- `range()` yields at most 10 000 numbers;
- no intermediate value grows past 1 000 000 characters or items: `*`, `+`, `%`, `**` are
  intercepted, `~` concatenations and `{% set %}` blocks pass a size guard, padding methods and
  filters (`center`, `indent`, `ljust`, `format` widths, `replace`, `join`, `slice`) are capped;
- the output is streamed and cut at 200 KB (html, text) or 2 000 characters (subject,
  preheader, sms); the source of a part is at most 100 KB.
Template authors are authenticated marketers; these guards turn mistakes (and curiosity, such as
`{{ ''.__class__.__mro__ }}`, which the sandbox refuses) into errors instead of a stuck Lambda.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import jinja2
import markupsafe
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.filters import do_center, do_format, do_indent, do_replace, sync_do_join, sync_do_slice
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from pydantic import ValidationError as PydanticValidationError

from retention.core import clock
from retention.core.errors import ValidationError
from retention.language import blocks
from retention.language.money import NARROW_NBSP as NARROW_NBSP
from retention.language.money import NBSP as NBSP
from retention.language.money import fail_if_undefined as _fail_if_undefined
from retention.language.money import format_money as format_money
from retention.language.money import language_of as _language
from retention.messaging.sms import clean_sms, sms_segments

MAX_SOURCE_BYTES = 100 * 1024
MAX_BODY_BYTES = 200 * 1024
MAX_LINE_CHARS = 2_000
MAX_OPS = 100_000
MAX_RANGE = 10_000
MAX_VALUE_SIZE = 1_000_000
MAX_WIDTH = 1_000
RENDER_SECONDS = 2.0
MAX_INT_BITS = 256
"""Integers in a template stay below 2**256 (77 digits): squaring 10**100 eighteen times is a
single C-level multiplication per step that no clock check can interrupt, so the size is capped."""
MAX_SMS_SEGMENTS = 6

Part = Literal["subject", "preheader", "html", "text", "sms"]
PARTS: tuple[Part, ...] = ("subject", "preheader", "html", "text", "sms")
EMAIL_PARTS: tuple[Part, ...] = ("subject", "preheader", "html", "text")
_OUTPUT_CAP: dict[str, int] = {
    "subject": MAX_LINE_CHARS,
    "preheader": MAX_LINE_CHARS,
    "html": MAX_BODY_BYTES,
    "text": MAX_BODY_BYTES,
    "sms": MAX_LINE_CHARS,
}


class TemplateRenderError(ValidationError):
    """A template that cannot be rendered (undefined variable, bad filter argument, too costly)."""

    code = "template_render_error"


class TemplateSecurityError(TemplateRenderError):
    """The sandbox refused an operation (private attribute, unsafe call, resource cap)."""

    code = "template_security_error"


# --- the model ------------------------------------------------------------------------------------

_LOCALE_KEY = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})?")


class LocaleContent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str | None = None
    preheader: str | None = None
    html: str | None = None
    text: str | None = None
    sms: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> LocaleContent:
        body = bool(self.html or self.text)
        if self.subject and not body:
            raise ValueError("an email needs html or text besides the subject")
        if body and not self.subject:
            raise ValueError("an email needs a subject")
        if self.preheader and not body:
            raise ValueError("a preheader belongs to an email (subject + html/text)")
        if not self.subject and not self.sms:
            raise ValueError("nothing to send: give subject + html/text (email) and/or sms")
        for part in PARTS:
            source = getattr(self, part)
            if source is not None and len(source.encode()) > MAX_SOURCE_BYTES:
                raise ValueError(f"{part} is larger than {MAX_SOURCE_BYTES // 1024} KB")
        return self

    @property
    def has_email(self) -> bool:
        return bool(self.subject)

    @property
    def has_sms(self) -> bool:
        return bool(self.sms)


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,79}$")
    category: Literal["marketing", "transactional"] = "marketing"
    description: str | None = None
    default_locale: str = "ru"
    locales: dict[str, LocaleContent] = Field(min_length=1)

    _digest: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _locales(self) -> Template:
        for key in self.locales:
            if not _LOCALE_KEY.fullmatch(key):
                raise ValueError(f"locale {key!r} is not a language code such as ru or en")
        if self.default_locale not in self.locales:
            raise ValueError(f"default_locale {self.default_locale!r} has no content in locales")
        return self

    @property
    def digest(self) -> str:
        """Content hash: the compiled-template cache key, stable across processes."""
        if self._digest is None:
            self._digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:20]
        return self._digest

    def resolve_locale(self, locale: str | None) -> str:
        """The locale whose content is used: exact, then the language (`en-US` → `en`), then default."""
        if locale:
            if locale in self.locales:
                return locale
            language = locale.replace("_", "-").split("-", 1)[0].lower()
            if language in self.locales:
                return language
        return self.default_locale

    def channels(self, locale: str | None = None) -> set[str]:
        content = self.locales[self.resolve_locale(locale)]
        return {name for name, ok in (("email", content.has_email), ("sms", content.has_sms)) if ok}


def _pydantic_errors(exc: PydanticValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{where}: {msg}" if where else msg)
    return out


def parse_template(data: Any, *, source: str = "template") -> Template:
    """A Template from a decoded YAML/JSON document; ValidationError listing what is wrong."""
    if isinstance(data, Template):
        return data
    if not isinstance(data, Mapping):
        raise ValidationError(f"{source}: a template is a mapping with id, category and locales")
    try:
        return Template.model_validate(dict(data))
    except PydanticValidationError as exc:
        raise ValidationError(f"{source}: " + "; ".join(_pydantic_errors(exc))) from exc


def load_templates_dir(path: str | Path) -> dict[str, Template]:
    """Every template of a directory (`*.yaml`, `*.yml`, `*.json`; a file holds one or a list)."""
    import yaml  # dev/CLI path only: keep PyYAML off the Lambda cold start

    directory = Path(path)
    templates: dict[str, Template] = {}
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    for file in files:
        try:
            document = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ValidationError(f"{file.name}: not valid YAML: {exc}") from exc
        for item in document if isinstance(document, list) else [document]:
            template = parse_template(item, source=file.name)
            if template.id in templates:
                raise ValidationError(f"{file.name}: template id {template.id!r} is defined twice")
            templates[template.id] = template
    return templates


# --- formatting helpers (filters and globals) -----------------------------------------------------

_MONTHS_RU_GENITIVE = (
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
)
_MONTHS_EN = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
def _to_datetime(value: Any) -> date:
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, bool):
        raise ValueError(f"date: {value!r} is not a date")
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 100_000_000_000 else value
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return date.fromisoformat(text)
            return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"date: {value!r} is not an ISO 8601 date") from exc
    raise ValueError(f"date: {value!r} is not a date")


def _zone(tz: str | tzinfo) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    from zoneinfo import ZoneInfo  # only dates with a time zone need the tz database

    try:
        return ZoneInfo(tz)
    except (ValueError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"date: unknown time zone {tz!r}") from exc


def format_date(value: Any, fmt: str = "long", locale: str | None = "ru", tz: str | tzinfo | None = None) -> str:
    """`24 ноября 2026` / `November 24, 2026` (long), `24.11.2026` / `Nov 24, 2026` (short).

    Also `day_month` (`24 ноября`), `time` (`10:00` / `10:00 AM`) and `datetime`. `value`: a
    datetime, a date, an ISO 8601 string or unix seconds; with `tz` a moment is shown in that
    zone (naive datetimes are UTC).
    """
    _fail_if_undefined(value)
    if value is None or value == "":
        return ""
    moment = _to_datetime(value)
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if tz:
            moment = moment.astimezone(_zone(tz))
    ru = _language(locale) == "ru"
    day, month, year = moment.day, moment.month, moment.year
    if fmt == "long":
        return f"{day} {_MONTHS_RU_GENITIVE[month - 1]} {year}" if ru else f"{_MONTHS_EN[month - 1]} {day}, {year}"
    if fmt == "short":
        return f"{day:02d}.{month:02d}.{year}" if ru else f"{_MONTHS_EN[month - 1][:3]} {day}, {year}"
    if fmt == "day_month":
        return f"{day} {_MONTHS_RU_GENITIVE[month - 1]}" if ru else f"{_MONTHS_EN[month - 1]} {day}"
    if fmt in ("time", "datetime"):
        if not isinstance(moment, datetime):
            raise ValueError(f"date: {value!r} has no time of day")
        if ru:
            clock_time = f"{moment.hour:02d}:{moment.minute:02d}"
        else:
            hour = moment.hour % 12 or 12
            clock_time = f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"
        if fmt == "time":
            return clock_time
        return f"{format_date(moment, 'long', locale)}, {clock_time}"
    raise ValueError(f"date: unknown format {fmt!r} (long, short, day_month, time, datetime)")


def plural(n: Any, one: str, few: str | None = None, many: str | None = None) -> str:
    """The word form for `n` (the number itself is not included).

    With three forms, the Russian rule: 1, 21, 101 → one (товар); 2–4, 22–24 → few (товара);
    0, 5–20, 11–14, 25… → many (товаров); fractions → few. With fewer forms, the English rule:
    1 → one, otherwise `few` (the plural form), or `one` when no plural was given.
    """
    _fail_if_undefined(n)
    try:
        number = Decimal(str(n))
    except InvalidOperation as exc:
        raise ValueError(f"plural: {n!r} is not a number") from exc
    number = abs(number)
    if few is not None and many is not None:
        if number != number.to_integral_value():
            return few
        whole = int(number)
        if whole % 10 == 1 and whole % 100 != 11:
            return one
        if 2 <= whole % 10 <= 4 and not 12 <= whole % 100 <= 14:
            return few
        return many
    if number == 1:
        return one
    return few if few is not None else many if many is not None else one


def _first_name_of(value: Any) -> str:
    if isinstance(value, Mapping):
        value = value.get("first_name")
    if isinstance(value, jinja2.Undefined) or value is None:
        return ""
    return str(value).strip()


@jinja2.pass_context
def _money_filter(
    context: jinja2.runtime.Context, amount: Any, currency: str | None = "RUB", locale: str | None = None
) -> str:
    return format_money(amount, currency, locale or context.get("locale"))


def _customer_timezone(context: jinja2.runtime.Context) -> str | None:
    customer = context.get("customer")
    traits = customer.get("traits") if isinstance(customer, Mapping) else None
    tz = traits.get("timezone") if isinstance(traits, Mapping) else None
    if not isinstance(tz, str) or not tz:
        return None
    try:
        _zone(tz)
    except ValueError:
        return None  # a bad trait must not break a send; the date is shown in UTC
    return tz


@jinja2.pass_context
def _date_filter(
    context: jinja2.runtime.Context, value: Any, fmt: str = "long", locale: str | None = None, tz: str | None = None
) -> str:
    return format_date(value, fmt, locale or context.get("locale"), tz or _customer_timezone(context))


@jinja2.pass_context
def _first_name_or_global(context: jinja2.runtime.Context, default: str = "") -> str:
    return _first_name_of(context.get("customer")) or default


def _first_name_or_filter(value: Any, default: str = "") -> str:
    return _first_name_of(value) or default


# --- guards -------------------------------------------------------------------------------------


class _Budget:
    __slots__ = ("deadline", "ops")

    def __init__(self) -> None:
        self.ops = 0
        outer = _deadline.get()
        self.deadline = clock.monotonic() + RENDER_SECONDS if outer is None else outer

    def spend(self) -> None:
        self.ops += 1
        if self.ops > MAX_OPS:
            raise SecurityError(f"the template is too costly: more than {MAX_OPS} loop iterations or calls")
        if not self.ops & 0xFF:
            self.check_clock()

    def check_clock(self) -> None:
        if clock.monotonic() >= self.deadline:
            raise SecurityError(f"the template took longer than {RENDER_SECONDS:g} s to render")


_budget: ContextVar[_Budget | None] = ContextVar("retention_template_budget", default=None)
_deadline: ContextVar[float | None] = ContextVar("retention_template_deadline", default=None)


@contextmanager
def render_deadline(seconds: float) -> Iterator[None]:
    """Every part rendered inside shares one deadline (monotonic clock), at most RENDER_SECONDS from now:
    a sender passes what is left of its Lambda's time, so a slow template fails its message instead of
    timing out the whole batch."""
    outer = _deadline.get()
    at = clock.monotonic() + max(0.0, min(seconds, RENDER_SECONDS))
    token = _deadline.set(at if outer is None else min(outer, at))
    try:
        yield
    finally:
        _deadline.reset(token)


def _spend() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.spend()


def _check_size(value: Any) -> Any:
    if isinstance(value, str | list | tuple | dict | set | bytes) and len(value) > MAX_VALUE_SIZE:
        raise SecurityError(f"a value in the template grew past {MAX_VALUE_SIZE} characters or items")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise SecurityError(f"integers in a template are limited to {MAX_INT_BITS} bits")
    return value


def _check_int_op(operator: str, left: Any, right: Any) -> None:
    """Refuse an integer `*` or `**` whose result would pass MAX_INT_BITS, before computing it."""
    if not (isinstance(left, int) and isinstance(right, int)) or isinstance(left, bool) or isinstance(right, bool):
        return
    if operator == "*":
        bits = left.bit_length() + right.bit_length()
    elif operator == "**" and right > 0 and abs(left) > 1:
        bits = (left.bit_length() - 1) * right + 1
    else:
        return
    if bits > MAX_INT_BITS + 1:
        raise SecurityError(f"integers in a template are limited to {MAX_INT_BITS} bits")


def _guarded_iter(iterable: Iterable[Any], budget: _Budget) -> Iterator[Any]:
    for item in iterable:
        budget.spend()
        yield item


# pass_context keeps the optimizer from calling these at compile time (no budget then).
@jinja2.pass_context
def _loop_guard(context: jinja2.runtime.Context, iterable: Any) -> Any:
    budget = _budget.get()
    if budget is None or isinstance(iterable, jinja2.Undefined):
        return iterable
    return _guarded_iter(iterable, budget)


@jinja2.pass_context
def _size_guard(context: jinja2.runtime.Context, value: Any) -> Any:
    return _check_size(value)


_LOOP_FILTER = "_rt_loop_guard"
_SIZE_FILTER = "_rt_size_guard"


class _GuardInserter(NodeTransformer):
    """Wrap every loop's iterable, every `~` concatenation and every `{% set %}` block in a guard."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _LOOP_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(node, _SIZE_FILTER, [], [], None, None, lineno=node.lineno)

    def visit_AssignBlock(self, node: nodes.AssignBlock) -> nodes.Node:
        self.generic_visit(node)
        # The block's own filter chain gets the captured body; the guard goes outermost.
        node.filter = nodes.Filter(node.filter, _SIZE_FILTER, [], [], None, None, lineno=node.lineno)
        return node


def _range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items")
    return rng


class _Namespace(Namespace):
    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, _check_size(value))


_PERCENT_WIDTH = re.compile(r"%[-#0 +]*(?:\*|\d{4,}|\d*\.(?:\*|\d{4,}))")
_BRACE_WIDTH = re.compile(r"\{[^{}]*:[^{}]*(?:\d{4,}|\{)")
_PADDING_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})


def _check_format_string(fmt: Any) -> None:
    if isinstance(fmt, str) and (_PERCENT_WIDTH.search(fmt) or _BRACE_WIDTH.search(fmt)):
        raise SecurityError("format widths and precisions are limited to 3 digits")


def _check_width(width: Any) -> None:
    if isinstance(width, int) and width > MAX_WIDTH:
        raise SecurityError(f"widths are limited to {MAX_WIDTH}")
    if isinstance(width, str) and len(width) > MAX_WIDTH:
        raise SecurityError(f"widths are limited to {MAX_WIDTH}")


def _check_replace(s: Any, old: Any, new: Any) -> None:
    text, old_s, new_s = str(s), str(old), str(new)
    occurrences = text.count(old_s) if old_s else len(text) + 1
    if len(text) + occurrences * len(new_s) > MAX_VALUE_SIZE:
        raise SecurityError(f"replace() would grow a value past {MAX_VALUE_SIZE} characters")


def _center(value: str, width: int = 80) -> str:
    _check_width(width)
    return do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    _check_width(width)
    size = width if isinstance(width, int) else len(width)
    if (str(s).count("\n") + 1) * size > MAX_VALUE_SIZE:
        raise SecurityError(f"indent() would grow a value past {MAX_VALUE_SIZE} characters")
    return do_indent(s, width, first, blank)


def _slice(value: Any, slices: int, fill_with: Any = None) -> list[list[Any]]:
    _check_width(slices)
    return list(sync_do_slice(value, slices, fill_with))


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_format_string(value)
    return do_format(value, *args, **kwargs)


@jinja2.pass_eval_context
def _replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    _check_replace(s, old, new)
    return do_replace(eval_ctx, s, old, new, count)


@jinja2.pass_eval_context
def _join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    items = list(value) if not isinstance(value, list | tuple) else value
    _check_size(items)
    size = sum(len(item) for item in items if isinstance(item, str)) + len(str(d)) * len(items)
    if size > MAX_VALUE_SIZE:
        raise SecurityError(f"join() would grow a value past {MAX_VALUE_SIZE} characters")
    return sync_do_join(eval_ctx, items, d, attribute)


class _GuardedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%", "-", "//"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=jinja2.StrictUndefined,
            finalize=_finalize,
            auto_reload=False,
            cache_size=0,
        )
        self.globals.pop("lipsum", None)
        self.globals.update(
            range=_range,
            namespace=_Namespace,
            money=_money_filter,
            plural=plural,
            first_name_or=_first_name_or_global,
            product_cards=blocks.product_cards,
            product_lines=blocks.product_lines,
            button=blocks.button,
        )
        self.filters.update(
            {
                "money": _money_filter,
                "date": _date_filter,
                "plural": plural,
                "first_name_or": _first_name_or_filter,
                "center": _center,
                "indent": _indent,
                "slice": _slice,
                "format": _format,
                "replace": _replace,
                "join": _join,
                _LOOP_FILTER: _loop_guard,
                _SIZE_FILTER: _size_guard,
            }
        )

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        _GuardInserter().visit(tree)
        return tree

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > 100:
            raise SecurityError("exponents are limited to 100")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_VALUE_SIZE:
                    raise SecurityError(f"a value in the template grew past {MAX_VALUE_SIZE} characters or items")
        if operator == "%":
            _check_format_string(left)
        _check_int_op(operator, left, right)
        _spend()  # arithmetic counts like a call: the clock is looked at while a template only computes
        return _check_size(super().call_binop(context, operator, left, right))

    def call(self, context: jinja2.runtime.Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _spend()
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(obj, "__name__", "")
            if name in _PADDING_METHODS:
                for arg in (*args, *kwargs.values()):
                    _check_width(arg)
            elif name == "replace" and len(args) >= 2:
                _check_replace(owner, args[0], args[1])
        return _check_size(super().call(context, obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        _check_format_string(value.__self__)
        return wrapped


def _finalize(value: Any) -> Any:
    # `{{ customer.first_name }}` of a customer without a name prints nothing, not "None".
    return "" if value is None else value


_ENVIRONMENTS: dict[bool, _GuardedEnvironment] = {}


def _environment(autoescape: bool) -> _GuardedEnvironment:
    env = _ENVIRONMENTS.get(autoescape)
    if env is None:
        env = _ENVIRONMENTS[autoescape] = _GuardedEnvironment(autoescape=autoescape)
    return env


# --- compile cache and rendering ------------------------------------------------------------------

_CACHE_SIZE = 1024
_compiled: dict[tuple[str, str, str, str], jinja2.Template] = {}


def _filename(template_id: str, locale: str, part: str) -> str:
    return f"<template {template_id}/{locale}/{part}>"


def _compile(template: Template, locale: str, part: str, source: str) -> jinja2.Template:
    key = (template.id, template.digest, locale, part)
    compiled = _compiled.get(key)
    if compiled is not None:
        return compiled
    where = f"{template.id}/{locale}/{part}"
    if len(source.encode()) > MAX_SOURCE_BYTES:
        raise TemplateRenderError(f"{where}: the source is larger than {MAX_SOURCE_BYTES // 1024} KB")
    env = _environment(part == "html")
    try:
        code = env.compile(source, name=where, filename=_filename(template.id, locale, part))
    except TemplateSyntaxError as exc:
        raise TemplateRenderError(f"{where}: line {exc.lineno}: {exc.message}") from exc
    # a plain dict, not Jinja's ChainMap(template globals, environment globals): every render copies the
    # globals into a new context, and iterating a ChainMap cost ~15 % of a render. The environment's globals
    # are set once, in its __init__, before any template is compiled, so the copy sees the same names.
    compiled = env.template_class.from_code(env, code, dict(env.make_globals(None)), None)
    if len(_compiled) >= _CACHE_SIZE:
        _compiled.pop(next(iter(_compiled)), None)
    _compiled[key] = compiled
    return compiled


def _template_line(exc: BaseException, filename: str) -> int | None:
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _render_part(template: Template, locale: str, part: str, source: str, context: Mapping[str, Any]) -> str:
    compiled = _compile(template, locale, part, source)
    cap = _OUTPUT_CAP[part]
    where = f"{template.id}/{locale}/{part}"
    budget = _Budget()
    token = _budget.set(budget)
    chunks: list[str] = []
    size = 0
    try:
        budget.check_clock()  # no time left at all: fail before starting
        for chunk in compiled.generate(context):
            size += len(chunk)
            if size > cap:
                raise TemplateRenderError(f"{where}: the rendered {part} is larger than {cap} characters")
            chunks.append(chunk)
            budget.spend()
    except TemplateRenderError:
        raise
    except SecurityError as exc:
        line = _template_line(exc, _filename(template.id, locale, part))
        at = f" line {line}:" if line else ""
        raise TemplateSecurityError(f"{where}:{at} {exc}") from exc
    except UndefinedError as exc:
        line = _template_line(exc, _filename(template.id, locale, part))
        at = f" line {line}:" if line else ""
        raise TemplateRenderError(f"{where}:{at} undefined variable: {exc}") from exc
    except RecursionError as exc:
        raise TemplateRenderError(f"{where}: recursion too deep (a macro calling itself?)") from exc
    except Exception as exc:  # the author's mistake (bad filter argument, division by zero …)
        line = _template_line(exc, _filename(template.id, locale, part))
        at = f" line {line}:" if line else ""
        raise TemplateRenderError(f"{where}:{at} {type(exc).__name__}: {exc}") from exc
    finally:
        _budget.reset(token)
    out = "".join(chunks)
    if part in ("html", "text") and len(out.encode()) > cap:
        raise TemplateRenderError(f"{where}: the rendered {part} is larger than {cap // 1024} KB")
    return out


_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Runs of ordinary spaces only: a no-break space between "1 290" and "₽" is meant to be there.
_SPACES = re.compile(r" {2,}")


def one_line(value: str) -> str:
    """A header-safe line: control characters (CR, LF …) become spaces, whitespace collapses."""
    return _SPACES.sub(" ", _HEADER_UNSAFE.sub(" ", value)).strip()


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str | None = None
    preheader: str | None = None
    html: str | None = None
    text: str | None = None
    sms: str | None = None


def render(
    template: Template,
    locale: str | None,
    context: Mapping[str, Any],
    *,
    channel: Literal["email", "sms"] | None = None,
) -> Rendered:
    """Render the parts of `template` for `locale` (falling back to the default locale).

    `channel` limits the work to the email parts or the SMS body. Raises TemplateRenderError
    (TemplateSecurityError for what the sandbox refuses).
    """
    chosen = template.resolve_locale(locale)
    content = template.locales[chosen]
    ctx = dict(context)
    ctx["locale"] = chosen
    wanted = PARTS if channel is None else EMAIL_PARTS if channel == "email" else ("sms",)
    out: dict[str, str | None] = {}
    with render_deadline(RENDER_SECONDS):  # one deadline for all the parts of one message
        for part in wanted:
            source = getattr(content, part)
            if source is None:
                continue
            out[part] = _render_part(template, chosen, part, source, ctx)
    for name, value in list(out.items()):
        rendered = value or ""
        if name in ("subject", "preheader"):
            rendered = one_line(rendered)
        elif name == "sms":
            rendered = clean_sms(rendered)
        elif name == "text":
            rendered = rendered.replace("\r\n", "\n").strip()
        out[name] = rendered
    if out.get("html") is not None and out.get("text") is None and "text" in wanted:
        out["text"] = html_to_text(out["html"] or "")
    return Rendered(**out)


# --- html → text --------------------------------------------------------------------------------

# Every pattern here is linear in the text: a tag's body never spans a `<` (so an unclosed tag fails where
# the next one starts instead of rescanning to the end), quoted values are atomic alternatives, and
# paired elements (`<style>…</style>`, `<a>…</a>`) find their end with one forward search that, once it
# fails, is not tried again (`'<img alt="x"' * 4000` took 265 s with the earlier lazy patterns).
_ATTRS = r"""((?:[^<>"']|"[^"]*"|'[^']*')*)"""
_HTML_COMMENT_OPEN = re.compile(r"<!--")
_HTML_DROP_OPEN = re.compile(r"<(head|style|script|title|template)\b" + _ATTRS + ">", re.I)
_HTML_HIDDEN_OPEN = re.compile(r"<(div|span|p|table|td)\b" + _ATTRS + ">", re.I)
_STYLE_ATTR = re.compile(r"""\bstyle\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
_DISPLAY_NONE = re.compile(r"display\s*:\s*none", re.I)
_HTML_IMG = re.compile(r"<img\b" + _ATTRS + ">", re.I)
_ALT_ATTR = re.compile(r"""\balt\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
_HTML_LINK_OPEN = re.compile(r"<a\b" + _ATTRS + ">", re.I)
_HREF_ATTR = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+))""", re.I)
# Only runs that change: a lone space is left alone (most of the text; matching it costs time).
_HTML_WS = re.compile(r"[\t\r\n\f\v][ \t\r\n\f\v]*| [ \t\r\n\f\v]+")
_HTML_BR = re.compile(r"<br\b[^<>]*>", re.I)
_HTML_HR = re.compile(r"<hr\b[^<>]*>", re.I)
_HTML_LI = re.compile(r"<li\b[^<>]*>", re.I)
_HTML_LI_END = re.compile(r"</li\s*>", re.I)
_HTML_CELL = re.compile(r"</t[dh]\s*>", re.I)
_HTML_BLOCK = re.compile(
    r"</?(?:p|div|h[1-6]|tr|table|thead|tbody|tfoot|ul|ol|blockquote|section|article|header|footer"
    r"|center|pre|dl|dt|dd|body|html|main|nav|aside|address|figure|figcaption)\b[^<>]*>",
    re.I,
)
_HTML_TAG = re.compile(r"<[^<>]*>")
_LINE_SPACES = re.compile(r"[ \t]{2,}|\t")
_BLANK_LINES = re.compile(r"\n{3,}")
_CLOSERS: dict[str, re.Pattern[str]] = {}


def _closer(name: str) -> re.Pattern[str]:
    pattern = _CLOSERS.get(name)
    if pattern is None:
        pattern = _CLOSERS[name] = re.compile(rf"</{re.escape(name)}\s*>", re.I)
    return pattern


def _paired(text: str, opener: re.Pattern[str], replace: Callable[[re.Match[str], str], str | None],
            closing: Callable[[re.Match[str]], str] | None = None) -> str:
    """Replace `<opener …>inner</name>` (the nearest closing tag, no nesting) by `replace(match, inner)`;
    `replace` answering None leaves the opening tag as it is. Linear: one forward scan for openers, one
    search per element for its end, and a name without a closing tag after some point is not searched
    again after it."""
    out: list[str] = []
    cursor = 0
    unclosed_after: dict[str, int] = {}
    for m in opener.finditer(text):
        if m.start() < cursor:
            continue
        name = closing(m) if closing else m.group(1).lower()
        if m.end() >= unclosed_after.get(name, len(text) + 1):
            continue
        if name == "-->":
            end = text.find("-->", m.end())
            close_start, close_end = end, end + 3
        else:
            found = _closer(name).search(text, m.end())
            close_start, close_end = (found.start(), found.end()) if found else (-1, -1)
        if close_start < 0:
            unclosed_after[name] = m.end()
            continue
        replacement = replace(m, text[m.end():close_start])
        if replacement is None:
            continue
        out.append(text[cursor:m.start()])
        out.append(replacement)
        cursor = close_end
    out.append(text[cursor:])
    return "".join(out)


def _hidden(m: re.Match[str], inner: str) -> str | None:
    style = _STYLE_ATTR.search(m.group(2))
    value = (style.group(1) or style.group(2) or "") if style else ""
    return "" if _DISPLAY_NONE.search(value) else None


def _img_alt(m: re.Match[str]) -> str:
    alt = _ALT_ATTR.search(m.group(1))
    return f" {(alt.group(1) or alt.group(2) or '') if alt else ''} " if alt else m.group(0)


def _link_text(m: re.Match[str], inner: str) -> str | None:
    import html

    found = _HREF_ATTR.search(m.group(1))
    if not found:
        return None
    href = (found.group(1) or found.group(2) or found.group(3) or "").strip()
    label = _HTML_WS.sub(" ", _HTML_TAG.sub("", inner)).strip()
    plain_href = html.unescape(href)
    lower = plain_href.lower()
    if not href or lower.startswith(("#", "javascript:")):
        return label
    if lower.startswith(("mailto:", "tel:")):
        return label or href.split(":", 1)[1]
    if not label or html.unescape(label) == plain_href:
        return href
    return f"{label} ({href})"


def html_to_text(source: str) -> str:
    """A readable plain-text part from HTML: blocks become lines, links keep their URL."""
    import html  # html.entities is a large table: load it only when a text part is derived

    text = _paired(source, _HTML_COMMENT_OPEN, lambda m, inner: "", closing=lambda m: "-->")
    text = _paired(text, _HTML_DROP_OPEN, lambda m, inner: "")
    text = _paired(text, _HTML_HIDDEN_OPEN, _hidden)
    text = _HTML_WS.sub(" ", text)
    text = _HTML_IMG.sub(_img_alt, text)
    text = _paired(text, _HTML_LINK_OPEN, _link_text, closing=lambda m: "a")
    text = _HTML_BR.sub("\n", text)
    text = _HTML_HR.sub("\n----------\n", text)
    text = _HTML_LI.sub("\n- ", text)
    text = _HTML_LI_END.sub("", text)
    text = _HTML_CELL.sub(" ", text)
    text = _HTML_BLOCK.sub("\n", text)
    text = _HTML_TAG.sub("", text)
    text = html.unescape(text)
    if "  " in text or "\t" in text:
        text = _LINE_SPACES.sub(" ", text)
    text = text.replace(" \n", "\n").replace("\n ", "\n")
    if "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


# --- the render context ---------------------------------------------------------------------------


def build_context(
    *,
    customer_id: str,
    traits: Mapping[str, Any] | None = None,
    kpis: Mapping[str, Any] | None = None,
    event_name: str | None = None,
    event_properties: Mapping[str, Any] | None = None,
    shop_name: str = "",
    shop_url: str = "",
    unsubscribe_url: str = "",
    preferences_url: str = "",
    nps_urls: Mapping[int | str, str] | None = None,
    nps_short_url: str = "",
    confirm_url: str = "",
    survey_url: Callable[[str], str] | None = None,
    coupon: str | Mapping[str, Any] | None = None,
    recommend: Callable[..., Any] | None = None,
    rule: str | None = None,
    step: int | None = None,
    variant: str | None = None,
    locale: str = "ru",
    first_name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    url_patterns: Mapping[str, str] | None = None,
    brand: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The one context shape every template sees (the contract of the template library)::

    customer: {id, first_name, email, phone, traits}
    kpis:     {orders_count, revenue_total, …}           (the profile's KPIs)
    event:    {name, properties}                         (the triggering event; name may be None)
    shop:     {name, url, url_patterns, brand}
    links:    {unsubscribe, preferences, nps: {0..10: url}, nps_short, shop,
               cart, order, product, review,   (deep links: None when the event cannot back them)
               confirm,                        (the double opt-in's signed link)
               survey: {<reason>: url}}        (any reason id: a signed one-click answer link per reason)
    trigger:  the triggering event's properties (`trigger.product_id`)
    coupon:   {code, discount, expires_at} | None   (`{{ coupon }}` prints the code)
    recommend(kind, product=…, limit=4, category=…) → [{product_id, name, url, image_url, image, price,
              currency, category, brand}]   (kinds: retention.products.recommend.KINDS)
    message:  {rule, step, variant}
    locale:   str
    """
    traits = dict(traits or {})
    patterns = blocks.DEFAULT_URL_PATTERNS if url_patterns is None else url_patterns
    if first_name is None:
        first_name = traits.get("first_name") or traits.get("firstName")
        if not first_name and isinstance(traits.get("name"), str) and traits["name"].strip():
            first_name = traits["name"].split()[0]
    return {
        "customer": {
            "id": customer_id,
            "first_name": first_name or None,
            "email": email if email is not None else traits.get("email"),
            "phone": phone if phone is not None else traits.get("phone"),
            "traits": traits,
        },
        "kpis": dict(kpis or {}),
        "event": {"name": event_name, "properties": dict(event_properties or {})},
        "shop": {"name": shop_name, "url": shop_url, "url_patterns": dict(patterns),
                 "brand": dict(brand or {})},
        "links": {
            **blocks.deep_links(patterns, shop_url, dict(event_properties or {})),
            "unsubscribe": unsubscribe_url,
            "preferences": preferences_url,
            "nps": {int(score): url for score, url in (nps_urls or {}).items()},
            "nps_short": nps_short_url,
            "shop": shop_url,
            "confirm": confirm_url,
            "survey": SurveyLinks(survey_url),
        },
        "trigger": dict(event_properties or {}),
        "coupon": coupon_value(coupon),
        "recommend": recommend or _no_recommendations,
        "message": {"rule": rule, "step": step, "variant": variant},
        "locale": locale,
    }


class CouponValue(dict[str, Any]):
    """`coupon` in a template: `coupon.code`, `coupon.discount`, `coupon.expires_at`; printed as is, the code
    (so the older `{{ coupon }}` keeps working)."""

    def __str__(self) -> str:
        return str(self.get("code") or "")

    def __html__(self) -> str:
        return str(markupsafe.escape(str(self)))

    def __bool__(self) -> bool:
        return bool(self.get("code"))


def coupon_value(coupon: str | Mapping[str, Any] | None) -> CouponValue | None:
    if coupon is None or coupon == "":
        return None
    if isinstance(coupon, str):
        return CouponValue(code=coupon, discount=None, expires_at=None)
    return CouponValue({"code": coupon.get("code"), "discount": coupon.get("discount"),
                        "expires_at": coupon.get("expires_at")})


def _no_recommendations(kind: str, product: Any = None, limit: int = 4, category: Any = None) -> list[Any]:
    from retention.products.kinds import check_kind
    check_kind(kind)
    return []


def recommend_problems(template: Template) -> list[str]:
    """`recommend("<kind>", …)` calls naming an unknown kind, found in the source (every branch, not only
    the one the sample data takes)."""
    from retention.products.kinds import KINDS
    problems: list[str] = []
    for locale, content in template.locales.items():
        for part in PARTS:
            source = getattr(content, part)
            if not source or "recommend" not in source:
                continue
            try:
                tree = _environment(part == "html").parse(source)
            except TemplateSyntaxError:
                continue  # reported by the render check with its line
            for call in tree.find_all(nodes.Call):
                if not (isinstance(call.node, nodes.Name) and call.node.name == "recommend"):
                    continue
                kind = call.args[0] if call.args else next((k.value for k in call.kwargs if k.key == "kind"), None)
                if isinstance(kind, nodes.Const) and kind.value not in KINDS:
                    problems.append(f"locales.{locale}.{part}: line {call.lineno}: unknown recommendation kind"
                                    f" {kind.value!r} (use one of {', '.join(KINDS)})")
                elif kind is None:
                    problems.append(f"locales.{locale}.{part}: line {call.lineno}: recommend() needs a kind")
    return problems


SURVEY_REASON_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class SurveyLinks(dict[str, str]):
    """`links.survey.<reason>`: a signed answer link for any reason id the template names (the reasons
    belong to the template, not to the engine). Looks empty, so a context dump stays small."""

    def __init__(self, factory: Callable[[str], str] | None) -> None:
        super().__init__()
        self._factory = factory

    def __missing__(self, reason: str) -> str:
        if not isinstance(reason, str) or not SURVEY_REASON_RE.match(reason):
            raise KeyError(f"survey reason {reason!r}: lower-case letters, digits and _ (at most 40)")
        return self._factory(reason) if self._factory is not None else ""


SAMPLE_BASE_URL = "https://shop.example"
SAMPLE_UNSUBSCRIBE_URL = "https://engine.example/u/sample-token"


def sample_context(locale: str = "ru") -> dict[str, Any]:
    """A realistic context for validation and previews: Анна, who ordered two products.

    The event is an `Order Completed` whose properties also carry what the other default events
    bring (cart, product, delivery and pickup fields), so one sample serves every template.
    """
    ru = _language(locale) == "ru"
    products = [
        {
            "product_id": "sku-1001",
            "sku": "sku-1001",
            "name": "Кроссовки беговые" if ru else "Running shoes",
            "brand": "Stride",
            "category": "Обувь" if ru else "Shoes",
            "variant": "42",
            "price": 1290,
            "quantity": 1,
            "url": f"{SAMPLE_BASE_URL}/p/sku-1001",
            "image_url": f"{SAMPLE_BASE_URL}/img/sku-1001.jpg",
        },
        {
            "product_id": "sku-2002",
            "sku": "sku-2002",
            "name": "Носки спортивные" if ru else "Sport socks",
            "brand": "Stride",
            "category": "Аксессуары" if ru else "Accessories",
            "variant": "M",
            "price": 645,
            "quantity": 2,
            "url": f"{SAMPLE_BASE_URL}/p/sku-2002",
            "image_url": f"{SAMPLE_BASE_URL}/img/sku-2002.jpg",
        },
    ]
    properties: dict[str, Any] = {
        "order_id": "100234",
        "checkout_id": "chk-100234",
        "cart_id": "cart-100234",
        "total": 2580,
        "revenue": 2580,
        "value": 2580,
        "subtotal": 2580,
        "shipping": 0,
        "tax": 0,
        "discount": 0,
        "coupon": "",
        "currency": "RUB",
        "products": products,
        "shop": "pp-msk-014",
        "cart_url": f"{SAMPLE_BASE_URL}/cart",
        "checkout_url": f"{SAMPLE_BASE_URL}/checkout",
        "order_url": f"{SAMPLE_BASE_URL}/orders/100234",
        "review_url": f"{SAMPLE_BASE_URL}/orders/100234/review",
        # product-level events (viewed, back in stock, price drop, low stock)
        "product_id": "sku-1001",
        "sku": "sku-1001",
        "name": products[0]["name"],
        "brand": "Stride",
        "category": products[0]["category"],
        "price": 1290,
        "previous_price": 1590,
        "stock": 3,
        "url": products[0]["url"],
        "image_url": products[0]["image_url"],
        # delivery and pickup
        "carrier": "PickPoint",
        "tracking_number": "PP123456789RU",
        "tracking_url": f"{SAMPLE_BASE_URL}/track/PP123456789RU",
        "pickup_point": {
            "id": "pp-msk-014",
            "name": "PickPoint — ТЦ «Атриум»" if ru else "PickPoint, Atrium mall",
            "address": "Москва, ул. Земляной Вал, 33" if ru else "33 Zemlyanoy Val St, Moscow",
            "hours": "10:00–22:00",
        },
        "pickup_code": "482913",
        "storage_until": "2026-11-27T21:00:00Z",
        "delivery_date": "2026-11-24",
        # segment and complaint events
        "segment": "loyal",
        "group": "lifecycle",
        "complaint_id": "cmp-77",
    }
    kpis = {
        "orders_count": 3,
        "revenue_total": 7450,
        "average_order_value": 2483.33,
        "first_order_at": "2026-03-02T09:15:00.000000Z",
        "last_order_at": "2026-11-20T18:42:00.000000Z",
        "average_days_between_orders": 131.4,
        "repeat_orders_count": 2,
        "nps_last_score": 9,
        "average_pickup_storage_hours": 26.5,
        "unclaimed_orders_percent": 0,
        "distinct_shops_count": 2,
        "contacts_30d": 1,
        "contacts_90d": 2,
        "last_contact_at": "2026-11-21T10:00:00.000000Z",
        "messages_received_30d": 4,
        "last_message_at": "2026-11-22T10:00:00.000000Z",
        "open_rate": 0.42,
        "click_rate": 0.12,
        "last_seen_at": "2026-11-23T20:05:00.000000Z",
    }
    traits = {
        "first_name": "Анна" if ru else "Anna",
        "last_name": "Смирнова" if ru else "Smirnova",
        "email": "anna@example.com",
        "phone": "+79161234567",
        "birthday": "1990-11-24",
        "city": "Москва" if ru else "Moscow",
        "timezone": "Europe/Moscow",
        "locale": locale,
        "vip": False,
        "has_account": True,
        "has_mobile_app": False,
        "preferred_channel": "email",
    }
    engine = "https://engine.example"
    return build_context(
        customer_id="cust_0001",
        traits=traits,
        kpis=kpis,
        event_name="Order Completed",
        event_properties=properties,
        shop_name="Ромашка" if ru else "Romashka",
        shop_url=SAMPLE_BASE_URL,
        unsubscribe_url=SAMPLE_UNSUBSCRIBE_URL,
        preferences_url=f"{engine}/preferences/sample-token",
        nps_urls={score: f"{engine}/nps/sample-token?score={score}" for score in range(11)},
        nps_short_url=f"{engine}/nps/sample-token",
        confirm_url=f"{engine}/optin/sample-token",
        survey_url=lambda reason: f"{engine}/survey/sample-token-{reason}",
        coupon={"code": "WELCOME-7Q2X", "discount": "10%", "expires_at": "2026-12-01T09:00:00.000000Z"},
        recommend=_sample_recommend(locale),
        rule="sample",
        step=0,
        variant="a",
        locale=locale,
    )


def _sample_recommend(locale: str) -> Callable[..., Any]:
    from retention.products.kinds import SampleRecommender
    return SampleRecommender(_language(locale)).recommend


# --- message class: no promotion in a transactional template (DESIGN §5) ----------------------------

# what a service message must not carry: a coupon, a discount, a product block, an offer link
# (`product_cards` / `product_lines` are the product blocks of retention.language.blocks; `recommend` fills them)
PROMO_VARIABLES = frozenset({"coupon", "recommend", "recommendations", "product_cards", "product_lines",
                             "products_block", "offer", "offers"})
PROMO_LINKS = frozenset({"offer", "offers", "sale", "catalog"})
PROMO_WORDS = re.compile(
    r"промокод|купон|скидк|распродаж|\bакци[яиюей]\b|спецпредложени|выгодн\w* предложени|персональн\w* предложени"
    r"|подарок к|в подарок|\bcoupon|promo ?code|\bdiscount|\bsale\b|\d+\s?% off|special offer|personal offer"
    r"|\bdeal of", re.I)
_JINJA_TAG_RE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)


def promotion_problems(template: Template) -> list[str]:
    """Promotional content in a transactional template, as `locales.<locale>.<part>: …` messages (empty for
    a marketing template): a coupon or recommendation variable, an offer link, or promotional wording."""
    if template.category != "transactional":
        return []
    env = _environment(False)
    out: list[str] = []
    for locale, content in template.locales.items():
        for part in PARTS:
            source = getattr(content, part)
            if not source:
                continue
            found: list[str] = []
            try:
                tree = env.parse(source)
            except jinja2.TemplateSyntaxError:
                tree = None
            if tree is not None:
                names = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"} & PROMO_VARIABLES
                found += [f"{{{{ {name} }}}}" for name in sorted(names)]
                found += [f"links.{node.attr}" for node in tree.find_all(nodes.Getattr)
                          if isinstance(node.node, nodes.Name) and node.node.name == "links"
                          and node.attr in PROMO_LINKS]
            match = PROMO_WORDS.search(_JINJA_TAG_RE.sub(" ", source))
            if match:
                found.append(f"the words {match.group(0)!r}")
            if found:
                out.append(f"locales.{locale}.{part}: a transactional template carries no promotion (no coupon, "
                           f"discount, product block or offer link); found {', '.join(dict.fromkeys(found))}. "
                           "Move it to a marketing template (consent, caps and holdout apply)")
    return out


# --- validation -----------------------------------------------------------------------------------


def validate_template(template: Template | Mapping[str, Any], context: Mapping[str, Any] | None = None) -> list[str]:
    """Everything wrong with a template, as messages (empty when it can be applied).

    Each part of each locale is compiled (syntax errors with their line) and rendered against
    `context` or `sample_context(locale)` with StrictUndefined, so a missing variable is found now
    and not at send time. Also: SMS length, empty subject, and a marketing email must link to
    `links.unsubscribe` (one-click unsubscribe is in the headers; the law and the inbox providers
    also want it in the body).
    """
    if not isinstance(template, Template):
        try:
            template = parse_template(template)
        except ValidationError as exc:
            return [exc.message]
    errors: list[str] = recommend_problems(template) + promotion_problems(template)
    for locale, content in template.locales.items():
        ctx = dict(context) if context is not None else sample_context(locale)
        ctx["locale"] = locale
        rendered: dict[str, str] = {}
        failed = False
        for part in PARTS:
            source = getattr(content, part)
            if source is None:
                continue
            try:
                rendered[part] = _render_part(template, locale, part, source, ctx)
            except TemplateRenderError as exc:
                failed = True
                # "<id>/<locale>/<part>: …" → "locales.<locale>.<part>: …"
                errors.append(f"locales.{locale}.{exc.message.split('/', 2)[2]}")
        if "subject" in rendered and not one_line(rendered["subject"]):
            errors.append(f"locales.{locale}.subject: renders to an empty subject")
        if "sms" in rendered:
            sms = clean_sms(rendered["sms"])
            encoding, segments, length = sms_segments(sms)
            if not sms:
                errors.append(f"locales.{locale}.sms: renders to an empty text")
            elif segments > MAX_SMS_SEGMENTS:
                errors.append(
                    f"locales.{locale}.sms: {segments} segments ({encoding}, {length} units) with the"
                    f" sample data; at most {MAX_SMS_SEGMENTS}"
                )
        links = ctx.get("links")
        unsubscribe = links.get("unsubscribe") if isinstance(links, Mapping) else None
        if template.category == "marketing" and content.has_email and unsubscribe and not failed:
            body = (rendered.get("html") or "") + (rendered.get("text") or "")
            if unsubscribe not in body and str(markupsafe.escape(unsubscribe)) not in body:
                errors.append(
                    f"locales.{locale}: a marketing email must contain the unsubscribe link"
                    " {{ links.unsubscribe }} in its html or text"
                )
    return errors
