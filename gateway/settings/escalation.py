"""``[escalation]``: categories and scenarios, the responders directory, their channels, the SLA."""

from __future__ import annotations

from gateway.settings.base import Base
from gateway.settings.channels import EmailConfig, SmppConfig, TelegramConfig, TwilioConfig, VoiceConfig


class ResponderChannels(Base, frozen=True):
    """How responders are reached. SMS goes through SMPP when configured, else Twilio. The Telegram
    bot here is the responders' own (it carries the acknowledge buttons), not the public one."""

    smpp: SmppConfig | None = None
    twilio: TwilioConfig | None = None
    telegram: TelegramConfig | None = None
    email: EmailConfig | None = None
    voice: VoiceConfig | None = None


class EscalationConfig(Base, frozen=True):
    enabled: bool = True
    categories_file: str = "config/categories.toml"
    scenarios_dir: str = "config/scenarios"
    responders_file: str = "config/responders.toml"
    templates_dir: str = "alert_templates/responders"
    timezone: str = "Asia/Almaty"
    answer_sla_s: float = 15.0  # NENA: 90 % of calls answered within 15 s
    sla_scenario: str = "answer_sla"
    unclassified_after_s: float = 60.0
    # A caller's own IVR choice starts the category's scenario at once (units move while the caller still
    # waits for a dispatcher); false: only a dispatcher's classification does.
    start_on_ivr_category: bool = True
    ack_url: str = ""  # public base URL of this gateway for e-mailed acknowledgement links
    voice_ack_wait_s: float = 10.0
    warning_language_default: str = "ru"
    channels: ResponderChannels = ResponderChannels()


def escalation_problems(cfg: EscalationConfig, source: str) -> list[str]:
    p: list[str] = []
    if not 1 <= cfg.answer_sla_s <= 600:
        p.append(f"{source}: escalation.answer_sla_s: expected 1-600 s")
    if not 5 <= cfg.unclassified_after_s <= 3600:
        p.append(f"{source}: escalation.unclassified_after_s: expected 5-3600 s")
    if cfg.ack_url and not cfg.ack_url.startswith(("http://", "https://")):
        p.append(f"{source}: escalation.ack_url: expected an http(s) URL")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(cfg.timezone)
    except (KeyError, ValueError):
        p.append(f"{source}: escalation.timezone: unknown time zone {cfg.timezone!r}")
    return p
