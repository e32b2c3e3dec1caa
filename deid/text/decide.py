"""What to do with one line of read text: keep it, or cover it whole.

A line is covered whole when anything in it is to be covered, never in part:

- it matches an identifying value of the original header (fuzzily, to survive reading
  errors) or a PHI pattern (dates, times, IDs, phone numbers ...): always covered;
- under the `all-text` policy, any token that is not in the vocabulary a clinician
  needs (markers, anatomy and view labels, technical words and numbers, in
  `deid/data/text_vocabulary.toml`, plus the profile's allow-list) covers the line;
- text confirmed as text (two letters or digits or more, read with some confidence)
  but not read with the policy's confidence is covered (fail closed on text), except
  inside an ultrasound image region, where anatomy is never covered on suspicion.

A lone character identifies no one and is never covered by itself. Recognised text
never leaves this module: a decision names the kind of value or pattern, never the text.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

from deid.text.policy import Decision, TextPolicy
from deid.text.read import Reading

_GUESS = 0.3  # a character read with less probability than this is a guess
_CONFIRMED = 0.3  # mean character probability from which a reading is text at all

# Characters a reader confuses, mapped to one representative on both sides of a match.
_CONFUSABLE = str.maketrans("0Q1L5826", "OOIISBZG")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_NAME_KINDS = ("patient name", "person name")


@dataclass(frozen=True)
class Verdict:
    """The decision on one line and why: a reason never holds the text read.

    `marker` is the kept text itself when every token of it is a vocabulary word (a
    marker or label such as "L" or "LIVER", never identifying), else None.
    """

    decision: Decision
    reason: str
    marker: str | None = None


def decide(
    reading: Reading,
    policy: TextPolicy,
    matcher: Matcher,
    *,
    protected: bool = False,
) -> Verdict | None:
    """The verdict on a line read as `reading`, or None when it is not text to act on.

    `protected` marks a line inside an ultrasound image region: there, only text read
    with confidence is covered.
    """
    tokens = tokenize(reading.text)
    vocabulary = policy_vocabulary(policy)
    if reading.alnum < 2:
        token = tokens[0] if tokens else ""
        if token in vocabulary and readable(reading, policy):
            return Verdict("keep", "kept marker", token)
        return None  # a lone character identifies no one
    if reading.confidence < _CONFIRMED:
        return None
    found = matcher.match(tokens)
    if found is not None:
        return Verdict("redact", found)
    if not readable(reading, policy):
        return None if protected else Verdict("redact", "unreadable text")
    if policy.mode == "phi-only":
        return Verdict("keep", "text without PHI")
    if all(t in vocabulary for t in tokens):
        return Verdict("keep", "kept marker", " ".join(tokens))
    if technical_line(tokens, policy):
        return Verdict("keep", "technical text")
    return Verdict("redact", "text")


def kept_token(token: str, policy: TextPolicy) -> bool:
    """Whether one token is kept text under `policy`: a vocabulary word or a technical
    number or code. `deid verify` asks this too, so both judge text alike."""
    word = token.strip(_PUNCTUATION).upper()
    return word in policy_vocabulary(policy) or _technical(word)


def technical_line(tokens: Sequence[str], policy: TextPolicy) -> bool:
    """Every token kept, and not two or more bare numbers alone (an ID or a date
    written with spaces: `12 03 1950`, `1234 5678`)."""
    if not tokens or not all(kept_token(t, policy) for t in tokens):
        return False
    bare = [t for t in tokens if _BARE.fullmatch(t)]
    return not (len(bare) >= 2 and len(bare) == len(tokens))


def readable(reading: Reading, policy: TextPolicy) -> bool:
    """Read with the policy's confidence on average, and no character a mere guess."""
    return reading.confidence * 100 >= policy.min_confidence and reading.least >= _GUESS


_SETTING = re.compile(r"([A-Z]+)[:=<>]+([-+]?[\d.,]+%?)")
_PUNCTUATION = ".,;:!?()[]{}'\"|"  # dropped from the ends of a token
_BARE = re.compile(r"[-+]?[\d.,]+")


def tokenize(text: str) -> list[str]:
    """Upper-case tokens of a line: split on spaces, outer punctuation dropped.

    Separators inside values (`W:400`, `C5-1`, `12/03/1950`) stay in the token so that
    patterns see dates whole; a setting (`W:400`, `MI=0.8`, `TIS<0.4`) is split into
    its name and value, and a token of punctuation alone (`+`, `-`) is no token.
    """
    out: list[str] = []
    for raw in text.upper().split():
        setting = _SETTING.fullmatch(raw)
        for part in setting.groups() if setting else [raw]:
            token = part.strip(_PUNCTUATION)
            if any(ch.isalnum() for ch in token):
                out.append(token)
    return out


@dataclass(frozen=True)
class _Vocabulary:
    words: frozenset[str]
    numbers: re.Pattern[str]


