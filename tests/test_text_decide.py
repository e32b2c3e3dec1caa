"""Per-line decisions: cover the line whole, keep only what a clinician needs."""

from __future__ import annotations

import pytest

from deid.text.decide import Matcher, decide, tokenize
from deid.text.policy import TextPolicy
from deid.text.read import Reading

POLICY = TextPolicy(frozenset({"MYLABEL"}))
MATCHER = Matcher.build({"DOE^JOHN": "patient name", "19520314": "birth date"})


def sure(text: str, confidence: float = 0.99) -> Reading:
    return Reading(text, tuple(confidence for _ in text))


@pytest.mark.parametrize(
    ("text", "decision", "reason"),
    [
        ("L", "keep", "kept marker"),
        ("LIVER", "keep", "kept marker"),
        ("SAG LIVER", "keep", "kept marker"),
        ("MYLABEL", "keep", "kept marker"),
        ("120 kV 2.5 mAs", "keep", "technical text"),
        ("W:400 L:40", "keep", "technical text"),
        ("C5-1", "keep", "technical text"),
        ("LIVER DOE JOHN", "redact", "PHI match: patient name"),
        ("DOB 03/14/1952", "redact", "PHI match: birth date"),
        ("12:41:07", "redact", "pattern: time"),
        ("ID 12345678", "redact", "pattern: record number"),
        ("LAKESIDE CLINIC", "redact", "text"),
        ("LIVER 12345", "redact", "text"),
    ],
)
def test_a_confident_line(text: str, decision: str, reason: str) -> None:
    verdict = decide(sure(text), POLICY, MATCHER)
    assert verdict is not None
    assert (verdict.decision, verdict.reason) == (decision, reason)
    if decision == "redact":
        assert verdict.marker is None


def test_a_lone_character_identifies_no_one() -> None:
    assert decide(sure("Q"), POLICY, MATCHER) is None
    assert decide(sure("L", 0.2), POLICY, MATCHER) is None


def test_text_read_without_confidence_is_covered_except_in_an_image_region() -> None:
    shaky = Reading("SMXTH", (0.9, 0.4, 0.5, 0.6, 0.5))
    verdict = decide(shaky, POLICY, MATCHER)
    assert verdict is not None and verdict.reason == "unreadable text"
    assert decide(shaky, POLICY, MATCHER, protected=True) is None


def test_phi_only_keeps_other_text_but_not_phi() -> None:
    policy = TextPolicy(frozenset(), mode="phi-only")
    kept = decide(sure("LAKESIDE CLINIC"), policy, MATCHER)
    assert kept is not None and kept.decision == "keep"
    covered = decide(sure("DOE JOHN"), policy, MATCHER)
    assert covered is not None and covered.decision == "redact"


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("W:400 L:40", ["W", "400", "L", "40"]), ("(R) 12/03/1950,", ["R", "12/03/1950"])],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens
