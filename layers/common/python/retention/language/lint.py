"""Advice on templates and rules (`retention rules lint`): what validation accepts but seed 001's
lessons and common sense say will hurt.

Subject lines (seed 001, "Тема письма"):
- a name in the subject: open rate about 3× higher → `subject-no-name`;
- short subjects: under 10 characters had 58 % opens → `subject-long` past 40 characters;
- exact numbers in the subject cut opens by 70 % in Russia ("Снижена цена на iPhone" beats
  "iPhone всего за … р") → `subject-digits`;
- "бесплатно" sharply lowers opens → `subject-free`; "подарок" raises them (`subject-gift`, info);
  "спасибо" doubles them (`subject-thanks`, info).

Subjects and SMS bodies are judged as they render with `templates.sample_context` (a four-letter
name, the sample order), so conditional subjects are judged by the branch a customer sees.
Severity `warning` = fix it; `info` = good to know (also the good news).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from retention.core.errors import RetentionError
from retention.language import conditions, rules, templates
from retention.messaging.sms import sms_segments

SUBJECT_MAX_CHARS = 40
SMS_MAX_SEGMENTS = 2  # 2 UCS-2 segments = 134 Cyrillic characters; each segment is billed

Severity = Literal["warning", "info"]


class LintWarning(NamedTuple):
    code: str
    message: str
    locale: str | None = None
    severity: Severity = "warning"


Warning = LintWarning  # the short name the CLI and callers use

_NAME_RE = re.compile(r"first_name")
_JINJA_RE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_DIGIT_RE = re.compile(r"\d")
_FREE_RE = re.compile(r"бесплатн|даром|\bfree\b|\bfor free\b", re.I)
_GIFT_RE = re.compile(r"подар|\bgifts?\b|\bpresents?\b", re.I)
_THANKS_RE = re.compile(r"спасиб|благодар|\bthanks?\b|\bthank you\b", re.I)
_UNSUBSCRIBE_RE = re.compile(r"links\.unsubscribe|links\[['\"]unsubscribe['\"]\]")


def _as_template(template: Any) -> templates.Template:
    if isinstance(template, templates.Template):
        return template
    return templates.parse_template(template)


def _render(template: templates.Template, locale: str, part: str, source: str) -> str:
    """The part rendered with the sample context; with its Jinja stripped if it cannot render."""
    try:
        rendered = templates.render(template, locale, templates.sample_context(locale))
        value = getattr(rendered, part)
        if isinstance(value, str):
            return value
    except RetentionError:
        pass
    return _JINJA_RE.sub("", source).strip()


def _subject_warnings(template: templates.Template, locale: str, source: str) -> list[LintWarning]:
    out: list[LintWarning] = []
    subject = _render(template, locale, "subject", source)
    if not _NAME_RE.search(source):
        out.append(LintWarning(
            "subject-no-name",
            "no first name in the subject: a name raises opens about 3× (seed 001); e.g. "
            '{{ customer.first_name|first_name_or("друг") }}',
            locale,
        ))
    if len(subject) > SUBJECT_MAX_CHARS:
        out.append(LintWarning(
            "subject-long",
            f"the subject has {len(subject)} characters with the sample data (\"{subject}\"); keep it under "
            f"{SUBJECT_MAX_CHARS}: subjects under 10 characters had 58 % opens (seed 001)",
            locale,
        ))
    if _DIGIT_RE.search(subject) or _DIGIT_RE.search(_JINJA_RE.sub("", source)):
        out.append(LintWarning(
            "subject-digits",
            f"exact numbers in the subject (\"{subject}\") cut opens by about 70 % in Russia (seed 001): "
            "«Снижена цена на iPhone» beats «iPhone всего за … р»",
            locale,
        ))
    if _FREE_RE.search(subject):
        out.append(LintWarning(
            "subject-free",
            "\"бесплатно\" / \"free\" in the subject sharply lowers opens (seed 001); say \"подарок\" instead",
            locale,
        ))
    if _GIFT_RE.search(subject):
        out.append(LintWarning("subject-gift", "\"подарок\" / \"gift\" in the subject raises opens (seed 001)",
                               locale, "info"))
    if _THANKS_RE.search(subject):
        out.append(LintWarning("subject-thanks", "\"спасибо\" / \"thank you\" in the subject doubles opens "
                               "(seed 001)", locale, "info"))
    return out


def lint_template(template: templates.Template | Mapping[str, Any]) -> list[LintWarning]:
    """Seed 001's subject-line lessons, SMS length, the unsubscribe footer and preheaders, per locale."""
    parsed = _as_template(template)
    out: list[LintWarning] = []
    for problem in templates.promotion_problems(parsed):
        # also an apply error (templates.validate_template): the class of a message cannot drift
        where, _, message = problem.partition(": ")
        out.append(LintWarning("transactional-promotion", message, where.split(".")[1]))
    for locale, content in parsed.locales.items():
        if content.subject:
            out.extend(_subject_warnings(parsed, locale, content.subject))
            if not content.preheader:
                out.append(LintWarning(
                    "no-preheader",
                    "no preheader: the inbox shows the first body line next to the subject instead",
                    locale, "info",
                ))
            body = (content.html or "") + (content.text or "")
            if parsed.category == "marketing" and not _UNSUBSCRIBE_RE.search(body):
                out.append(LintWarning(
                    "no-unsubscribe",
                    "a marketing email needs {{ links.unsubscribe }} in its footer (38-FZ, GDPR, inbox providers)",
                    locale,
                ))
        if content.sms:
            text = _render(parsed, locale, "sms", content.sms)
            encoding, segments, units = sms_segments(text)
            if segments > SMS_MAX_SEGMENTS:
                out.append(LintWarning(
                    "sms-long",
                    f"the SMS renders to {segments} {encoding} segments ({units} units) with the sample data; "
                    f"keep it within {SMS_MAX_SEGMENTS} (134 Cyrillic or 306 Latin characters): each is billed",
                    locale,
                ))
    return out


