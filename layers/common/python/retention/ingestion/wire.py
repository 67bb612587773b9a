"""The Segment tracking-API wire protocol (also spoken by RudderStack's clients), pure: no AWS.

`decode_body` turns an API Gateway body into bytes (base64, gzip, bomb-safe), `parse_request`
turns those bytes into normalized `Message`s plus per-message `Rejection`s, `reply` and
`error_body` shape the answers both clients understand (see DESIGN §3 and
`shared/fixtures/segment-wire/README.md` for what the real clients send).

Whole-body problems raise (`BadRequestError` → 400, `PayloadTooLargeError` → 413); a bad
message only rejects itself, the rest of its batch is kept.
"""

from __future__ import annotations

import base64
import binascii
import gc
import json
import re
import uuid
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from retention.core import clock
from retention.core.errors import BadRequestError, PayloadTooLargeError
from retention.core.http import depth_exceeds

MAX_REQUEST_BYTES = 5 * 1024 * 1024
"""A request body, after decompression (Rudder batches reach several MB)."""
MAX_MESSAGE_BYTES = 32 * 1024
"""One message, measured as its compact re-serialized JSON (Segment's per-message cap)."""
MAX_DEPTH = 32
"""Nesting levels of one message (the message object itself is level 1)."""
MAX_ID_BYTES = 512
"""Ids end up inside DynamoDB keys (pk ≤ 2048 bytes, sk ≤ 1024 bytes)."""
MAX_TRAIT_BYTES = 4 * 1024
"""One trait's value (as compact JSON): traits live in the profile for ever, unlike event properties."""
MAX_FUTURE = timedelta(hours=24)
"""A corrected timestamp further ahead of the server clock than this is a broken client clock."""
MIN_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
"""Earlier timestamps are a broken clock (or a unit mix-up), not shop history."""

MessageType = Literal["track", "identify", "page", "screen", "alias", "group"]
MESSAGE_TYPES: tuple[str, ...] = ("track", "identify", "page", "screen", "alias", "group")
KINDS: tuple[str, ...] = ("batch", *MESSAGE_TYPES)

MAX_BATCH_MESSAGES = 2500
"""Messages in one request: more is a 413 before any of them is normalized (Segment's clients send ≤ 100,
Rudder's a few hundred; a tiny gzip can otherwise carry 100,000 empty messages)."""
MAX_GZIP_MEMBERS = 16
"""Concatenated gzip members in one body (the clients send one; each member costs a decompressor)."""
GZIP_FEED = 64 * 1024
"""Compressed bytes fed to the decompressor at a time."""

GZIP_MAGIC = b"\x1f\x8b"
GZIP_AS_TEXT = b"\x1f\xef\xbf\xbd"  # GZIP_MAGIC after a lossy UTF-8 decode (0x8b is no UTF-8 start byte)

_FRACTION = re.compile(r"(\.\d{6})\d+")


class Message(BaseModel):
    """One normalized message: every later stage (identity, profiles, events, journeys) reads this."""

    model_config = {"defer_build": True}
    type: MessageType
    message_id: str
    user_id: str | None = None
    anonymous_id: str | None = None
    previous_id: str | None = None
    group_id: str | None = None
    event: str | None = None
    name: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime
    original_timestamp: datetime | None = None
    received_at: datetime
    sent_at: datetime | None = None
    index: int = 0  # position in its request, for a `rejected` entry decided after parsing


class Rejection(BaseModel):
    """One rejected message, exactly as it appears in the reply's `rejected` list."""

    model_config = {"defer_build": True}
    index: int
    messageId: str | None = None  # the reply field's wire name
    error: str


class ParsedRequest(BaseModel):
    model_config = {"defer_build": True}
    messages: list[Message] = Field(default_factory=list)
    rejected: list[Rejection] = Field(default_factory=list)
    write_key: str | None = None
    count: int = 0


class _RejectError(Exception):
    """A per-message problem: becomes a `Rejection`, never escapes this module."""


