"""The gateway's settings: every config Struct and how the config file is loaded and checked.

Importing this package loads no driver library (Asterisk, Telegram, Twilio, SMTP, serial, HTTP): the
drivers take these Structs as given. Files the config points at (scenarios, templates, zones,
rosters, sites) are checked by ``gateway.check_config``, which knows every feature.
"""

from gateway.settings.asterisk import AsteriskConfig
from gateway.settings.base import NAME_RE, PROJECT, Base, project_path
from gateway.settings.callbacks import CallbackConfig, SilenceConfig
from gateway.settings.channels import EmailConfig, SirenLine, SmppConfig, TelegramConfig, TwilioConfig, VoiceConfig
from gateway.settings.cluster import ClusterConfig
from gateway.settings.config import (
    DEFAULT_PATH,
    GatewayConfig,
    HttpConfig,
    PeopleConfig,
    StoreConfig,
    load,
    parse,
    semantic_problems,
)
from gateway.settings.escalation import EscalationConfig, ResponderChannels
from gateway.settings.intake import (
    LINE_1402,
    AlarmConfig,
    AniConfig,
    Category,
    CorrelationConfig,
    DispatchConfig,
    IvrConfig,
    LocationConfig,
    Menu1402,
    Position,
    PositionGroup,
    Report102Config,
    ReportsConfig,
    Service,
    Sms112Config,
)
from gateway.settings.recordings import RecordingsConfig
from gateway.settings.units import UnitsConfig
from gateway.settings.warnings import ChannelSet, SmsRoute, User, WarningsConfig

__all__ = [
    "DEFAULT_PATH", "NAME_RE", "PROJECT", "AlarmConfig", "AniConfig", "AsteriskConfig", "Base", "CallbackConfig",
    "Category", "ClusterConfig", "LINE_1402", "Menu1402", "PositionGroup", "SilenceConfig",
    "ChannelSet", "CorrelationConfig", "DispatchConfig", "EmailConfig", "EscalationConfig", "GatewayConfig",
    "HttpConfig", "IvrConfig", "LocationConfig", "Position", "Report102Config", "ReportsConfig", "ResponderChannels",
    "PeopleConfig", "RecordingsConfig", "Service",
    "SirenLine", "Sms112Config", "SmppConfig", "SmsRoute", "StoreConfig", "TelegramConfig", "TwilioConfig",
    "UnitsConfig", "User", "VoiceConfig", "WarningsConfig", "load", "parse", "project_path", "semantic_problems",
]
