"""`retention sending|dns|doctor`: the send brake, the DNS records of the sending domain, and a health check of
a deployment (DNS lookups where this machine can resolve, SES account state where the credentials allow)."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from cli.context import Ctx

# ---- the send brake ------------------------------------------------------------------------------------


def sending_show(ctx: Ctx, identity: str | None) -> int:
    data = ctx.client.get("/sending", identity=identity)
    if ctx.json_output:
        ctx.dump(data)
        return 0
    w = data.get("window") or {}
    ctx.echo(f"marketing email ({data.get('identity')}): {data['marketing'].upper()}"
             + (f" since {str(data.get('since'))[:19]}" if data.get("since") else ""))
    if data.get("reason"):
        ctx.echo(f"  reason: {data['reason']}")
    span = f"last {w.get('size')} sends" if w.get("kind") == "last_sends" else "last 24 hours"
    ctx.echo(f"  window ({span}): {w.get('sent', 0)} sent, {w.get('bounced', 0)} bounced "
             f"({data['bounce_rate'] * 100:.2f} %), {w.get('complained', 0)} complaints "
             f"({data['complaint_rate'] * 100:.3f} %)" + ("" if w.get("enough") else
                                                         f"; fewer than {w.get('min_sends')} sends: cannot trip"))
    t = data.get("thresholds") or {}
    if t:
        ctx.echo(f"  pauses above {t['bounce_rate'] * 100:g} % bounces or {t['complaint_rate'] * 100:g} % complaints "
                 "(half of SES's review thresholds); transactional email is never paused")
    if data["marketing"] == "paused":
        ctx.echo("  marketing sends are deferred, not dropped: fix the list, then `retention sending resume`")
    return 0


def sending_resume(ctx: Ctx, identity: str | None) -> int:
    res = ctx.client.post("/sending/resume", {"identity": identity} if identity else {})
    if ctx.json_output:
        ctx.dump(res)
        return 0
    ctx.echo(f"marketing email ({res.get('identity')}) resumed (was {res.get('was')}); a fresh window starts now; "
             "deferred messages go out within 30 minutes")
    return 0


# ---- DNS and doctor ----------------------------------------------------------------------------------------


def dns_records(outputs: dict[str, str], region: str) -> list[dict[str, str]]:
    """The records to publish for the sending domain, from the stack's outputs."""
    domain = outputs.get("SenderDomain") or ""
    if not domain:
        return []
    records = []
    for i in (1, 2, 3):
        name, value = outputs.get(f"DkimName{i}"), outputs.get(f"DkimValue{i}")
        if name and value:
            records.append({"purpose": f"DKIM {i}", "name": name, "type": "CNAME", "value": value})
    mail_from = outputs.get("MailFromDomain") or f"bounce.{domain}"
    records += [
        {"purpose": "MAIL FROM (bounces)", "name": mail_from, "type": "MX",
         "value": f"10 feedback-smtp.{region}.amazonses.com"},
        {"purpose": "MAIL FROM SPF", "name": mail_from, "type": "TXT", "value": '"v=spf1 include:amazonses.com ~all"'},
        {"purpose": "DMARC (starter)", "name": f"_dmarc.{domain}", "type": "TXT",
         "value": f'"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"'},
    ]
    return records


def print_dns(ctx: Ctx, records: list[dict[str, str]]) -> None:
    if not records:
        ctx.echo("no sender domain in this stack: deploy with -c senderDomain=shop.example to get the records")
        return
    ctx.echo("Publish these DNS records (then SES verifies the domain by itself, usually within an hour):")
    for r in records:
        ctx.echo(f"  {r['name']:<52} {r['type']:<5} {r['value']}    ; {r['purpose']}")
    ctx.echo("DMARC starts at p=none (reports only); after a few weeks of clean reports move to p=quarantine.")


