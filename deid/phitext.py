"""Identifying values in text: original values as runs of words, and PHI patterns.

The checks of finished outputs (`deid.verify`) read text from header values, notes, file
names, PNG chunks and OCR of the pixels; all of them look for the same two things here.
`Matcher` finds the values of the original headers, whatever the case and punctuation;
the patterns (`data/phi_patterns.toml`) find the shapes of identifying values (phone
numbers, e-mail addresses, written dates ...) whatever the originals held.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Pattern:
    """One shape of identifying value: the words a finding uses and the VRs searched."""

    name: str
    kind: str
    regex: re.Pattern[str]
    vrs: frozenset[str]


@functools.cache
def patterns() -> tuple[Pattern, ...]:
    """The shapes of identifying values, from `data/phi_patterns.toml`."""
    text = (resources.files("deid") / "data" / "phi_patterns.toml").read_text("utf-8")
    return tuple(
        Pattern(name, str(table["kind"]), re.compile(table["regex"], re.I), frozenset(table["vrs"]))
        for name, table in tomllib.loads(text).items()
    )


def pattern_kinds(text: str, vr: str | None = None) -> list[str]:
    """Kinds of the patterns found in `text`; with a VR, only the patterns for that VR."""
    return [p.kind for p in patterns() if (vr is None or vr in p.vrs) and p.regex.search(text)]


def _tokens(text: str) -> list[re.Match[str]]:
    return list(re.finditer(r"[^\W_]+", text.casefold()))


class Matcher:
    """Finds original values in text as whole runs of words, ignoring case and punctuation.

    `DOE^JANE` is found in `Doe, Jane` but `ANN` is not found in `ANNA`, and the same
    UID is found whatever separates its parts. Values are looked up by word runs, so the
    cost does not grow with the number of originals (a study can have thousands of UIDs).
    """

    def __init__(self, originals: Mapping[str, str] | None) -> None:
        self._kinds: dict[tuple[str, ...], str] = {}
        for value, kind in (originals or {}).items():
            words = tuple(m.group() for m in _tokens(value))
            if words:
                self._kinds.setdefault(words, kind)
        self._lengths = sorted({len(words) for words in self._kinds})

    def spans(self, text: str) -> list[tuple[str, int, int]]:
        """(kind, start, end) of every original value in `text`, as character spans."""
        if not self._kinds:
            return []
        found = []
        tokens = _tokens(text)
        words = [m.group() for m in tokens]
        for i in range(len(words)):
            for length in self._lengths:
                if i + length > len(words):
                    break
                kind = self._kinds.get(tuple(words[i : i + length]))
                if kind is not None:
                    found.append((kind, tokens[i].start(), tokens[i + length - 1].end()))
        return found

    def kinds(self, text: str) -> list[str]:
        """The kinds of the original values in `text`, each once."""
        return list(dict.fromkeys(kind for kind, _, _ in self.spans(text)))


def text_kinds(text: str, matcher: Matcher, vr: str | None = None) -> list[str]:
    """Kinds of the original values and of the patterns in `text`, each once."""
    return list(dict.fromkeys([*matcher.kinds(text), *pattern_kinds(text, vr)]))
