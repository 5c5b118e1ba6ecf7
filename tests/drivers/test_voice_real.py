"""Voice call-out: the driver -> ARI -> Asterisk (the tests' own instance) -> ecgw-callout trunk ->
sipp residents' phones on loopback, with an RTP listener counting the audio each call received."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from channels.base import Language, Message, Receipt
from channels.voice import VoiceChannel, dial_string, open_voice, unanswered
from channels.voice_tts import MAX_CHARS, Synthesizer, asterisk_view, clean, file_key, text_problem, wav_duration
from gateway.asterisk import sandbox
from gateway.errors import ConfigError
from gateway.settings.channels import VoiceConfig
from gateway.settings.channels import voice_problems as config_problems
from sim import sipp_xml as scenario
from sim.lab import AsteriskInstance, Residents, free_port, residents, rtp_payload_len

TEXT = {"ru": "Внимание! Угроза наводнения.", "kk": "Назар аударыңыз! Су тасқыны.", "en": "Attention! Flood warning."}


def message(number: str, language: Language = "ru", body: str | None = None, key: str = "") -> Message:
    return Message(idempotency_key=key or f"alert-1/voice/{number}", alert_id="alert-1", address=number,
                   language=language, body=TEXT[language] if body is None else body)


def voice_config(asterisk: AsteriskInstance, trunk_uri: str, **overrides: Any) -> VoiceConfig:
    a = asterisk.cfg.asterisk
    values: dict[str, Any] = {"ari_port": a.http_port, "ari_user": a.ari_user, "ari_password": a.ari_password,
                              "trunk_uri": trunk_uri, "ring_timeout_s": 2, "pause_s": 0.3, "max_concurrent_calls": 4}
    return VoiceConfig(**(values | overrides))


@asynccontextmanager
async def callout(asterisk: AsteriskInstance, workdir: Path, cfg: dict[str, Any] | None = None,
                  **phones: Any) -> AsyncIterator[tuple[VoiceChannel, Residents]]:
    box = sandbox.locate(asterisk.cfg)
    async with residents(workdir / "residents", **phones) as found:
        # As the gateway passes it: the instance's sounds directory; the chroot view is worked out.
        async with open_voice(voice_config(asterisk, found.uri, **(cfg or {})),
                              sounds_dir=box.host_dir / "sounds") as channel:
            yield channel, found


async def wait_no_callout_channels(asterisk: AsteriskInstance) -> None:
    """Every call-out channel is gone from Asterisk (hang-ups take a moment to complete)."""
    with trio.fail_after(3):
        while "ecgw-callout" in asterisk.cli("core show channels concise"):
            await trio.sleep(0.1)


def assert_failed(receipt: Receipt, retryable: bool, *words: str) -> None:
    assert receipt.state == "failed" and receipt.retryable is retryable, receipt
    for word in words:
        assert word in receipt.error, receipt


# -- real tier --------------------------------------------------------------------------------------


async def test_answered_number_hears_the_warning_twice(asterisk: AsteriskInstance, tmp_path: Path) -> None:
    number = "+77010000001"
    with trio.fail_after(30):
        async with callout(asterisk, tmp_path) as (voice, phones):
            assert (await voice.health()).up
            started = trio.current_time()
            [receipt] = await voice.deliver([message(number)])
            elapsed = trio.current_time() - started
    assert receipt.state == "delivered" and receipt.provider_id.startswith("callout-"), receipt
    duration = wav_duration(sandbox.locate(asterisk.cfg).host_dir / "sounds" / "callout" /
                            f"{file_key(clean(TEXT['ru']), 'ru')}.wav")
    audio = phones.audio(number)
    # Both repetitions reached the phone as RTP, each to its end (G.711: 8000 bytes a second).
    assert 2 * duration - 0.3 <= audio.audio_s <= 2 * duration + 0.3, (audio, duration)
    assert audio.last - audio.first >= 2 * duration - 0.3
    assert elapsed >= 2 * duration and len(phones.invites(number)) == 1
    assert [line.kind for line in phones.lines()] == ["INVITE", "ANSWERED"]
    await wait_no_callout_channels(asterisk)


async def test_unanswered_number_is_retryable_after_the_ring_timeout(asterisk: AsteriskInstance,
                                                                     tmp_path: Path) -> None:
    number = "+77010000408"
    with trio.fail_after(20):
        async with callout(asterisk, tmp_path, silent=[number]) as (voice, phones):
            started = trio.current_time()
            [receipt] = await voice.deliver([message(number)])
            elapsed = trio.current_time() - started
    assert_failed(receipt, True, "no answer", "cause 19")
    assert 1.8 <= elapsed <= 4.0, elapsed
    assert phones.audio(number).packets == 0 and len(phones.invites(number)) == 1


async def test_busy_number_is_retryable_with_the_cause(asterisk: AsteriskInstance, tmp_path: Path) -> None:
    number = "+77010000486"
    with trio.fail_after(20):
        async with callout(asterisk, tmp_path, reject={number: 486}) as (voice, _phones):
            started = trio.current_time()
            [receipt] = await voice.deliver([message(number)])
            elapsed = trio.current_time() - started
    assert_failed(receipt, True, "busy", "cause 17")
    assert elapsed < 1.5


async def test_unallocated_and_malformed_numbers_are_not_retried(asterisk: AsteriskInstance, tmp_path: Path) -> None:
    unallocated = "+77010000404"
    with trio.fail_after(20):
        async with callout(asterisk, tmp_path, reject={unallocated: 404}) as (voice, phones):
            receipts = await voice.deliver([message(unallocated), message("87010000001"), message("+7701 000"),
                                            message("+77010000002", body="   "),
                                            message("+77010000003", body="x" * (MAX_CHARS + 1))])
    assert_failed(receipts[0], False, "unallocated number", "cause 1")
    assert_failed(receipts[1], False, "not an E.164 number")
    assert_failed(receipts[2], False, "not an E.164 number")
    assert_failed(receipts[3], False, "empty")
    assert_failed(receipts[4], False, "characters")
    assert [line.fields["number"] for line in phones.lines()] == [unallocated]  # the rest were never dialled


async def test_hanging_up_during_the_message_is_retryable(asterisk: AsteriskInstance, tmp_path: Path) -> None:
    number = "+77010000111"
    with trio.fail_after(20):
        async with callout(asterisk, tmp_path, hang_up_after_ms={number: 700}) as (voice, phones):
            [receipt] = await voice.deliver([message(number, "en")])
    assert_failed(receipt, True, "repetition 1 of 2")
    assert 0.4 <= phones.audio(number).audio_s <= 1.2


async def test_several_numbers_at_once_within_the_concurrency_limit(asterisk: AsteriskInstance,
                                                                    tmp_path: Path) -> None:
    answered = [f"+7701000002{i}" for i in range(5)]
    busy, silent = "+77010000486", "+77010000408"
    languages: list[Language] = ["kk", "ru", "en", "kk", "ru"]
    batch = [message(n, lang) for n, lang in zip(answered, languages, strict=True)]
    batch += [message(busy), message(silent)]
    with trio.fail_after(40):
        async with callout(asterisk, tmp_path, {"max_concurrent_calls": 3, "repeats": 1, "max_calls_per_second": 10},
                           reject={busy: 486}, silent=[silent]) as (voice, phones):
            receipts = await voice.deliver(batch)
    assert [r.idempotency_key for r in receipts] == [m.idempotency_key for m in batch]
    by_number = {m.address: r for m, r in zip(batch, receipts, strict=True)}
    assert all(by_number[n].state == "delivered" for n in answered), receipts
    assert_failed(by_number[busy], True, "busy")
    assert_failed(by_number[silent], True, "no answer")
    await wait_no_callout_channels(asterisk)
    assert len({by_number[n].provider_id for n in answered}) == len(answered)
    for number in answered:
        assert phones.audio(number).audio_s > 1.0, (number, phones.audio(number))
    starts = sorted(line.wall for line in phones.lines() if line.kind == "INVITE")
    assert len(starts) == len(batch)
    assert min(b - a for a, b in pairwise(starts)) >= 0.09, starts  # 10 call attempts a second
    # Calls overlapped, but never more than three were speaking at once.
    spans = [(phones.audio(n).first, phones.audio(n).last) for n in answered]
    assert 2 <= max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans) <= 3, spans


class CuttableProxy:
    """TCP to Asterisk's HTTP port through us, so a test can cut ARI's connections (as when
    Asterisk restarts) while Asterisk itself keeps running for the other tests."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.scopes: list[trio.CancelScope] = []
        self.websockets = 0  # ARI event connections opened through us

    async def handle(self, client: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:
            self.scopes.append(scope)
            async with client, await trio.open_tcp_stream("127.0.0.1", self.target_port) as server:
                first = await client.receive_some()
                self.websockets += b"upgrade: websocket" in first.lower()
                await server.send_all(first)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.pump, client, server, scope)
                    nursery.start_soon(self.pump, server, client, scope)

    @staticmethod
    async def pump(source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope) -> None:
        try:
            async for data in source:
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()  # one side closed: close both

    def cut(self) -> None:
        for scope in self.scopes:
            scope.cancel()
        self.scopes.clear()


