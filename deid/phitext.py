"""Identifying values in text: original values as runs of words, and PHI patterns.

The checks of finished outputs (`deid.verify`) read text from header values, notes, file
names, PNG chunks, OCR of the pixels, the run's manifest and its report page; all of
them look for the same two things here. `Matcher` finds the values of the original
headers, whatever the case and punctuation; the patterns (`data/phi_patterns.toml`) find
the shapes of identifying values (phone numbers, e-mail addresses, written dates ...)
whatever the originals held. `manifest_findings` and `page_findings` read the two files
a run leaves beside its outputs (they are passed on with them) for original values.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import sqlite3
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from deid.manifest import RunInfo
from deid.record import ActionRecord, BoxRecord, FileRecord


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


def over_90(text: str) -> bool:
    """True for an AS age above 90 years: Safe Harbor allows only "90 or older" (090Y)."""
    per_year = {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}.get(text[3:4].upper())
    if len(text) != 4 or not text[:3].isdigit() or per_year is None:
        return False
    return int(text[:3]) / per_year > 90


def full_date(text: str) -> bool:
    """True if a DA/DT value (or range) keeps more than the year: a month/day not 0101."""
    for part in text.split("-"):
        rest = part.strip()[4:8]
        if rest and rest not in ("01", "0101"):
            return True
    return False


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

    Where `_` joins words (`joined`, as in DICOM values: vendors write `TOSHIBA_MEC`,
    `M_SE`), a value next to `_` is part of a longer token, not a word of its own.
    Elsewhere (file names, notes, OCR) `_` separates words, as people type it.
    """

    def __init__(self, originals: Mapping[str, str] | None) -> None:
        self._kinds: dict[tuple[str, ...], str] = {}
        for value, kind in (originals or {}).items():
            words = tuple(m.group() for m in _tokens(value))
            if words:
                self._kinds.setdefault(words, kind)
        self._lengths = sorted({len(words) for words in self._kinds})

    def spans(
        self, text: str, *, joined: bool = False, but_whole: bool = False
    ) -> list[tuple[str, int, int]]:
        """(kind, start, end) of every original value in `text`, as character spans.

        `joined`: `_` joins words (see the class). `but_whole`: a value that is the whole
        of `text` is not counted, for a value the original held unchanged in the same
        attribute; a value inside a longer text still is.
        """
        if not self._kinds:
            return []
        found = []
        folded = text.casefold()
        tokens = _tokens(text)
        words = [m.group() for m in tokens]
        for i in range(len(words)):
            for length in self._lengths:
                if i + length > len(words):
                    break
                kind = self._kinds.get(tuple(words[i : i + length]))
                if kind is None:
                    continue
                start, end = tokens[i].start(), tokens[i + length - 1].end()
                if joined and "_" in (folded[start - 1 : start], folded[end : end + 1]):
                    continue
                if but_whole and i == 0 and length == len(words):
                    continue
                found.append((kind, start, end))
        return found

    def kinds(self, text: str, *, joined: bool = False, but_whole: bool = False) -> list[str]:
        """The kinds of the original values in `text`, each once (options as `spans`)."""
        spans = self.spans(text, joined=joined, but_whole=but_whole)
        return list(dict.fromkeys(kind for kind, _, _ in spans))


def text_kinds(
    text: str,
    matcher: Matcher,
    vr: str | None = None,
    *,
    joined: bool = False,
    but_whole: bool = False,
) -> list[str]:
    """Kinds of the original values (options as `Matcher.spans`) and of the patterns in
    `text`, each once."""
    values = matcher.kinds(text, joined=joined, but_whole=but_whole)
    return list(dict.fromkeys([*values, *pattern_kinds(text, vr)]))


# --- The files a run leaves beside its outputs -----------------------------------------

# Blanked out of a page before it is read: elements' tags, comments, style and script
# blocks, and character references.
_MARKUP = re.compile(
    r"<(style|script)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>|&#?[A-Za-z0-9]+;", re.DOTALL | re.I
)
# Names a manifest's schema gives its fields; a name that is not one is not repeated in a
# finding, as it could be a value.
_FIELDS = (
    frozenset(f.name for record in (FileRecord, BoxRecord, ActionRecord) for f in fields(record))
    | frozenset(RunInfo.__dataclass_fields__)
    | {"created"}
)


def page_findings(page: bytes, matcher: Matcher) -> list[tuple[str, str]]:
    """(`line N`, kind) of the original values in the text of an HTML page.

    Markup is blanked out, nothing is decoded, and lines keep their numbers: a character
    reference becomes spaces, which `Matcher` reads as the punctuation it stood for
    (`O&#x27;BRIEN` reads as `O BRIEN`); the images of data: URIs are in tags, not text.
    """
    text = page.decode("utf-8", "replace")
    blanked = _MARKUP.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)
    return _unique(
        (f"line {number}", kind)
        for number, line in enumerate(blanked.splitlines(), start=1)
        for kind in matcher.kinds(line)
    )


def manifest_findings(path: Path, matcher: Matcher) -> list[tuple[str, str]]:
    """(where, kind) of the original values in a run's manifest: in each value of its
    `run` table, each string of each file's record, and each session's version and
    outcome.

    Numbers in a record are timings, counts and pixel places, not text. A copy is read,
    with the write-ahead log a killed run leaves beside it: SQLite leaves files beside
    any database it opens, and checking must change nothing. Raises `OSError`,
    `sqlite3.Error`, `ValueError` or `TypeError` when it cannot be read as a manifest.
    """
    with tempfile.TemporaryDirectory(prefix="deid-verify-") as folder:
        copy = Path(folder) / "manifest.sqlite"
        shutil.copyfile(path, copy)
        log = path.with_name(path.name + "-wal")
        if log.is_file():
            shutil.copyfile(log, copy.with_name(copy.name + "-wal"))
        db = sqlite3.connect(copy)
        try:
            run = db.execute("SELECT name, value FROM run ORDER BY rowid").fetchall()
            records = db.execute("SELECT record FROM files ORDER BY rowid").fetchall()
            query = "SELECT version, outcome FROM sessions ORDER BY rowid"
            sessions = db.execute(query).fetchall()
        finally:
            db.close()
    texts: list[tuple[str, str]] = []
    for name, value in run:
        known = name in _FIELDS
        texts.append((f"run > {name}", str(value)) if known else ("run", f"{name} {value}"))
    for number, (data,) in enumerate(records, start=1):
        texts += _strings(json.loads(data), f"files record {number}")
    for number, (version, outcome) in enumerate(sessions, start=1):
        texts += [(f"session {number}", str(text)) for text in (version, outcome) if text]
    return _unique((where, kind) for where, text in texts for kind in matcher.kinds(text))


def _unique(found: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(found))


def _strings(value: object, where: str) -> list[tuple[str, str]]:
    """(where, text) of the strings in a record read from JSON, and of its keys that are
    not the names of fields (stage names, or anything else a writer put there)."""
    if isinstance(value, str):
        return [(where, value)]
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _FIELDS:
                found += _strings(item, f"{where} > {key}")
            else:
                found += [(where, key), *_strings(item, where)]
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _strings(item, f"{where}[{index}]")
    return found
