"""Plain-text output: aligned tables, numbers and percentages, a `\\r` progress bar (no dependency)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}".replace(",", " ") if abs(value) >= 1000 else f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ") if abs(value) >= 10000 else str(value)
    return str(value)


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction (0.123) as `12.3 %`."""
    return "-" if value is None else f"{value * 100:.{digits}f} %"


def _numeric(text: str) -> bool:
    stripped = text.replace(" ", "").replace("%", "").replace("+", "").replace("-", "", 1).replace(".", "", 1)
    return stripped.isdigit()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None,
          indent: str = "") -> None:
    """Columns padded to their widest cell; numbers right-aligned, text left-aligned."""
    stream = out or sys.stdout
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [bool(cells) and all(_numeric(row[i]) or row[i] == "-" for row in cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)]
        return (indent + "  ".join(parts)).rstrip()

    stream.write(line(list(headers)) + "\n")
    stream.write(indent + "  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        stream.write(line(row) + "\n")


class Progress:
    """`label [#######-----]  58% 580/1000 extra` redrawn in place with `\\r`; without a total, a counter.

    Drawn only on a terminal unless `enabled` says otherwise, so logs and pipes stay clean."""

    def __init__(self, label: str, total: int | None = None, *, stream: TextIO | None = None,
                 enabled: bool | None = None, width: int = 28) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.width = width
        self.done = 0
        self._last = ""

    def render(self, extra: str = "") -> str:
        if self.total:
            ratio = min(1.0, self.done / self.total)
            filled = int(ratio * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            text = f"{self.label} [{bar}] {ratio * 100:3.0f}% {self.done}/{self.total}"
        else:
            text = f"{self.label} {self.done}"
        return f"{text} {extra}".rstrip()

    def update(self, done: int, *, total: int | None = None, extra: str = "") -> None:
        self.done = done
        if total is not None:
            self.total = total
        if not self.enabled:
            return
        text = self.render(extra)
        if text != self._last:
            pad = " " * max(0, len(self._last) - len(text))
            self.stream.write("\r" + text + pad)
            self.stream.flush()
            self._last = text

    def finish(self, extra: str = "") -> None:
        if self.enabled:
            self.update(self.done, extra=extra)
            self.stream.write("\n")
            self.stream.flush()
