"""YAML loading that remembers where every key came from, so definition errors name `file:line`.

Shared by the segment and rule libraries. A `LineMap` maps a key path inside one document
(`("segments", 3, "when")`) to its 1-based line. Documents that did not come from YAML (a dict
read back from DynamoDB) get a `LineMap.from_data` map: same paths, no lines, so messages keep
the path and drop the line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any

import pydantic

if TYPE_CHECKING:  # PyYAML is imported where a document is read: the hot handlers never read YAML
    import yaml

from retention.core.errors import ValidationError

PathElem = str | int
Path = tuple[PathElem, ...]


class LocatedError(ValueError):
    """A `ValueError` raised inside a pydantic validator that knows which sub-path is wrong.

    Pydantic keeps the exception object in the error context, so `format_validation_error`
    appends `path` to the error location: a model-level check can point at the exact key.
    """

    def __init__(self, message: str, path: Sequence[PathElem] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path: Path = tuple(path)


class LineMap:
    """Key paths of one document → 1-based line (None when the document had no source text)."""

    __slots__ = ("_lines",)

    def __init__(self, lines: dict[Path, int | None] | None = None) -> None:
        self._lines: dict[Path, int | None] = lines if lines is not None else {}

    @classmethod
    def from_data(cls, data: Any) -> LineMap:
        lines: dict[Path, int | None] = {}
        _walk_data(data, (), lines)
        return cls(lines)

    def __contains__(self, path: object) -> bool:
        return path in self._lines

    def paths(self) -> Iterable[Path]:
        return self._lines.keys()

    def line_for(self, path: Sequence[PathElem]) -> int | None:
        """Line of `path`, or of its longest known prefix (a missing key → its parent's line)."""
        key = tuple(path)
        while True:
            line = self._lines.get(key)
            if line is not None:
                return line
            if not key:
                return None
            key = key[:-1]

    def existing_prefix(self, loc: Sequence[Any], keep_missing_last: bool = True) -> Path:
        """Map a pydantic error location onto the document.

        Elements that are real keys/indexes are kept; union tags and other synthetic elements are
        dropped; a trailing unknown key (a missing required field) is kept for the message unless
        it is a tag written `<name>` (the convention for tags of our own discriminated unions).
        """
        out: list[PathElem] = []
        for i, elem in enumerate(loc):
            candidate = (*out, elem)
            if candidate in self._lines or (
                keep_missing_last and i == len(loc) - 1 and isinstance(elem, str | int) and not _is_tag(elem)
            ):
                out.append(elem)
        return tuple(out)


def _is_tag(elem: PathElem) -> bool:
    return isinstance(elem, str) and elem.startswith("<") and elem.endswith(">")


def _walk_data(data: Any, path: Path, lines: dict[Path, int | None]) -> None:
    lines[path] = None
    if isinstance(data, Mapping):
        for key, value in data.items():
            _walk_data(value, (*path, key), lines)
    elif isinstance(data, list | tuple):
        for index, value in enumerate(data):
            _walk_data(value, (*path, index), lines)


def _walk_node(node: yaml.Node, path: Path, lines: dict[Path, int | None], source: str) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            if key == "<<":  # merge key: the merged keys keep the anchor's lines
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ValidationError(f"{source}:{line}: {format_path(path) or '<root>'}: duplicate key {key!r}")
            seen.add(key)
            lines[(*path, key)] = line
            _walk_node(value_node, (*path, key), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _walk_node(item, (*path, index), lines, source)


MAX_YAML_CHARS = 512 * 1024
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 64
"""A definition's values once aliases are expanded: 397 bytes of nested aliases (a "billion laughs")
made one `PUT /admin/rules/x` take 21 s; the size is counted on the node graph, linear in its nodes."""


def _too_deep(data: Any) -> bool:
    from retention.core.http import depth_exceeds
    return depth_exceeds(data, MAX_YAML_DEPTH)


def _expanded_size(root: yaml.Node) -> int:
    """The number of nodes the document stands for with every alias expanded, computed without expanding
    (each node's size once, memoized; an alias cycle counts as over the cap)."""
    import yaml

    sizes: dict[int, int] = {}
    visiting: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in visiting:
            return MAX_YAML_NODES + 1
        visiting.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                if total > MAX_YAML_NODES:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > MAX_YAML_NODES:
                    break
        visiting.discard(key)
        sizes[key] = min(total, MAX_YAML_NODES + 1)
        return sizes[key]

    import sys
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(limit, 10_000))
        return size(root)
    except RecursionError:
        return MAX_YAML_NODES + 1
    finally:
        sys.setrecursionlimit(limit)


def load_yaml_documents(text: str, source: str) -> list[tuple[Any, LineMap]]:
    """Every non-empty YAML document of `text` with its line map (safe loader only).

    Invalid YAML and duplicate keys raise `retention.core.errors.ValidationError("<source>:<line>: …")`.
    """
    if len(text) > MAX_YAML_CHARS:
        raise ValidationError(f"{source}: the document is larger than {MAX_YAML_CHARS // 1024} KB")
    import yaml

    loader = yaml.SafeLoader(text)
    documents: list[tuple[Any, LineMap]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            expanded = _expanded_size(node)
            if expanded > MAX_YAML_NODES:
                raise ValidationError(
                    f"{source}:{node.start_mark.line + 1}: the document expands to more than {MAX_YAML_NODES} "
                    "values (aliases that repeat aliases): write it out or use fewer aliases")
            data = loader.construct_document(node)
            if data is None:
                continue
            if isinstance(data, dict | list) and _too_deep(data):
                raise ValidationError(f"{source}:{node.start_mark.line + 1}: the document is nested deeper than "
                                      f"{MAX_YAML_DEPTH} levels")
            lines: dict[Path, int | None] = {(): node.start_mark.line + 1}
            _walk_node(node, (), lines, source)
            documents.append((data, LineMap(lines)))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ValidationError(f"{source}{line}: invalid YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise ValidationError(f"{source}: invalid YAML: {exc}") from exc
    except RecursionError:
        raise ValidationError(f"{source}: the document is nested too deeply") from None
    finally:
        loader.dispose()
    return documents


def format_path(path: Sequence[PathElem]) -> str:
    """`("segments", 3, "when")` → `segments[3].when`."""
    out = ""
    for elem in path:
        if isinstance(elem, int):
            out += f"[{elem}]"
        else:
            out += f".{elem}" if out else str(elem)
    return out


def located(source: str, linemap: LineMap | None, path: Sequence[PathElem], message: str) -> str:
    """`<source>:<line>: <path>: <message>` (line and path left out when unknown)."""
    line = linemap.line_for(path) if linemap is not None else None
    where = f"{source}:{line}" if line is not None else source
    dotted = format_path(path)
    return f"{where}: {dotted}: {message}" if dotted else f"{where}: {message}"


def _error_message(error: Mapping[str, Any]) -> tuple[str, Path]:
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, LocatedError):
        return cause.message, cause.path
    if error.get("type") == "value_error" and isinstance(cause, Exception):
        return str(cause), ()
    if error.get("type") == "extra_forbidden":
        return "unknown field", ()
    return str(error.get("msg", "invalid")), ()


def validation_messages(
    exc: pydantic.ValidationError, linemap: LineMap | None, source: str, prefix: Sequence[PathElem] = ()
) -> list[str]:
    """One located message per pydantic error (`prefix` = where the validated object sits).

    Pass the document's `LineMap` (or `LineMap.from_data(data)`): it is what tells real keys from
    pydantic's union tags in the error location. Without one the location is printed as is.
    """
    messages: list[str] = []
    for error in exc.errors():
        message, extra = _error_message(error)
        loc = (*prefix, *error["loc"])
        if linemap is not None:
            path = linemap.existing_prefix(loc, keep_missing_last=not extra) + extra
        else:
            path = tuple(e for e in loc if not _is_tag(e)) + extra
        messages.append(located(source, linemap, path, message))
    return messages


def format_validation_error(
    exc: pydantic.ValidationError, linemap: LineMap | None, source: str, prefix: Sequence[PathElem] = ()
) -> str:
    """All errors of `exc`, one per line, e.g.
    `scenarios/segments/lifecycle.yaml:14: segments[3].when: unknown operator 'kpii'`."""
    return "\n".join(validation_messages(exc, linemap, source, prefix))


SCENARIOS_ENV = "RETENTION_SCENARIOS_DIR"


def scenarios_dir() -> FsPath:
    """`$RETENTION_SCENARIOS_DIR`, else `<repo>/scenarios` (this file is layers/common/python/retention/)."""
    configured = os.environ.get(SCENARIOS_ENV)
    if configured:
        return FsPath(configured)
    return FsPath(__file__).resolve().parents[5] / "scenarios"


def display_path(path: FsPath) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


def scenario_texts(folder: str, directory: FsPath | None = None) -> dict[str, str]:
    """{display path: YAML text} of `<scenarios>/<folder>/*.yaml`, sorted by file name."""
    base = (directory or scenarios_dir()) / folder
    files = sorted([*base.glob("*.yaml"), *base.glob("*.yml")])
    return {display_path(path): path.read_text(encoding="utf-8") for path in files}
