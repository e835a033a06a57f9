"""The feedback entry point behind the email's links (a Lambda function URL, auth type NONE).

The links are the credential: each is HMAC-signed and expiring (:mod:`dqad.signing`), so the URL
itself needs no login, and a forged, altered or expired link gets a 403 page that says why.

Two steps, on purpose: **GET shows a confirmation page, POST records the label.** Mail security
scanners (Microsoft Defender Safe Links, Mimecast, Proofpoint...) open every link of an incoming
email to inspect it; if GET recorded the verdict, each alert would silently be labelled twice
("normal" and then "anomaly") before anyone read it. Scanners do not submit forms. The confirmation
page also lets the user add a note ("planned backfill"), stored with the label.

Responses are short self-contained HTML pages with ``no-store`` caching and ``no-referrer``
(the signature must not leak to other sites through the Referer header).

This page is served by the notifier's Lambda image under its own entry point: it imports nothing
heavy (the timestamp on the page is formatted with :mod:`datetime`, :func:`dqad.feedback.write_label`
is plain Python, Powertools' event classes are imported by :func:`handle`), so a click on a link
waits for no data library.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aws_lambda_powertools import Logger

from dqad.feedback import record_first_use, write_label
from dqad.signing import FeedbackClaim, LinkError, verify
from dqad.stage import StageRuntime
from dqad_notifier.domain import feedback_secret_keys

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import LambdaFunctionUrlEvent

logger = Logger(service="dqad-feedback")

MAX_NOTE = 1000
VERDICTS = {
    "normal": ("Expected — not an anomaly", "similar points will no longer be flagged"),
    "anomaly": ("Confirmed incident", "dqad will keep flagging points like this one"),
}
_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}
_CSS = (
    "body{margin:0;background:#f1f5f9;font:15px/1.5 -apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Arial,"
    "sans-serif;color:#0f172a}.box{max-width:560px;margin:48px auto;background:#fff;border:1px solid #e2e8f0;"
    "border-radius:12px;padding:24px 28px}h1{font-size:20px;margin:0 0 12px}.k{color:#64748b}"
    "dl{display:grid;grid-template-columns:110px 1fr;gap:4px 10px;margin:12px 0}dt{color:#64748b}dd{margin:0}"
    "textarea{width:100%;box-sizing:border-box;min-height:64px;font:inherit;padding:6px;border:1px solid #cbd5e1;"
    "border-radius:6px}button{margin-top:12px;background:#0f172a;color:#fff;border:0;border-radius:8px;"
    "padding:9px 16px;font:inherit;font-weight:600;cursor:pointer}.ok{color:#166534}.err{color:#991b1b}"
    ".small{font-size:13px;color:#64748b}"
)


def _page(status: int, title: str, body: str) -> dict:
    doc = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>dqad · {html.escape(title)}</title><style>{_CSS}</style></head><body><div class=box>"
        f"<div class='k small'>dqad · data-quality feedback</div>{body}</div></body></html>"
    )
    return {"statusCode": status, "headers": dict(_HEADERS), "body": doc, "isBase64Encoded": False}


def _load_time(timestamp: str) -> str:
    """``YYYY-MM-DD HH:MM`` of the claim's ISO timestamp (HTML-escaped).

    The notifier issues ``datetime.isoformat()`` strings; a link from an older release may carry
    nanoseconds, which :mod:`datetime` does not parse: its first 16 characters say the same minute.
    """
    try:
        return f"{datetime.fromisoformat(timestamp):%Y-%m-%d %H:%M}"
    except ValueError:
        return html.escape(timestamp[:16].replace("T", " "))


def _point(claim: FeedbackClaim) -> str:
    return (
        f"<dl><dt>dataset</dt><dd>{html.escape(claim.dataset)}</dd>"
        f"<dt>series</dt><dd>{html.escape(claim.series)}</dd>"
        f"<dt>load</dt><dd>{_load_time(claim.timestamp)} UTC</dd>"
        f"<dt>alert run</dt><dd>{html.escape(claim.run_id)}</dd></dl>"
    )


def refused(reason: str) -> dict:
    return _page(403, "link refused", f"<h1 class=err>This link cannot be used</h1><p>{html.escape(reason)}</p>")


def confirm_form(claim: FeedbackClaim, params: dict[str, str]) -> dict:
    verdict, effect = VERDICTS[claim.label]
    hidden = "".join(
        f"<input type=hidden name='{html.escape(k)}' value='{html.escape(v, quote=True)}'>" for k, v in params.items()
    )
    body = (
        f"<h1>Mark this point as: {html.escape(verdict)}?</h1>{_point(claim)}"
        f"<form method=post>{hidden}<label class=small for=note>Note (optional, e.g. “planned backfill”)</label>"
        f"<textarea id=note name=note maxlength={MAX_NOTE}></textarea>"
        f"<button type=submit>Confirm: {html.escape(verdict.lower())}</button></form>"
        f"<p class=small>Your answer teaches dqad: {html.escape(effect)}. "
        f"This link is valid until {claim.expires_at:%Y-%m-%d %H:%M} UTC.</p>"
    )
    return _page(200, "confirm", body)


def already_used(claim: FeedbackClaim) -> dict:
    verdict, _effect = VERDICTS[claim.label]
    body = (
        f"<h1 class=err>This link was already used</h1>{_point(claim)}"
        f"<p>Its verdict ({html.escape(verdict.lower())}) was recorded the first time it was used; "
        "nothing was changed now. A link records once: if this was not you, tell your data team.</p>"
    )
    return _page(409, "already used", body)


def recorded(claim: FeedbackClaim) -> dict:
    verdict, effect = VERDICTS[claim.label]
    body = (
        f"<h1 class=ok>Thank you — recorded as: {html.escape(verdict.lower())}</h1>{_point(claim)}"
        f"<p>From the next run of {html.escape(claim.dataset)}, {html.escape(effect)}.</p>"
        "<p class=small>Changed your mind? Use the other link in the email: the latest answer wins. "
        "Each link records once.</p>"
    )
    return _page(200, "recorded", body)


def _form_fields(event: LambdaFunctionUrlEvent) -> dict[str, str]:
    raw = event.body or ""
    if event.is_base64_encoded:
        raw = base64.b64decode(raw).decode("utf-8", errors="replace")
    return dict(parse_qsl(raw, keep_blank_values=True))


def handle(rt: StageRuntime, raw_event: dict[str, Any]) -> dict:
    """One HTTP request of the function URL: GET → confirmation page, POST → record the label."""
    # Here, not at module level: the package imports every event class, and the SQS entry point
    # (which imports this module through the handler) never serves a page.
    from aws_lambda_powertools.utilities.data_classes import LambdaFunctionUrlEvent

    event = LambdaFunctionUrlEvent(raw_event)
    method = (event.request_context.http.method or "GET").upper()
    if method not in ("GET", "POST"):
        return _page(405, "method not allowed", "<h1 class=err>Method not allowed</h1>")
    params = dict(event.query_string_parameters or {})
    note = ""
    if method == "POST":
        form = _form_fields(event)
        note = form.pop("note", "")[:MAX_NOTE]
        params.update(form)
    signed = {k: v for k, v in params.items() if k in ("d", "s", "t", "l", "r", "e", "v", "sig")}
    # The page checks links, it never makes one: the secret alone is enough (Terraform gives this
    # function no DQAD_FEEDBACK_URL, which would be its own URL).
    keys = feedback_secret_keys(rt, rt.settings.feedback_secret_arn) if rt.settings.feedback_secret_arn else None
    if keys is None:
        logger.error("feedback request but DQAD_FEEDBACK_SECRET_ARN is not configured")
        return _page(503, "unavailable", "<h1 class=err>Feedback is not configured on this deployment.</h1>")
    try:
        claim = verify(signed, keys)
    except LinkError as exc:
        logger.warning("feedback link refused", extra={"reason": str(exc), "method": method})
        return refused(str(exc))
    if method == "GET":
        return confirm_form(claim, signed)
    use = {"run_id": claim.run_id, "series": claim.series, "timestamp": claim.timestamp, "label": claim.label}
    if not record_first_use(rt.storage, claim.dataset, signed["sig"], use):
        logger.warning("feedback link used again", extra={"dataset": claim.dataset, "label": claim.label})
        return already_used(claim)
    uri = write_label(
        rt.storage,
        claim.dataset,
        claim.series,
        claim.timestamp,
        claim.label,
        note=note,
        by=f"email link ({claim.run_id})",
    )
    logger.info("feedback recorded", extra={"dataset": claim.dataset, "label": claim.label, "uri": uri})
    return recorded(claim)
