"""The text policy a profile sets, and the regions the text search decides on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from deid.boxes import Box
from deid.errors import ProfileError

Mode = Literal["all-text", "phi-only"]
_MODES: tuple[Mode, ...] = ("all-text", "phi-only")
ENGINES = ("detector",)


@dataclass(frozen=True)
class TextPolicy:
    """What to do with text found in the pixels; built from a profile's `[text]` table.

    `allow_list` adds to the shipped vocabulary of kept words (markers, labels,
    technical terms), compared upper-case. `padding` is the least margin in pixels
    around a covered line. `min_confidence` (0-100) is the probability below which a
    character counts as unreadable: a line holding one is covered whatever it seems to
    say. `mode` is the policy: "all-text" (cover every line that is not all kept
    words) or "phi-only" (cover what matches an identifying value or pattern).
    """

    allow_list: frozenset[str]
    padding: int = 4
    min_confidence: float = 60.0
    mode: Mode = "all-text"

    def __post_init__(self) -> None:
        normal = frozenset(entry.strip().upper() for entry in self.allow_list)
        object.__setattr__(self, "allow_list", normal - {""})
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0, not {self.padding}")
        if not 0 <= self.min_confidence <= 100:
            raise ValueError(f"min_confidence must be within 0..100, not {self.min_confidence}")
        if self.mode not in _MODES:
            raise ValueError(f"unknown text policy {self.mode!r}")

    @classmethod
    def from_profile(cls, section: Mapping[str, Any]) -> TextPolicy:
        """Read `allow_list`, `padding`, `min_confidence`, `policy` and `engine`.

        Missing keys take the defaults. Other keys of the table belong to other readers
        and are ignored. Raises `ProfileError` for a value of the wrong type, an
        unknown policy or engine.
        """
        allow = section.get("allow_list", [])
        if not isinstance(allow, list | tuple) or not all(isinstance(a, str) for a in allow):
            raise ProfileError("text.allow_list must be a list of strings")
        padding = section.get("padding", cls.padding)
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ProfileError("text.padding must be a whole number of pixels, 0 or more")
        confidence = section.get("min_confidence", cls.min_confidence)
        if isinstance(confidence, bool) or not isinstance(confidence, int | float):
            raise ProfileError("text.min_confidence must be a number from 0 to 100")
        if not 0 <= confidence <= 100:
            raise ProfileError("text.min_confidence must be a number from 0 to 100")
        mode = section.get("policy", "all-text")
        if mode not in _MODES:
            raise ProfileError(f"text.policy {mode!r} is not known; use 'all-text' or 'phi-only'")
        engine = section.get("engine", "detector")
        if engine not in ENGINES:
            raise ProfileError(f"text.engine {engine!r} is not known; use 'detector'")
        return cls(frozenset(allow), padding, float(confidence), mode)


Decision = Literal["redact", "keep"]


@dataclass(frozen=True)
class Region:
    """A rectangle of the image and what happens to it.

    `reason` says why: "kept marker", "technical text", "text without PHI" (kept), or
    "text", "unreadable text", "PHI match: <kind>", "pattern: <name>", "fixed region"
    (covered). `marker` is the kept text when it is all vocabulary words (such as "L"
    or "LIVER"); None for every covered region, so a Region never carries identifying
    text.
    """

    box: Box
    decision: Decision
    reason: str
    marker: str | None = field(default=None)


def redaction_boxes(regions: Iterable[Region]) -> list[Box]:
    """The boxes to black out: every region whose decision is "redact"."""
    return [region.box for region in regions if region.decision == "redact"]