async def test_connection_cut_fails_the_ringing_call_then_reconnects(asterisk: AsteriskInstance,
                                                                     tmp_path: Path) -> None:
    proxy = CuttableProxy(asterisk.cfg.asterisk.http_port)
    port = free_port(socket.SOCK_STREAM)
    ringing, number = "+77010000408", "+77010000031"
    receipts: list[Receipt] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_tcp, proxy.handle, port)
            async with residents(tmp_path / "residents", silent=[ringing]) as phones, \
                    open_voice(voice_config(asterisk, phones.uri, ari_port=port, repeats=1, ring_timeout_s=20),
                               sounds_dir=sandbox.locate(asterisk.cfg).host_dir / "sounds") as voice:
                assert (await voice.health()).up and proxy.websockets == 1

                async def call_ringing() -> None:
                    receipts.extend(await voice.deliver([message(ringing)]))

                async with trio.open_nursery() as calls:
                    calls.start_soon(call_ringing)
                    while not phones.invites(ringing):
                        await trio.sleep(0.05)
                    proxy.cut()
                while proxy.websockets < 2 or not (await voice.health()).up:
                    await trio.sleep(0.05)
                receipts.extend(await voice.deliver([message(number, "kk")]))
            nursery.cancel_scope.cancel()
    assert_failed(receipts[0], True, "connection lost while ringing")
    assert receipts[1].state == "delivered", receipts[1]
    assert phones.audio(number).audio_s > 1.0
    await wait_no_callout_channels(asterisk)  # the call ringing when the connection went was hung up