# --------------------------------------------------------------------------- body decoding


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _gunzip(data: bytes) -> bytes:
    """Decompress gzip, streamed and linear in the body size, never holding more than the request limit.

    The input is fed in slices of `GZIP_FEED` bytes, so a member's end copies at most one slice (feeding
    the whole body made every member copy the rest of it: quadratic in the number of members); at most
    `MAX_GZIP_MEMBERS` members (the real clients send one).
    """
    out = bytearray()
    view = memoryview(data)
    pos = 0
    members = 1
    decomp = zlib.decompressobj(wbits=31)
    pending: bytes | memoryview = b""
    try:
        while True:
            if not pending:
                if pos >= len(view):
                    break
                pending = view[pos:pos + GZIP_FEED]
                pos += len(pending)
            chunk = decomp.decompress(pending, MAX_REQUEST_BYTES + 1 - len(out))
            out += chunk
            if len(out) > MAX_REQUEST_BYTES:
                raise PayloadTooLargeError(
                    f"request body is larger than {MAX_REQUEST_BYTES} bytes after decompression; "
                    "send smaller batches"
                )
            pending = decomp.unconsumed_tail
            if decomp.eof:
                rest = decomp.unused_data
                if len(rest) < len(GZIP_MAGIC) and pos < len(view):
                    more = view[pos:pos + GZIP_FEED]
                    pos += len(more)
                    rest += bytes(more)
                if not rest.strip(b"\x00") and not bytes(view[pos:]).strip(b"\x00"):
                    return bytes(out)
                if not rest.startswith(GZIP_MAGIC):
                    raise BadRequestError("corrupt gzip body: trailing garbage after the gzip stream")
                members += 1
                if members > MAX_GZIP_MEMBERS:
                    raise PayloadTooLargeError(
                        f"gzip body has more than {MAX_GZIP_MEMBERS} members; send one gzip stream")
                decomp = zlib.decompressobj(wbits=31)
                pending = rest
        raise BadRequestError("corrupt gzip body: the gzip stream is truncated")
    except zlib.error as exc:
        raise BadRequestError(f"corrupt gzip body: {exc}") from exc


def _check_size(data: bytes) -> None:
    if len(data) > MAX_REQUEST_BYTES:
        raise PayloadTooLargeError(
            f"request body is {len(data)} bytes, over the {MAX_REQUEST_BYTES} byte limit; "
            "send smaller batches"
        )


