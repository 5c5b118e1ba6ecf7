"""Replay keys: what makes a report sent again recognisable as the same report. Pure: no I/O.

Providers send again what they think we did not take: Twilio retries a webhook that timed out,
an SMSC resends a deliver_sm whose deliver_sm_resp it did not get, Telegram hands out a batch
again when the bot crashed before its next ``getUpdates`` confirmed it, and a gateway that
crashed between storing an alarm and filing its event file reads that file again. Each source
names its reports differently; each function here turns one report into one key (prefixed by
the source, so keys of different sources never meet), or "" when the report carries nothing that
tells it apart from a genuinely new one. A report without a key is always taken: a second text
"help" is a new text unless the provider says it is the same message.

The intake keeps the keys it has taken (``incident.store``'s ``seen`` table) and answers a replay
as success, so the sender stops sending, without touching the incident again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from gateway.protocols.aml_fields import AmlReport
from gateway.protocols.contact_id import ContactIdEvent


def twilio_message(form: Mapping[str, str]) -> str:
    """An inbound message Twilio POSTs to our webhook: its MessageSid (SmsSid in old forms)."""
    sid = form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid") or ""
    return f"twilio:{sid}" if sid else ""


def twilio_status(sid: str, status: str) -> str:
    """A status callback about one of our messages: the message's SID and the status it reports
    (Twilio calls once per status; the same pair again is a retry)."""
    return f"twilio-status:{sid}:{status}" if sid and status else ""


def smpp_message(message_id: str) -> str:
    """A mobile-originated deliver_sm: the SMSC's message id, when the SMSC sends one."""
    return f"smpp:{message_id}" if message_id else ""


def telegram_update(bot_token: str, update: object) -> str:
    """A Bot API update: its ``update_id``, which counts per bot (the id before the token's colon)."""
    update_id = update.get("update_id") if isinstance(update, dict) else None
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        return ""
    return f"telegram:{bot_token.partition(':')[0]}:{update_id}"


def contact_id(event: ContactIdEvent, reported_at: str) -> str:
    """An alarm panel's event: account, qualifier, code, partition and zone or user (not the raw
    digits, which differ between the DTMF and hex notations of one message), at the time the
    receiver or the panel stamped it. Without a time two alarms of one zone cannot be told apart
    from one sent twice, so there is no key."""
    if not reported_at.strip():
        return ""
    return (f"contact-id:{event.account}:{event.qualifier}:{event.code}:{event.partition}:{event.zone_or_user}:"
            f"{reported_at.strip()}")


def panel_time(when: datetime) -> str:
    """How a panel's own timestamp (``POST /alarms`` ``time``) is written into its key: UTC, ISO 8601."""
    return when.astimezone(UTC).isoformat()


def aml(report: AmlReport, number: str) -> str:
    """An AML report (by SMS or HTTPS): the handset (E.164 ``number``) and the time and place of its
    fix. A handset sends a new report for a new fix, so the same fix again is the same report."""
    return (f"aml:{report.transport}:{number}:{report.positioned_at.astimezone(UTC).isoformat()}:"
            f"{report.lat}:{report.lon}:{report.radius_m}")