async def test_health_and_calls_when_ari_is_unreachable(tmp_path: Path) -> None:
    port = free_port()
    cfg = VoiceConfig(ari_port=port, trunk_uri="sip:127.0.0.1:9", ring_timeout_s=2)
    with trio.fail_after(10):
        async with open_voice(cfg, sounds_dir=tmp_path / "sounds") as voice:
            health = await voice.health()
            [receipt] = await voice.deliver([message("+77010000001")])
    assert not health.up and "unreachable" in health.detail, health
    assert_failed(receipt, True, "ARI unreachable")


async def test_health_when_ari_refuses_our_credentials(asterisk: AsteriskInstance, tmp_path: Path) -> None:
    cfg = voice_config(asterisk, "sip:127.0.0.1:9", ari_password="wrong-password")
    with trio.fail_after(10):
        async with open_voice(cfg, sounds_dir=tmp_path / "sounds") as voice:
            health = await voice.health()
    assert not health.up and "401" in health.detail, health


# -- pure parts -------------------------------------------------------------------------------------


def test_invalid_config_is_refused_with_every_problem() -> None:
    cfg = VoiceConfig(trunk_uri="tel:+7701", ring_timeout_s=0, repeats=0, caller_id="a,b", app="Bad App")
    problems = config_problems(cfg)
    assert len(problems) == 5 and all(p.startswith("voice.") for p in problems), problems
    assert config_problems(VoiceConfig()) == []
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"trunk": "sip:x"}, VoiceConfig)


