"""Pure delivery policy: back-off, breaker, token bucket, routing and fail-over order."""

from __future__ import annotations

import random

from gateway.warning.policy import Breaker, Router, TokenBucket, backoff_s


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (10, 60.0)):
        values = [backoff_s(attempt, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= v <= ceiling for v in values)
        assert max(values) - min(values) > ceiling / 10  # jitter spreads retries


def test_breaker_opens_after_consecutive_failures_and_half_opens() -> None:
    b = Breaker(threshold=3, cooldown_s=10)
    assert not b.record(False, 0) and not b.record(False, 1)
    assert b.record(False, 2, "421 service not available")  # third failure opens it
    assert b.is_open(5) and b.state == "down" and "421" in b.reason
    assert not b.is_open(12.5)  # cool-down over: the next batch probes
    assert b.record(True, 13) and b.state == "up" and b.failures == 0


def test_breaker_success_resets_the_count() -> None:
    b = Breaker(threshold=2)
    b.record(False, 0)
    b.record(True, 1)
    assert not b.record(False, 2)
    assert b.state == "up"


def test_token_bucket_paces_and_pauses_on_retry_after() -> None:
    bucket = TokenBucket(30)
    granted, _ = bucket.take(100, 0.0)
    assert granted == 3  # a tenth of a second's worth as burst
    granted, wait = bucket.take(100, 0.0)
    assert granted == 0 and 0 < wait <= 1 / 30 + 1e-9
    total = sum(bucket.take(100, t / 100)[0] for t in range(1, 101))
    assert 28 <= total <= 31  # ~30 per second
    bucket.pause(2.0, 1.0)
    assert bucket.take(1, 2.5)[0] == 0  # still inside the provider's retry-after
    assert bucket.take(1, 3.2)[0] == 1


ROW = (7, "+77011234567", "a@b.kz", "12345", "kk", "sms;telegram;email")


def test_router_follows_preference_and_sms_routes() -> None:
    usable = {"smpp": True, "twilio": True, "telegram": True, "email": True}
    r = Router([("+7", "smpp"), ("+", "twilio")], usable, ("sms", "email", "telegram"))
    assert r.channel(ROW, exercise=False) == "smpp"
    assert r.channel(ROW, exercise=False, after="smpp") == "twilio"  # SMS over the other route first
    assert r.channel(ROW, exercise=False, after="twilio") == "telegram"
    assert r.channel(ROW, exercise=False, after="email") is None
    usable["smpp"] = False
    assert r.channel(ROW, exercise=False) == "twilio"


def test_router_sends_exercises_only_to_drill_instances() -> None:
    usable = {"smpp": True, "drill:email": True}
    r = Router([("+", "smpp")], usable, ("sms", "email", "telegram"))
    assert r.channel(ROW, exercise=True) == "drill:email"
    assert r.channel((1, "", "", "", "ru", "sms"), exercise=True) is None


def test_router_skips_kinds_without_an_address_or_not_chosen() -> None:
    usable = {"smpp": True, "telegram": True, "email": True}
    r = Router([("+", "smpp")], usable, ("email", "telegram"))
    assert r.channel(ROW, exercise=False) == "telegram"  # sms not chosen for this alert
    assert r.channel((1, "", "", "", "ru", "telegram;email"), exercise=False) is None