# ---- rules ------------------------------------------------------------------------------------


def _consents(cond: conditions.ConditionBase | None) -> set[str]:
    if cond is None:
        return set()
    # a consent *state* check other than granted (the double opt-in asks those without) is not a consent check
    return {node.consent for node in cond.walk() if isinstance(node, conditions.ConsentCondition)
            and (node.state is None or node.state == ["granted"])}


def _reachable(rule: rules.Rule) -> set[int]:
    seen: set[int] = set()
    todo = [0]
    while todo:
        index = todo.pop()
        if index in seen or index >= len(rule.steps):
            continue
        seen.add(index)
        for taken in (True, False):
            landing = rule.next_index(index, branch_taken=taken)
            if landing is not None:
                todo.append(landing)
    return seen


def _template_channels(template: templates.Template) -> set[str]:
    channels: set[str] = set()
    for locale in template.locales:
        channels |= template.channels(locale)
    return channels


def lint_rule(
    rule: rules.Rule,
    templates_by_id: Mapping[str, templates.Template | Mapping[str, Any]] | None = None,
) -> list[LintWarning]:
    """Consent in the audience, exits, holdouts, unreachable steps, engagement branches after SMS,
    and (with the templates) channels and categories that do not fit the send steps."""
    out: list[LintWarning] = []
    parsed: dict[str, templates.Template] = {}
    for template_id, template in (templates_by_id or {}).items():
        try:
            parsed[template_id] = _as_template(template)
        except RetentionError:
            continue
    marketing = not rule.is_transactional
    consents = _consents(rule.audience)
    names = {n for kind, n in conditions.referenced_fields(rule.audience) if kind == "segment"} \
        if rule.audience is not None else set()
    sends = rule.send_steps()

    # a service message (a transactional template, e.g. the sign-up confirmation) opens the journey to
    # customers without marketing consent on purpose; the sender checks consent for the marketing steps
    service_first = bool(sends) and all(getattr(parsed.get(t), "category", None) == "transactional"
                                        for t in sends[0][1].send.templates())
    if marketing:
        channels = {step.send.channel for _, step in sends}
        for channel in sorted(channels if not service_first else ()):
            needed = {"email", "sms"} if channel == "preferred" else {channel}
            if not consents & needed:
                out.append(LintWarning(
                    "audience-no-consent",
                    f"marketing sends on {channel} but the audience does not check "
                    f"{' or '.join(f'consent: {c}' for c in sorted(needed))}: customers without consent "
                    "enter the journey and every send is skipped",
                ))
        if "fraud" not in names and "lifecycle/fraud" not in names:
            out.append(LintWarning("audience-no-fraud", "the audience does not exclude the fraud segment "
                                   "({not_in_segment: fraud})", severity="info"))
        if rule.holdout_percent == 0:
            out.append(LintWarning("no-holdout", "holdout_percent is 0: the rule's uplift cannot be measured",
                                   severity="info"))
        if len(sends) > 1 and rule.exit_when is None:
            out.append(LintWarning("no-exit", "several sends and no exit_when: the goal does not stop the "
                                   "journey", severity="info"))

    reachable = _reachable(rule)
    for index in range(len(rule.steps)):
        if index not in reachable:
            out.append(LintWarning("unreachable-step", f"steps[{index}] can never be reached"))
    if isinstance(rule.steps[-1], rules.WaitStep):
        out.append(LintWarning("trailing-wait", f"steps[{len(rule.steps) - 1}] is a wait at the end: it only "
                               "delays the journey's completion (and its re-entry)"))

    last_channel: str | None = None
    for index, step in enumerate(rule.steps):
        if isinstance(step, rules.SendStep):
            last_channel = step.send.channel
            spec = step.send
            if spec.variants is not None:
                live = [v for v in spec.variants if v.weight > 0]
                if len(live) < 2:
                    out.append(LintWarning("variants-single", f"steps[{index}]: only one variant can be chosen; "
                                           "use template:", severity="info"))
            for template_id in spec.templates():
                found = parsed.get(template_id)
                if found is None:
                    if templates_by_id is not None:
                        out.append(LintWarning("template-missing", f"steps[{index}]: template {template_id!r} "
                                               "is not in the library"))
                    continue
                out.extend(_send_template_warnings(rule, index, spec.channel, found))
        elif isinstance(step, rules.BranchStep):
            engagement = step.branch.engagement
            if engagement is not None and engagement.what == "opened" and last_channel == "sms":
                out.append(LintWarning("engagement-sms", f"steps[{index}]: opened_previous after an SMS is "
                                       "never true (SMS opens are not tracked); use clicked_previous"))
    return out


def _send_template_warnings(
    rule: rules.Rule, index: int, channel: str, template: templates.Template
) -> list[LintWarning]:
    out: list[LintWarning] = []
    has = _template_channels(template)
    if channel == "preferred":
        missing = {"email", "sms"} - has
        if missing:
            out.append(LintWarning(
                "template-channel",
                f"steps[{index}]: channel preferred, but template {template.id!r} has no "
                f"{' or '.join(sorted(missing))} body; customers preferring it get the other channel or nothing",
                severity="info",
            ))
    elif channel not in has:
        out.append(LintWarning(
            "template-channel",
            f"steps[{index}]: channel {channel}, but template {template.id!r} has no {channel} content",
        ))
    if rule.is_transactional and template.category == "marketing":
        out.append(LintWarning(
            "template-category",
            f"steps[{index}]: marketing template {template.id!r} in a transactional rule skips caps and consent",
        ))
    elif not rule.is_transactional and template.category == "transactional":
        out.append(LintWarning(
            "template-category",
            f"steps[{index}]: transactional template {template.id!r} in a marketing rule (caps and consent apply)",
            severity="info",
        ))
    return out
