"""The definitions catalogue: what the engine, the tick and the sender run with (rules, templates, segment
groups and the global settings), parsed from the applied versions in the config table (retention.core.config)
and re-parsed only when a version changes."""

from __future__ import annotations

from typing import Any

from retention.core.config import ConfigStore, definition_key
from retention.journeys.engine import Definitions


class Catalogue:
    """Parsed definitions, re-parsed only when the applied versions change (cached per process)."""

    # kind → (the config's dict it was checked against, its version stamp, the parsed definitions): while the
    # config cache hands out the same dict (≤ 30 s), not even the stamp is recomputed (every send renders)
    _parsed: dict[str, tuple[Any, tuple[Any, ...], Any]] = {}

    def __init__(self, config: ConfigStore) -> None:
        self.config = config

    def _parse(self, kind: str, parser: Any) -> dict[str, Any]:
        current = self.config.current(kind)
        hit = self._parsed.get(kind)
        if hit and hit[0] is current:
            return hit[2]  # type: ignore[no-any-return]
        stamp = tuple(sorted((k, int(v["version"]), bool(v.get("enabled", True))) for k, v in current.items()))
        if hit and hit[1] == stamp:
            self._parsed[kind] = (current, stamp, hit[2])
            return hit[2]  # type: ignore[no-any-return]
        parsed = {}
        for def_id, item in current.items():
            parsed[def_id] = parser(item["body"], item)
        self._parsed[kind] = (current, stamp, parsed)
        return parsed

    def rules(self) -> dict[str, Any]:
        from retention.language.rules import parse_rule

        def parse(body: dict[str, Any], item: dict[str, Any]) -> Any:
            rule = parse_rule(body, source=f"rule {item['sk']}", linemap=None)
            rule.enabled = bool(item.get("enabled", rule.enabled))  # `rules enable|disable` wins over the body
            return rule
        return self._parse("RULE", parse)

    def enabled_rules(self) -> list[Any]:
        return [r for r in self.rules().values() if r.enabled]

    def templates(self) -> dict[str, Any]:
        from retention.language.templates import Template
        return self._parse("TEMPLATE", lambda body, item: Template.model_validate(body))

    def segment_groups(self) -> list[Any]:
        """Validated together (cross-group references, dependency order), re-done only on a new version."""
        from retention.language.segments import load_groups
        current = self.config.current("SEGDEF")
        hit = self._parsed.get("SEGDEF")
        if hit and hit[0] is current:
            return list(hit[2])
        stamp = tuple(sorted((k, int(v["version"])) for k, v in current.items()))
        if hit and hit[1] == stamp:
            self._parsed["SEGDEF"] = (current, stamp, hit[2])
            return list(hit[2])
        groups = load_groups({definition_key("SEGDEF", k): v["body"] for k, v in current.items()}) if current else []
        self._parsed["SEGDEF"] = (current, stamp, groups)
        return list(groups)

    def definitions(self) -> Definitions:
        """What the engine runs with: the enabled rules, the segment groups and the settings."""
        return Definitions(rules=self.enabled_rules(), groups=self.segment_groups(), settings=self.config.settings())


def definitions(config: ConfigStore) -> Definitions:
    return Catalogue(config).definitions()