def _lookup(name: str, rtype: str) -> list[str] | None:
    """DNS answers via dnspython if installed, else `dig`; None when this machine cannot resolve."""
    try:
        import dns.resolver  # type: ignore[import-not-found]
        try:
            return [r.to_text() for r in dns.resolver.resolve(name, rtype, lifetime=5)]
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except Exception:
            return None
    except ImportError:
        pass
    dig = shutil.which("dig")
    if not dig:
        return None
    try:
        proc = subprocess.run([dig, "+short", "+time=3", "+tries=1", name, rtype], capture_output=True,  # noqa: S603
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 or "connection timed out" in proc.stdout:
        return None
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def _norm(text: str) -> str:
    return text.strip().strip('"').rstrip(".").lower().replace('" "', "")


def check_dns(records: list[dict[str, str]], lookup: Any = _lookup) -> list[tuple[str, str, str]]:
    """[(status, record, detail)]: ok | missing | wrong | unknown (cannot resolve here)."""
    out = []
    for r in records:
        answers = lookup(r["name"], r["type"])
        label = f"{r['purpose']}: {r['name']} {r['type']}"
        if answers is None:
            out.append(("unknown", label, "cannot resolve from this machine"))
            continue
        want = _norm(r["value"])
        got = [_norm(a) for a in answers]
        if r["type"] == "TXT" and r["purpose"].startswith("DMARC"):
            ok = any(g.startswith("v=dmarc1") for g in got)
        elif r["type"] == "TXT":
            ok = any("include:amazonses.com" in g for g in got)
        else:
            ok = want in got
        out.append(("ok" if ok else ("missing" if not got else "wrong"), label,
                    "" if ok else (f"found {', '.join(answers)}" if got else "not published yet")))
    return out


def ses_report(sesv2: Any, domain: str | None) -> list[tuple[str, str, str]]:
    """SES sandbox, quota, enforcement (reputation) and the identity's DKIM / MAIL FROM state."""
    out: list[tuple[str, str, str]] = []
    try:
        acct = sesv2.get_account()
    except Exception as exc:
        return [("unknown", "SES account", f"not readable with these credentials ({type(exc).__name__})")]
    prod = bool(acct.get("ProductionAccessEnabled"))
    out.append(("ok" if prod else "warn", "SES production access",
                "enabled" if prod else "SANDBOX: only verified recipients, 200/day — request production access "
                                       "in the SES console"))
    quota = acct.get("SendQuota") or {}
    out.append(("ok", "SES sending quota", f"{quota.get('Max24HourSend', 0):,.0f} per 24 h, "
                                           f"{quota.get('MaxSendRate', 0):,.0f}/s, "
                                           f"{quota.get('SentLast24Hours', 0):,.0f} sent in the last 24 h"))
    status = str(acct.get("EnforcementStatus") or "HEALTHY")
    out.append(("ok" if status == "HEALTHY" else "warn", "SES reputation (account)", status))
    if not bool(acct.get("SendingEnabled", True)):
        out.append(("warn", "SES sending", "DISABLED for this account"))
    if domain:
        try:
            ident = sesv2.get_email_identity(EmailIdentity=domain)
        except Exception as exc:
            out.append(("warn", f"SES identity {domain}", f"not found ({type(exc).__name__}): deploy with "
                                                          "-c senderDomain or verify it in the SES console"))
            return out
        dkim = (ident.get("DkimAttributes") or {}).get("Status", "NOT_STARTED")
        out.append(("ok" if dkim == "SUCCESS" else "warn", f"DKIM {domain}", dkim))
        mail_from = ident.get("MailFromAttributes") or {}
        mstat = mail_from.get("MailFromDomainStatus", "NOT_SET")
        out.append(("ok" if mstat == "SUCCESS" else "warn",
                    f"MAIL FROM {mail_from.get('MailFromDomain', '-')}", mstat))
        verified = bool(ident.get("VerifiedForSendingStatus"))
        out.append(("ok" if verified else "warn", f"identity {domain}", "verified" if verified else "not verified yet"))
    return out


def doctor(ctx: Ctx, stack: str | None, domain: str | None, region: str | None) -> int:
    import boto3
    outputs: dict[str, str] = {}
    if stack:
        from cli.bootstrap import BootstrapError, stack_outputs
        try:
            outputs = stack_outputs(stack, region)
        except BootstrapError as exc:
            ctx.warn(f"stack: {exc}")
    if domain:
        outputs["SenderDomain"] = domain
    region = region or boto3.session.Session().region_name or "us-east-1"
    records = dns_records(outputs, region)
    checks = check_dns(records) + ses_report(boto3.client("sesv2", region_name=region),
                                             outputs.get("SenderDomain") or None)
    if ctx.json_output:
        ctx.dump([{"status": s, "check": c, "detail": d} for s, c, d in checks])
    else:
        marks = {"ok": "ok  ", "warn": "WARN", "missing": "MISS", "wrong": "BAD ", "unknown": "??  "}
        for status, check, detail in checks:
            ctx.echo(f"[{marks.get(status, status)}] {check}" + (f" — {detail}" if detail else ""))
        if any(s in ("missing", "wrong") for s, _, _ in checks):
            ctx.echo("")
            print_dns(ctx, records)
    return 1 if any(s in ("missing", "wrong") for s, _, _ in checks) else 0


def dns(ctx: Ctx, stack: str, region: str | None) -> int:
    import boto3

    from cli.bootstrap import stack_outputs
    outputs = stack_outputs(stack, region)
    records = dns_records(outputs, region or boto3.session.Session().region_name or "us-east-1")
    if ctx.json_output:
        ctx.dump(records)
    else:
        print_dns(ctx, records)
    return 0
