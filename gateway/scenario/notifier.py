"""Deliver one notification to one responder: the first of their channels that works.

A responder lists channels in order of preference; a step lists the channels it may use. The
notification goes to the first channel both allow and falls back to the next when the channel is
missing, down or refuses the message. A voice call asks for a key press and a Telegram message
carries an "acknowledge" button, so the acknowledgement may come back inside the delivery (a
voice call's digit) or later (a button press, an SMS reply, a link in an e-mail).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import msgspec
import trio

from channels.base import Channel, Message
from gateway.scenario.machine import Target
from gateway.scenario.people import Person
from gateway.scenario.texts import ACK_BUTTON, Texts

log = logging.getLogger(__name__)
ACK_DIGIT = "1"


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    channel: str = ""  # the channel that took it; "" when none did
    reply: str = ""
    tried: list[tuple[str, str]] = []  # (channel, why it failed) for each fallback


class Notifier:
    def __init__(self, channels: Mapping[str, Channel], texts: Texts, *, ack_url: str = "",
                 voice_ack_wait_s: float = 10.0, deliver_timeout_s: float = 120.0) -> None:
        self.channels = channels  # "sms", "voice", "telegram", "email": live, may change while running
        self.texts = texts
        self.ack_url = ack_url.rstrip("/")
        self.voice_ack_wait_s = voice_ack_wait_s
        self.deliver_timeout_s = deliver_timeout_s

    async def send(self, person: Person, route: list[str], template: str, facts: dict[str, str],
                   target: Target, *, attempt: int, needs_ack: bool, incident_id: str) -> Delivery:
        tried: list[tuple[str, str]] = []
        for name in route:
            channel = self.channels.get(name)
            if channel is None:
                tried.append((name, "channel not configured or not open"))
                continue
            message = self.message(person, name, template, facts, target, attempt=attempt, needs_ack=needs_ack,
                                   incident_id=incident_id)
            error, reply = await self.deliver(channel, message)
            if not error:
                return Delivery(channel=name, reply=reply, tried=tried)
            tried.append((name, error))
            log.warning("incident %s: %s not reached over %s: %s", incident_id, person.name, name, error)
        return Delivery(tried=tried)

    def message(self, person: Person, channel: str, template: str, facts: dict[str, str], target: Target, *,
                attempt: int, needs_ack: bool, incident_id: str) -> Message:
        link = f"{self.ack_url}/ack/{target.token}" if needs_ack and self.ack_url and channel == "email" else ""
        code = target.code if needs_ack and channel == "sms" else ""
        text = self.texts.render(template, person.language, facts, channel=channel, code=code, link=link,
                                 ack=needs_ack and (channel != "email" or bool(link)))
        options: dict[str, str] = {}
        if needs_ack and channel == "voice":
            options = {"ack_digits": ACK_DIGIT, "ack_wait_s": f"{self.voice_ack_wait_s:g}"}
        elif needs_ack and channel == "telegram":
            options = {"ack_button": f"ack:{target.token}", "ack_label": ACK_BUTTON[person.language]}
        return Message(idempotency_key=f"esc:{target.token}:{attempt}:{channel}", alert_id=incident_id,
                       address=person.address(channel), language=person.language, subject=text.subject,
                       body=text.body, options=options)

    async def deliver(self, channel: Channel, message: Message) -> tuple[str, str]:
        """("", reply) when the channel took the message, else (why, "")."""
        try:
            with trio.fail_after(self.deliver_timeout_s):
                receipts = await channel.deliver([message])
        except trio.TooSlowError:
            return f"no answer from the channel in {self.deliver_timeout_s:g} s", ""
        except Exception as exc:  # a broken driver must cost a fallback, never the scenario
            log.exception("channel %s raised", channel.name)
            return f"channel error: {type(exc).__name__}: {exc}", ""
        if len(receipts) != 1:
            return f"channel returned {len(receipts)} receipts for one message", ""
        receipt = receipts[0]
        if receipt.state == "failed":
            return receipt.error or "failed", ""
        return "", receipt.reply
