"""When a connected caller counts as silent (pure rule, driver-free)."""

from __future__ import annotations

from gateway.intake.silence import KeyPressed, Mark, Prompt, Silence, SpeechAfterSilence


def answered(at: float = 100.0) -> Silence:
    rule = Silence(after_s=20.0, repeat_s=45.0)
    rule.answered(at)
    return rule


def test_nothing_heard_for_after_s_marks_the_call_silent_and_prompts() -> None:
    rule = answered()
    assert rule.due() == 120.0
    assert rule.check(119.9) == []  # early: nothing
    assert rule.check(120.5) == [Mark(20.5), Prompt()]
    assert rule.silent
    assert rule.due() == 165.5  # the prompt again while still silent, never a hang-up
    assert rule.check(165.5) == [Prompt()]  # marked once only


def test_speech_before_the_deadline_means_never_silent() -> None:
    rule = answered()
    assert rule.talking(105.0) == []
    assert rule.due() is None and rule.check(500.0) == [] and not rule.silent
    assert rule.talking(106.0) == []


def test_a_key_after_the_prompt_confirms_once_and_speech_later_ends_it() -> None:
    rule = answered()
    assert rule.key("1") == []  # a menu key before any prompt is not a confirmation
    rule.check(121.0)
    assert rule.key("5") == [KeyPressed("5")]
    assert rule.key("6") == []
    assert rule.talking(130.0) == [SpeechAfterSilence(30.0)]
    assert rule.silent and rule.due() is None  # the mark stays for the dispatcher


def test_not_answered_yet_is_never_silent() -> None:
    rule = Silence(after_s=20.0, repeat_s=45.0)
    assert rule.due() is None and rule.check(1e9) == []
    rule.answered(10.0)
    rule.answered(50.0)  # the first answer counts
    assert rule.due() == 30.0