@cache
def _vocabulary() -> _Vocabulary:
    raw = (resources.files("deid") / "data" / "text_vocabulary.toml").read_text("utf-8")
    table = tomllib.loads(raw)
    words = frozenset(
        str(w).upper() for key in ("markers", "anatomy", "technical") for w in table.get(key, [])
    )
    numbers = table["numbers"]
    units = "|".join(re.escape(str(u).upper()) for u in numbers["units"])
    digits, decimals = int(numbers["max_digits"]), int(numbers["max_decimals"])
    number = rf"[-+]?\d{{1,{digits}}}(?:[.,]\d{{1,{decimals}}})?(?:{units})?"
    codes = "|".join(f"(?:{c})" for c in numbers.get("codes", []))
    return _Vocabulary(words, re.compile(rf"(?:{number}|{codes})" if codes else number))


@cache
def policy_vocabulary(policy: TextPolicy) -> frozenset[str]:
    """The words kept under this policy: the shipped vocabulary and its allow-list."""
    return _vocabulary().words | policy.allow_list


def _technical(token: str) -> bool:
    """A technical number or code; `120-KV` counts as its parts do when one of them is
    a word (`555-1234` and `1234-5678` are not technical)."""
    vocabulary = _vocabulary()
    if vocabulary.numbers.fullmatch(token):
        return True
    parts = [p for p in token.split("-") if p]
    return (
        len(parts) > 1
        and any(p in vocabulary.words for p in parts)
        and all(vocabulary.numbers.fullmatch(p) or p in vocabulary.words for p in parts)
    )


def _canonical(text: str) -> str:
    """Upper-case letters and digits only, look-alikes folded together."""
    kept = "".join(ch for ch in text.upper() if ch.isalnum())
    return kept.translate(_CONFUSABLE)


def _digits(text: str) -> str:
    """A token that is mostly digits, with the letters read for digits put back."""
    table = str.maketrans("OQDIL|SBZ", "000111582")
    tokens = []
    for token in text.upper().split():
        digits = sum(ch.isdigit() for ch in token)
        tokens.append(token.translate(table) if digits * 2 >= len(token) else token)
    return " ".join(tokens)


@dataclass(frozen=True)
class _Pattern:
    name: str
    regex: re.Pattern[str]


@cache
def patterns() -> tuple[_Pattern, ...]:
    """PHI patterns shipped in `deid/data/text_patterns.toml`."""
    raw = (resources.files("deid") / "data" / "text_patterns.toml").read_text("utf-8")
    table = tomllib.loads(raw)
    return tuple(
        _Pattern(str(entry["name"]), re.compile(str(entry["regex"])))
        for entry in table.get("pattern", [])
    )


def _date_forms(value: str) -> set[str]:
    """The ways a DICOM date YYYYMMDD is printed, canonical (separators dropped)."""
    if not re.fullmatch(r"\d{8}", value):
        return set()
    y, m, d = value[:4], value[4:6], value[6:8]
    forms = {y + m + d, m + d + y, d + m + y, m + d + y[2:], d + m + y[2:], y[2:] + m + d}
    if 1 <= int(m) <= 12:
        forms.add(d + _MONTHS[int(m) - 1] + y)
        forms.add(d + _MONTHS[int(m) - 1] + y[2:])
    return forms


@dataclass(frozen=True)
class Matcher:
    """Identifying values in canonical form, each with its kind, ready to match lines."""

    needles: tuple[tuple[str, str], ...]

    @classmethod
    def build(cls, phi: Mapping[str, str]) -> Matcher:
        """From original values mapped to their kind (as `verify.phi_values` gives them)."""
        needles: dict[str, str] = {}
        for value, kind in phi.items():
            raw = value.strip(" \0")
            forms = {raw}
            if "^" in raw or kind in _NAME_KINDS:
                parts = [p for p in re.split(r"[\^=,\s]+", raw) if p]
                forms.add("".join(parts))
                if len(parts) >= 2:
                    forms.add(parts[1] + parts[0])
                    forms.update(parts)
            forms.update(_date_forms(raw))
            for form in forms:
                canon = _canonical(form)
                if len(canon) >= 3:
                    needles.setdefault(canon, kind)
        ordered = sorted(needles.items(), key=lambda item: -len(item[0]))
        return cls(tuple(ordered))

    def match(self, words: Sequence[str]) -> str | None:
        """The reason to cover a line of read words, or None when nothing matches."""
        canon_words = [_canonical(w) for w in words]
        line = "".join(canon_words)
        pairs = {a + b for a, b in itertools.pairwise(canon_words)}
        for needle, kind in self.needles:
            if len(needle) <= 4:
                if needle in canon_words or needle in pairs:
                    return f"PHI match: {kind}"
            elif _near_substring(needle, line, 1 if len(needle) <= 7 else 2):
                return f"PHI match: {kind}"
        raw = " ".join(words).upper()
        for text in (raw, _digits(raw)):
            for pattern in patterns():
                if pattern.regex.search(text):
                    return f"pattern: {pattern.name}"
        return None


def _near_substring(needle: str, text: str, errors: int) -> bool:
    """Whether `text` holds `needle` with at most `errors` edits (Sellers' algorithm)."""
    if not text:
        return False
    if needle in text:
        return True
    previous = list(range(len(needle) + 1))
    for ch in text:
        current = [0]
        for i, nc in enumerate(needle, start=1):
            cost = 0 if nc == ch else 1
            current.append(min(previous[i] + 1, current[i - 1] + 1, previous[i - 1] + cost))
        if current[-1] <= errors:
            return True
        previous = current
    return False
