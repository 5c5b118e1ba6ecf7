"""ARI event decoding (pure): the shapes Asterisk 22 sends, and what we do with bad ones."""

from __future__ import annotations

import pytest

from gateway.protocols import ari_events as ev

CHANNEL = {
    "id": "1795259147.11", "name": "PJSIP/operator-trunk-0000000b", "state": "Up",
    "caller": {"name": "Иван", "number": "+77011234567"}, "connected": {"name": "", "number": ""},
    "dialplan": {"context": "ecgw-emergency", "exten": "s", "priority": 8, "app_name": "Stasis",
                 "app_data": "ecgw,caller,112"},
    "creationtime": "2026-11-21T11:05:47.402+0000", "language": "ru",
    "channelvars": {"ECGW_SERVICE": "112", "ECGW_INCIDENT": "20261121-110547-1795259147.11", "ECGW_PRES": None},
    "protocol_id": "1-15915@127.0.0.1",  # fields we do not model are ignored
}


def test_stasis_start_carries_caller_args_and_channel_variables() -> None:
    event = ev.decode({"type": "StasisStart", "application": "ecgw", "args": ["caller", "112"], "channel": CHANNEL,
                       "timestamp": "2026-11-21T11:05:47.403+0000", "asterisk_id": "x"})
    assert isinstance(event, ev.StasisStart)
    assert event.args == ["caller", "112"] and event.channel.caller.number == "+77011234567"
    assert event.channel.var("ECGW_INCIDENT") == "20261121-110547-1795259147.11"
    assert event.channel.var("ECGW_PRES") == "" and event.channel.var("MISSING") == ""
    assert ev.channel_id(event) == "1795259147.11"


def test_dial_events_are_routed_by_their_caller() -> None:
    peer = dict(CHANNEL, id="1795259147.12", name="PJSIP/ecgw-pos-pos1-0000000c")
    event = ev.decode({"type": "Dial", "caller": CHANNEL, "peer": peer, "dialstatus": "ANSWER", "dialstring": "x"})
    assert isinstance(event, ev.Dial) and event.dialstatus == "ANSWER"
    assert ev.channel_id(event) == "1795259147.11"
    assert ev.channel_id(ev.Dial(peer=ev.Channel(id="p"))) is None  # a Dial without a caller: not ours


def test_playback_events_are_routed_by_their_target_channel() -> None:
    event = ev.decode({"type": "PlaybackFinished",
                       "playback": {"id": "pb-1", "target_uri": "channel:1795259147.11", "state": "done"}})
    assert ev.channel_id(event) == "1795259147.11"  # type: ignore[arg-type]
    other = ev.decode({"type": "PlaybackFinished", "playback": {"id": "pb-2", "target_uri": "bridge:b1"}})
    assert ev.channel_id(other) is None  # type: ignore[arg-type]


def test_event_types_we_do_not_use_are_skipped() -> None:
    assert ev.decode({"type": "ChannelVarset", "variable": "X", "value": "1"}) is None
    assert ev.decode({"no": "type"}) is None


@pytest.mark.parametrize("raw", [
    {"type": "StasisStart", "args": ["caller"]},  # no channel
    {"type": "StasisStart", "channel": {"name": "no id"}},
    {"type": "ChannelDtmfReceived", "channel": CHANNEL},  # no digit
    {"type": "Dial", "caller": CHANNEL, "peer": "not an object"},
])
def test_malformed_events_are_typed_errors(raw: dict[str, object]) -> None:
    with pytest.raises(ev.EventError):
        ev.decode(raw)


def test_channel_list_decoding() -> None:
    import json

    channels = ev.channels_json(json.dumps([CHANNEL, dict(CHANNEL, id="2", dialplan=None)]).encode())
    assert [c.id for c in channels] == ["1795259147.11", "2"] and channels[1].dialplan is None
    with pytest.raises(ev.EventError):
        ev.channels_json(b'[{"name": "no id"}]')


def test_decode_json_in_one_pass_matches_decode() -> None:
    import json

    text = json.dumps({"type": "StasisStart", "application": "ecgw", "args": ["caller", "112"], "channel": CHANNEL,
                       "timestamp": "2026-12-04T00:00:00.000+0000", "asterisk_id": "x"})
    assert ev.decode_json(text) == ev.decode(json.loads(text))
    assert ev.decode_json(text.encode()) == ev.decode(json.loads(text))
    assert ev.decode_json('{"type": "ChannelVarset", "variable": "X", "value": "1"}') is None
    assert ev.decode_json('{"no": "type"}') is None


@pytest.mark.parametrize("text, says", [
    ('{"type": "ChannelDestroyed"}', "malformed ChannelDestroyed"),
    ('{"type": "Dial", "peer": 5}', "malformed Dial"),
    ("{not json", "not JSON"),
])
def test_decode_json_refuses_what_is_broken(text: str, says: str) -> None:
    with pytest.raises(ev.EventError, match=says):
        ev.decode_json(text)
