"""What every command gets: the API client, the output streams and the global flags."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from cli.client import ApiClient
from cli.output import Progress


@dataclass
class Ctx:
    client: ApiClient
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    json_output: bool = False
    progress_enabled: bool | None = None  # None: only on a terminal

    def echo(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def warn(self, text: str) -> None:
        self.err.write(text + "\n")

    def dump(self, data: Any) -> None:
        self.out.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")

    def progress(self, label: str, total: int | None = None) -> Progress:
        return Progress(label, total, stream=self.err, enabled=self.progress_enabled)
