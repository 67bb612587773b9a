"""The NPS report (score with the seed's labels, trend with the answers per point, by stage and shop, the
latest comments) and
the global settings (caps, quiet hours, links, brake thresholds: read by everyone, changed by admins,
validated as a whole by retention.core.config.Settings)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from aws_lambda_powertools.event_handler import Response

from retention.console import charts
from retention.console.web import allowed, app, arg, audited, form, render, t
from retention.core import clock
from retention.core.errors import BadRequestError, RetentionError
from retention.core.runtime import deps

COMMENTS = 20  # the latest answers with a comment on the NPS page


@app.get("/console/nps")
def nps() -> Response:
    from retention.surveys.answers import Surveys
    period = str(arg("period")) if arg("period") in ("day", "week", "month") else "month"
    since = (clock.now() - timedelta(days=365)).date().isoformat()
    report = Surveys(deps()).report(since, None, period, comments=COMMENTS)
    trend = charts.bars([(f"{p.get('period') or p.get('date') or p.get('start')} (n={p.get('responses')})",
                          max(0, p.get("nps") or 0)) for p in report["trend"]], title=t("Trend"))
    return render("nps.html", report=report, period=period, trend=trend)


def _settings_text() -> str:
    return json.dumps(deps().config.settings().model_dump(mode="json"), indent=2, ensure_ascii=False)


@app.get("/console/settings")
def settings() -> Response:
    return render("settings.html", text=_settings_text(), error=None, saved=False)


@app.post("/console/settings")
def save_settings() -> Response:
    from pydantic import ValidationError as PydanticValidationError

    from retention.core.http import parse_json_object
    allowed("PUT", "/admin/settings")
    text = form().get("settings", "")
    try:
        patch = parse_json_object(text)
        new = deps().config.put_settings(patch)
    except (RetentionError, BadRequestError) as exc:
        return render("settings.html", status=400, text=text, error=exc.message, saved=False)
    except PydanticValidationError as exc:
        first: dict[str, Any] = dict(exc.errors()[0]) if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc") or ())
        return render("settings.html", status=400, text=text, error=f"{where}: {first.get('msg', 'invalid')}",
                      saved=False)
    audited("PUT", "/admin/settings", new.model_dump(mode="json"))
    return render("settings.html", text=_settings_text(), error=None, saved=True)