async def test_open_voice_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        async with open_voice(VoiceConfig(max_concurrent_calls=0), sounds_dir=tmp_path):
            pass


def test_dial_string_puts_the_number_at_the_trunk() -> None:
    cfg = VoiceConfig(trunk_uri="sip:10.1.2.3:5060;transport=tcp")
    assert dial_string(cfg, "+77012345678") == "PJSIP/ecgw-callout/sip:+77012345678@10.1.2.3:5060;transport=tcp"


def test_causes_decide_whether_to_retry() -> None:
    assert unanswered(17, "User busy", "BUSY") == ("busy (cause 17 User busy)", True)
    assert unanswered(19, "User alerting, no answer", "NOANSWER")[1] is True
    assert unanswered(1, "Unallocated (unassigned) number", "CHANUNAVAIL")[1] is False
    assert unanswered(28, "Invalid number format", "")[1] is False
    assert unanswered(34, "Circuit/channel congestion", "CONGESTION")[1] is True
    assert unanswered(0, "", "") == ("call failed (no cause)", True)
    assert unanswered(99, "Strange", "") == ("Strange (cause 99 Strange)", True)


def test_spoken_text_is_cleaned_and_keyed_by_content() -> None:
    assert clean("  Внимание!\n\tНаводнение\u202e. ") == "Внимание! Наводнение ."
    assert clean("--help") == " --help"  # never an espeak-ng option
    assert file_key("a", "ru") == file_key("a", "ru") != file_key("a", "kk")
    assert text_problem("hello", "de") == "no voice for language 'de'"
    assert text_problem("hello", "en") is None


def test_speech_files_are_named_as_asterisk_sees_them(tmp_path: Path) -> None:
    root = tmp_path / "asterisk-sid"
    (root / "usr" / "sbin").mkdir(parents=True)
    (root / "usr" / "sbin" / "asterisk").touch()
    sounds = root / "srv" / "ecgw" / "t1" / "sounds"
    assert asterisk_view(sounds) == "/srv/ecgw/t1/sounds"  # inside its chroot
    assert asterisk_view(tmp_path / "sounds") == str(tmp_path / "sounds")  # a system Asterisk
    assert Synthesizer(sounds).asterisk_dir == "/srv/ecgw/t1/sounds/callout"
    assert Synthesizer(sounds, "/elsewhere/").asterisk_dir == "/elsewhere/callout"


def test_resident_scenario_branches_by_number() -> None:
    xml = scenario.resident(reject={"+77010000486": 486}, silent=["+77010000408"],
                            hang_up_after_ms={"+77010000111": 700}, rtp_port=40000)
    assert 'regexp="^INVITE sip:(\\+77010000486)@"' in xml and "SIP/2.0 486 Busy Here" in xml
    assert 'regexp="^INVITE sip:(\\+77010000408)@"' in xml and "487 Request Terminated" in xml
    assert '<pause milliseconds="700"/>' in xml and "m=audio 40000 RTP/AVP" in xml


def test_rtp_payload_length() -> None:
    header = bytes([0x80, 0x00]) + bytes(10)
    assert rtp_payload_len(header + bytes(160)) == 160
    assert rtp_payload_len(bytes([0x91, 0x00]) + bytes(10) + bytes(4) + bytes([0, 0, 0, 1]) + bytes(4)
                           + bytes(160)) == 160
    assert rtp_payload_len(b"\x00" * 172) == 0  # not RTP version 2


async def test_speech_files_stay_readable_by_asterisk_under_the_gateways_umask(tmp_path: Path) -> None:
    """`gateway run` has umask 027: a call-out directory it created was 0750 root's own, Asterisk's account
    could not enter it, and every later call-out played nothing (found by the whole suite in CI)."""
    import os
    import stat

    from channels.voice_tts import Synthesizer

    old = os.umask(0o027)
    try:
        speech = await Synthesizer(tmp_path / "sounds", "/srv/x/sounds").speech("Сынақ хабарлама", "kk")
    finally:
        os.umask(old)
    assert stat.S_IMODE(speech.path.parent.stat().st_mode) == 0o755
    assert stat.S_IMODE(speech.path.stat().st_mode) == 0o644
