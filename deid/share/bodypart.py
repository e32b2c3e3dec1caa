"""Body part: the part of the body a DICOM series shows, told in a fixed vocabulary.

`deid share` names a series by its number, its modality and a body part, and picks a
CT series' default windows by it (`deid.share.windows`). Descriptions are free text
and may name the patient ("CHEST FOR DOE^JOHN"), so nothing of them is kept but a term
of the vocabulary: BodyPartExamined when it is a known term, else a part its words or
the descriptions' words name. The terms, the words that name them, the levels of the
spine and the combined terms are `deid/data/body_parts.toml`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from pydicom.dataset import Dataset

__all__ = ["body_part"]


@dataclass(frozen=True)
class _Table:
    parts: frozenset[str]  # BodyPartExamined values kept as they are
    words: dict[str, str]  # a word of a description -> the body part
    spine_levels: dict[str, str]  # CERVICAL -> CSPINE ...
    combined: tuple[tuple[frozenset[str], str], ...]  # parts named together -> one term


@cache
def _table() -> _Table:
    raw = (resources.files("deid") / "data" / "body_parts.toml").read_text("utf-8")
    data: dict[str, Any] = tomllib.loads(raw)
    table = _Table(
        parts=frozenset(str(t) for t in data["examined"]["terms"]),
        words={str(k): str(v) for k, v in data["words"].items()},
        spine_levels={str(k): str(v) for k, v in data["spine_levels"].items()},
        combined=tuple(
            (frozenset(str(p) for p in entry["parts"]), str(entry["term"]))
            for entry in data["combined"]
        ),
    )
    named = {*table.words.values(), *table.spine_levels.values()}
    named |= {term for _, term in table.combined}
    unknown = sorted(named - table.parts)
    if unknown:  # a broken data file is a bug of the program, caught by the tests
        raise ValueError(f"body_parts.toml: names parts not among [examined] terms {unknown}")
    return table


def body_part(ds: Dataset) -> str | None:
    """The body part of `ds`, from a fixed vocabulary: BodyPartExamined when it is a
    known term, else the part its words name, else the part the series description
    names, else the study description's. No other word of any of them is kept."""
    examined = header_text(ds, "BodyPartExamined").upper()
    if re.sub(r"[^A-Z0-9]", "", examined) in _table().parts:
        return re.sub(r"[^A-Z0-9]", "", examined)
    for text in (
        examined,
        header_text(ds, "SeriesDescription"),
        header_text(ds, "StudyDescription"),
    ):
        part = _part_of(text)
        if part is not None:
            return part
    return None


def _part_of(text: str) -> str | None:
    """The body part a free text names, or None."""
    table = _table()
    levels = table.spine_levels
    words = re.findall(r"[A-Z]+", text.upper().replace("-SPINE", "SPINE"))
    parts: list[str] = []
    for i, word in enumerate(words):
        nearby = words[i + 1 : i + 3]
        if word in levels and "SPINE" in nearby:
            parts.append(levels[word])
        elif word == "SPINE" and any(w in levels for w in words[max(0, i - 2) : i]):
            continue
        elif word in table.words:
            parts.append(table.words[word])
    if not parts:
        return None
    present = set(parts)
    for members, combined in table.combined:
        if members <= present:
            return combined
    return parts[0]


def header_value(ds: Dataset, keyword: str) -> object:
    """The value of `keyword`, None if absent or unreadable: a damaged value is no part
    (nor any other fact), not an error."""
    try:
        return ds.get(keyword)
    except Exception:  # a damaged value fails as it is converted, in many ways
        return None


def header_text(ds: Dataset, keyword: str) -> str:
    """The first value of `keyword` as stripped text, "" if absent or unreadable."""
    value = header_value(ds, keyword)
    if value is None:
        return ""
    if not isinstance(value, str | bytes) and hasattr(value, "__len__"):
        value = value[0] if len(value) else ""  # type: ignore[index]
    return str(value).strip()