def decode_body(body: str | bytes | None, is_base64: bool, headers: Mapping[str, str] | None) -> bytes:
    """The raw request bytes: base64-decoded when API Gateway flagged it, gunzipped when gzip.

    Gzip is recognised by `Content-Encoding: gzip` or by the gzip magic bytes (API Gateway's
    binary mode may hand us a compressed body whatever the headers say). A body labelled gzip
    that is not gzip is passed through: some proxies decompress and keep the header.
    """
    if body is None:
        return b""
    if is_base64:
        try:
            data = base64.b64decode(body, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise BadRequestError(f"body is flagged base64 but does not decode: {exc}") from exc
    elif isinstance(body, str):
        data = body.encode("utf-8", errors="surrogatepass")
    else:
        data = bytes(body)
    _check_size(data)
    if data.startswith(GZIP_MAGIC):
        return _gunzip(data)
    encoding = (_header(headers, "content-encoding") or "").strip().lower()
    if encoding in ("gzip", "x-gzip") and not is_base64 and data.startswith(GZIP_AS_TEXT):
        # the gzip magic 1f 8b came through as 1f + U+FFFD: something on the way read the binary body as
        # UTF-8 text and the bytes are lost (API Gateway and function URLs flag binary bodies base64)
        raise BadRequestError("the gzip body arrived as text, its bytes decoded as UTF-8 on the way: send it "
                              "with Content-Type: application/octet-stream, or uncompressed")
    if encoding in ("gzip", "x-gzip") and data.lstrip()[:1] not in (b"{", b"["):
        return _gunzip(data)  # labelled gzip, neither gzip nor JSON: report it as corrupt gzip
    return data


def write_key_from(headers: Mapping[str, str] | None, body_obj: Mapping[str, Any] | None) -> str | None:
    """The source's write key: HTTP Basic user name (password empty), else the `writeKey` body field."""
    auth = (_header(headers, "authorization") or "").strip()
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "basic" and token.strip():
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            decoded = ""
        user = decoded.partition(":")[0]
        if user:
            return user
    if body_obj is not None and isinstance(body_obj, Mapping):
        key = body_obj.get("writeKey")
        if isinstance(key, str) and key:
            return key
    return None


def kind_from_path(path: str) -> str | None:
    """`/v1/batch`, `//v1/batch`, `/v1/track/` … → `batch`, `track`; None for anything else."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[-2] == "v1" and parts[-1].lower() in KINDS:
        return parts[-1].lower()
    return None


# --------------------------------------------------------------------------- message parsing


def _id(raw: Mapping[str, Any], field: str) -> str | None:
    """An id field: strings stripped, numbers stringified (clients stringify ints), blank → None."""
    value = raw.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _RejectError(f"{field} must be a string, got {type(value).__name__}")
    text = value.strip() if isinstance(value, str) else str(value)
    if not text:
        return None
    if len(text.encode("utf-8")) > MAX_ID_BYTES:
        raise _RejectError(f"{field} is longer than {MAX_ID_BYTES} bytes")
    return text


def _object(raw: Mapping[str, Any], field: str) -> dict[str, Any]:
    value = raw.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _RejectError(f"{field} must be a JSON object, got {type(value).__name__}")
    return value


def parse_timestamp(value: Any, field: str = "timestamp") -> datetime | None:
    """ISO 8601 with an offset or `Z`, any fraction digits; naive means UTC. None/"" → None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise _RejectError(f"{field} must be an ISO 8601 string, got {type(value).__name__}")
    text = _FRACTION.sub(r"\1", value.strip())
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        parsed = parsed.astimezone(UTC)
    except OverflowError:
        raise _RejectError(f"{field} {value!r} is out of range once converted to UTC") from None
    except ValueError:
        raise _RejectError(
            f"{field} {value!r} is not an ISO 8601 timestamp (e.g. 2024-05-01T12:00:00.000Z)"
        ) from None
    if parsed < MIN_TIMESTAMP:
        raise _RejectError(f"{field} {value!r} is before {MIN_TIMESTAMP.year}: check the sending clock")
    return parsed


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merged[key] = _deep_merge(old, value)
        else:
            merged[key] = value
    return merged


def _json_size(value: Any) -> int:
    """Bytes of the compact UTF-8 JSON of a message (how its 32 KiB are counted)."""
    try:
        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    except UnicodeEncodeError:
        raise _RejectError("message contains an invalid \\u escape (a lone UTF-16 surrogate)") from None
    except RecursionError:
        raise _RejectError(f"message is nested deeper than {MAX_DEPTH} levels") from None


class _BatchContext:
    """The batch-level `context`, measured once for all its messages."""

    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value
        self.size = _json_size({"context": value}) - len('{"context":}') + len(',"context":')
        self.too_deep = depth_exceeds(value, MAX_DEPTH - 1)


def _raw_message_id(raw: Any) -> str | None:
    if not isinstance(raw, dict):
        return None
    value = raw.get("messageId")
    if isinstance(value, str) and value.strip():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _normalize(
    raw: Any,
    *,
    default_type: str | None,
    batch_sent_at: Any,
    batch_context: _BatchContext | None,
    received_at: datetime,
    index: int = 0,
) -> Message:
    if not isinstance(raw, dict):
        raise _RejectError(f"message must be a JSON object, got {type(raw).__name__}")
    context = _object(raw, "context")
    # the batch-level context is part of every message: it counts toward the message's 32 KiB (the sum is
    # an upper bound of the merged size; only a sum over the limit pays for measuring the merge exactly)
    size = _json_size(raw)
    if batch_context:
        context = _deep_merge(batch_context.value, context)
        if size + batch_context.size > MAX_MESSAGE_BYTES:
            size = _json_size({**raw, "context": context})
    if size > MAX_MESSAGE_BYTES:
        what = "with the batch context " if batch_context else ""
        raise _RejectError(f"message {what}is {size} bytes, over the {MAX_MESSAGE_BYTES} byte (32 KiB) limit")
    if depth_exceeds(raw, MAX_DEPTH):
        raise _RejectError(f"message is nested deeper than {MAX_DEPTH} levels")

    mtype = raw.get("type")
    if mtype is None or mtype == "":
        mtype = default_type
    if mtype is None:
        raise _RejectError(f"message has no type (one of {', '.join(MESSAGE_TYPES)})")
    if not isinstance(mtype, str) or mtype.strip().lower() not in MESSAGE_TYPES:
        raise _RejectError(f"unknown message type {mtype!r} (expected one of {', '.join(MESSAGE_TYPES)})")
    mtype = mtype.strip().lower()

    message_id = _id(raw, "messageId")
    if message_id is None:
        # Segment's and Rudder's clients always send one; a hand-written curl may not. A random
        # id means a retried curl is stored twice: send your own messageId to get deduplication.
        message_id = str(uuid.uuid4())
    user_id = _id(raw, "userId")
    anonymous_id = _id(raw, "anonymousId")
    previous_id = _id(raw, "previousId")
    group_id = _id(raw, "groupId")
    if mtype == "alias":
        if user_id is None or previous_id is None:
            raise _RejectError("alias needs both userId and previousId")
    elif user_id is None and anonymous_id is None:
        raise _RejectError("message needs a userId or an anonymousId (null and empty strings do not count)")
    if mtype == "group" and group_id is None:
        raise _RejectError("group needs a groupId")

    properties = _object(raw, "properties")
    traits = _object(raw, "traits")
    if mtype == "identify":
        # Rudder puts identify traits only in context.traits; the top-level ones win on conflict.
        ctx_traits = context.get("traits")
        if isinstance(ctx_traits, dict) and ctx_traits:
            traits = {**ctx_traits, **traits}
    for trait, value in traits.items():
        if isinstance(value, str) and len(value) <= MAX_TRAIT_BYTES // 4:
            continue  # the common case, certainly under the cap: no serialization
        size = _json_size(value)
        if size > MAX_TRAIT_BYTES:
            raise _RejectError(f"trait {str(trait)[:64]!r} is {size} bytes, over the {MAX_TRAIT_BYTES} byte limit "
                               "for one trait value")

    event = raw.get("event")
    if mtype == "track":
        if event is None or (isinstance(event, str) and not event.strip()):
            raise _RejectError("track needs an event name")
        if not isinstance(event, str):
            raise _RejectError(f"event must be a string, got {type(event).__name__}")
        event = event.strip()
    elif not isinstance(event, str):
        event = None
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        if isinstance(name, bool) or not isinstance(name, int | float):
            raise _RejectError(f"name must be a string, got {type(name).__name__}")
        name = str(name)

    client_ts = parse_timestamp(raw.get("timestamp"), "timestamp") or parse_timestamp(
        raw.get("originalTimestamp"), "originalTimestamp"
    )
    sent_at = parse_timestamp(raw.get("sentAt"), "sentAt")
    if sent_at is None:
        sent_at = parse_timestamp(batch_sent_at, "sentAt")
    if client_ts is None:
        timestamp = received_at
    elif sent_at is None:
        timestamp = client_ts
    else:
        # Segment's clock-skew correction: the client's clock may be off, the interval between
        # the event and the send (both on that clock) is right.
        try:
            timestamp = received_at - (sent_at - client_ts)
        except OverflowError:
            timestamp = datetime.min.replace(tzinfo=UTC)
        if timestamp < MIN_TIMESTAMP:
            raise _RejectError(
                f"timestamp {clock.iso(client_ts)} is {sent_at - client_ts} before sentAt {clock.iso(sent_at)}: "
                f"after clock-skew correction it falls before {MIN_TIMESTAMP.year}"
            )
    if timestamp - received_at > MAX_FUTURE:
        raise _RejectError(
            f"timestamp {clock.iso(timestamp)} (after sentAt correction) is more than 24 h ahead of the "
            f"server time {clock.iso(received_at)}: check the sending clock"
        )

    return Message(
        index=index,
        type=mtype,  # type: ignore[arg-type]
        message_id=message_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        previous_id=previous_id,
        group_id=group_id,
        event=event,
        name=name,
        properties=properties,
        traits=traits,
        context=context,
        timestamp=timestamp,
        original_timestamp=client_ts,
        received_at=received_at,
        sent_at=sent_at,
    )


def _load_json(raw: bytes) -> Any:
    _check_size(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequestError(
            f"body is not valid UTF-8 (byte {exc.start}); send JSON encoded as UTF-8"
        ) from exc
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise BadRequestError('empty body: send a JSON object such as {"batch": [...]}')
    # A parsed body holds no reference cycles, but its many small containers trigger the cyclic garbage
    # collector again and again: 5 MB of `[[]]` took 1 s of CPU with it and 0.2 s without.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        # NaN/Infinity (Python's json.dumps emits them) cannot be stored: read them as null.
        return json.loads(text, parse_constant=lambda _name: None)
    except RecursionError as exc:
        raise BadRequestError(
            f"body JSON is nested too deeply (limit {MAX_DEPTH} levels per message)"
        ) from exc
    except json.JSONDecodeError as exc:
        raise BadRequestError(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except ValueError as exc:
        raise BadRequestError(f"body is not valid JSON: {exc}") from exc
    finally:
        if gc_was_enabled:
            gc.enable()


class LoadedRequest(BaseModel):
    """A request body parsed as JSON but not yet normalized: enough to find its write key and count it."""

    model_config = {"defer_build": True}
    kind: str
    body: dict[str, Any]
    write_key: str | None = None

    def count(self) -> int:
        items = self.body.get("batch") if self.kind == "batch" else [self.body]
        return len(items) if isinstance(items, list) else 0


def load_request(kind: str, raw: bytes) -> LoadedRequest:
    """Parse a decoded `/v1/<kind>` body as JSON and check its shape; messages are not looked at yet."""
    kind = kind.strip().strip("/").lower()
    if kind not in KINDS:
        raise BadRequestError(f"unknown route /v1/{kind}: use /v1/batch or /v1/{{{','.join(MESSAGE_TYPES)}}}")
    body = _load_json(raw)
    if not isinstance(body, dict):
        raise BadRequestError(f"body must be a JSON object, got {type(body).__name__}")
    if kind == "batch":
        items = body.get("batch")
        if items is None:
            raise BadRequestError('body has no "batch": expected {"batch": [message, ...], "sentAt": "..."}')
        if not isinstance(items, list):
            raise BadRequestError(f'"batch" must be a list of messages, got {type(items).__name__}')
    body_key = body.get("writeKey")
    return LoadedRequest(kind=kind, body=body, write_key=body_key if isinstance(body_key, str) and body_key else None)


def check_count(loaded: LoadedRequest) -> None:
    count = loaded.count()
    if count > MAX_BATCH_MESSAGES:
        raise PayloadTooLargeError(
            f"batch has {count} messages, over the limit of {MAX_BATCH_MESSAGES}; send smaller batches")


def parse_loaded(loaded: LoadedRequest, received_at: datetime) -> ParsedRequest:
    """Normalize the messages of a loaded body (the message-count cap is checked first)."""
    check_count(loaded)
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=UTC)
    received_at = received_at.astimezone(UTC)
    body = loaded.body
    batch_sent_at: Any = None
    batch_context: _BatchContext | None = None
    if loaded.kind == "batch":
        items = body["batch"]
        batch_sent_at = body.get("sentAt")
        ctx = body.get("context")
        if isinstance(ctx, dict) and ctx:
            try:
                batch_context = _BatchContext(ctx)
            except _RejectError as exc:
                raise BadRequestError(f"batch context: {exc}") from None
            if batch_context.too_deep:
                raise BadRequestError(f"batch context is nested deeper than {MAX_DEPTH - 1} levels")
            if batch_context.size > MAX_MESSAGE_BYTES:
                raise PayloadTooLargeError(
                    f"batch context is {batch_context.size} bytes: every message would be over the "
                    f"{MAX_MESSAGE_BYTES} byte (32 KiB) limit")
        default_type = None
    else:
        items = [body]
        default_type = loaded.kind

    parsed = ParsedRequest(write_key=loaded.write_key, count=len(items))
    for index, item in enumerate(items):
        try:
            parsed.messages.append(
                _normalize(
                    item,
                    default_type=default_type,
                    batch_sent_at=batch_sent_at,
                    batch_context=batch_context,
                    received_at=received_at,
                    index=index,
                )
            )
        except _RejectError as exc:
            parsed.rejected.append(Rejection(index=index, messageId=_raw_message_id(item), error=str(exc)))
    return parsed


def parse_request(kind: str, raw: bytes, received_at: datetime) -> ParsedRequest:
    """Parse a decoded `/v1/<kind>` body. `kind` is `batch` or a message type."""
    return parse_loaded(load_request(kind, raw), received_at)


# --------------------------------------------------------------------------- replies


def reply(parsed: ParsedRequest, later: list[Rejection] | None = None) -> dict[str, Any]:
    """The 200 body: Rudder's client only counts exactly 200 as success. `later` are messages that parsed
    but were refused when stored (a key's scope, a profile that would overflow)."""
    rejected = sorted([*parsed.rejected, *(later or [])], key=lambda r: r.index)
    return {
        "success": True,
        "accepted": len(parsed.messages) - len(later or []),
        "rejected": [r.model_dump() for r in rejected],
    }


def error_body(code: str, message: str) -> dict[str, Any]:
    """An error body; Rudder's client retries a 4xx forever unless both `code` and `message` are there."""
    return {"success": False, "code": code, "message": message}


def internal_message(customer_id: str, *, type_: Literal["track", "identify"] = "track", event: str | None = None,
                     properties: dict[str, Any] | None = None, traits: dict[str, Any] | None = None,
                     message_id: str | None = None, at: datetime | None = None) -> Message:
    """A message the engine sends itself (an NPS answer, a preference change): it goes through ingestion
    like a shop's, so profile, consent log, segments and journeys react in one place."""
    now = clock.now()
    return Message(type=type_, message_id=message_id or str(uuid.uuid4()), user_id=customer_id, anonymous_id=None,
                   previous_id=None, group_id=None, event=event, name=None, properties=properties or {},
                   traits=traits or {}, context={"library": {"name": "retention-internal"}},
                   timestamp=at or now, original_timestamp=None, received_at=now, sent_at=None)
