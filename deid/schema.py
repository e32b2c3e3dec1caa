"""What a profile file may contain, checked key by key against `deid/data/profile_schema.toml`.

Sections, keys, types, ranges, allowed values, actions, DICOM keywords, tags, masks and VR
names are data in the schema file; `Structure` walks one parsed profile file against it
and reports every problem at the key it concerns, with a suggestion where one is close.
It also says which entries were rejected, so the rest of a broken file can still be
loaded (`Structure.accepted`): the validator uses that to show what the profile would do
even while it has mistakes. Messages quote profile text, which holds no PHI.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydicom._dicom_dict import RepeatersDictionary
from pydicom.datadict import keyword_dict

from deid import profiles
from deid.tomlkeys import Key, KeyLines, key_text, kind_words, toml_text

Severity = Literal["error", "warning"]


# ---- reference data ------------------------------------------------------------------


@cache
def data_toml(name: str) -> dict[str, Any]:
    """A TOML file of the package's reference data (`deid/data/NAME`), parsed once."""
    return tomllib.loads((resources.files("deid") / "data" / name).read_text(encoding="utf-8"))


def profile_schema() -> dict[str, Any]:
    return data_toml("profile_schema.toml")


@cache
def _repeater_keywords() -> dict[str, str]:
    """Keywords of repeating-group attributes (OverlayData) and the pattern to write."""
    found: dict[str, str] = {}
    for key, entry in RepeatersDictionary.items():
        found[str(entry[4])] = f"({key[:4].lower()},{key[4:].lower()})"
    return found


@cache
def keyword_tags() -> dict[str, int]:
    """pydicom's keywords, plus the newer ones Annex E names that pydicom lacks."""
    return {**profiles.extra_keywords(), **{str(k): int(v) for k, v in keyword_dict.items()}}


@cache
def _keywords_by_tag() -> dict[int, str]:
    return {tag: keyword for keyword, tag in keyword_tags().items()}


def keyword_of(tag: int) -> str:
    return _keywords_by_tag().get(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@cache
def _all_keywords() -> tuple[str, ...]:
    return (*keyword_tags(), *_repeater_keywords())


@cache
def _keywords_by_lower() -> dict[str, str]:
    return {k.lower(): k for k in _all_keywords()}


# ---- message helpers -----------------------------------------------------------------


def _close(word: str, choices: Iterable[str], cutoff: float = 0.7) -> str | None:
    options = list(choices)
    folded = {c.lower(): c for c in options}
    if word.lower() in folded:
        return folded[word.lower()]
    match = difflib.get_close_matches(word, options, n=1, cutoff=cutoff)
    return match[0] if match else None


def suggest(word: str, choices: Sequence[str], show: str = "{}", noun: str = "") -> str:
    """`; did you mean X?` if one choice is close, else the list of choices (if a noun)."""
    close = _close(word, choices)
    if close is not None:
        return f"; did you mean {show.format(close)}?"
    if noun:
        return f"; {noun}: " + ", ".join(show.format(c) for c in choices)
    return ""


# ---- the schema walk -----------------------------------------------------------------

# Stricter than profiles.load: the documented spelling, with a lower-case x.
_TAG_RE = re.compile(r"^\(([0-9A-Fa-fx]{4}),([0-9A-Fa-fx]{4})\)$")
_OFFSET_RE = re.compile(r"^xx[0-9A-Fa-f]{2}$")
_TAG_HINT = "write (gggg,eeee) with four hex digits in each half and x for any digit"


def _span_ok(low: int, high: int) -> bool:
    """A box side is non-empty; a negative value counts back from the far edge."""
    if low >= 0 and high < 0:
        return True  # from the near edge to short of the far one: depends on the size
    return (low < 0) == (high < 0) and low < high


@dataclass(frozen=True)
class Finding:
    """One problem of a profile file, at the key it concerns (the validator adds the line)."""

    at: Key
    message: str
    severity: Severity = "error"


_GONE = object()


class Structure:
    """Checks one parsed profile file against the schema, collecting every problem.

    `findings` holds the problems in the order found; `rejected` the entries an error
    concerns (a whole rule, region or setting, never half of one), which `accepted`
    leaves out.
    """

    def __init__(self, data: dict[str, Any], lines: KeyLines) -> None:
        self.data = data
        self.lines = lines
        self.schema = profile_schema()
        self.findings: list[Finding] = []
        self.rejected: set[Key] = set()

    def add(
        self, at: Key, message: str, severity: Severity = "error", *, loads: bool = False
    ) -> None:
        """Report a problem; an error rejects its entry unless the loader `loads` it anyway
        (two settings that contradict each other: the loader takes the last)."""
        self.findings.append(Finding(at, message, severity))
        if severity == "error" and not loads:
            self.rejected.add(self.entry(at))

    def entry(self, at: Key) -> Key:
        """The whole entry a key belongs to: a setting, a rule, a region, or a section."""
        sections = self.schema["sections"]
        if len(at) < 2 or at[0] not in sections or not isinstance(at[1], str):
            return at[:1]
        spec = sections[at[0]].get(at[1])
        if spec is not None and spec["type"] in ("table", "table-list"):
            return at[:3]
        return at[:2]

    def accepted(self) -> dict[str, Any]:
        """The file's settings without the entries an error concerns."""
        kept = self._without(self.data, ())
        assert isinstance(kept, dict)
        return kept

    def _without(self, value: Any, at: Key) -> Any:
        if at in self.rejected:
            return _GONE
        if isinstance(value, dict):
            items = ((k, self._without(v, (*at, k))) for k, v in value.items())
            return {k: v for k, v in items if v is not _GONE}
        if isinstance(value, list):
            kept = (self._without(v, (*at, i)) for i, v in enumerate(value))
            return [v for v in kept if v is not _GONE]
        return value

    def run(self) -> None:
        """Check every section, key and value; each problem goes to `add`."""
        top, sections = self.schema["top"], self.schema["sections"]
        for key, value in self.data.items():
            if key in top:
                self.value((key,), key_text(key), value, top[key])
            elif key in sections:
                if isinstance(value, dict):
                    self.table((key,), f"[{key}]", value, sections[key])
                else:
                    kind = kind_words(value)
                    self.add((key,), f"[{key}] must be a section (a table), not {kind}")
            elif isinstance(value, dict):
                hint = suggest(key, list(sections), "[{}]", "sections are")
                self.add((key,), f"unknown section [{key}]{hint}")
            else:
                hint = suggest(key, [*top, *sections], '"{}"', "top-level keys are")
                self.add((key,), f"unknown key {toml_text(key)}{hint}")

    def table(self, at: Key, label: str, table: dict[str, Any], spec: dict[str, Any]) -> None:
        for key, value in table.items():
            where = (*at, key)
            if key in spec:
                self.value(where, f"{label} {key_text(key)}", value, spec[key])
                continue
            if isinstance(value, dict) and not label.startswith("[["):
                name = label.strip("[]")
                subtables = [k for k, s in spec.items() if s["type"] in ("table", "table-list")]
                close = _close(key, subtables)
                if close is not None:
                    hint = f"; did you mean [{name}.{close}]?"
                elif key in self.schema["sections"]:
                    hint = f"; [{key}] is a section of its own, not part of [{name}]"
                else:
                    hint = ""
                self.add(where, f"unknown section [{name}.{key}]{hint}")
                continue
            hint = suggest(key, list(spec), '"{}"', "keys are")
            self.add(where, f"unknown key {toml_text(key)} in {label}{hint}")
        for key, item in spec.items():
            if item.get("required") and key not in table:
                self.add(at, f"{label} has no {key}")

    def value(self, at: Key, label: str, value: Any, spec: dict[str, Any]) -> None:
        kind = spec["type"]
        if kind == "action":
            before = len(self.findings)
            self.action(at, label, value)
            if len(self.findings) == before and "choices" in spec:
                self.action_choice(at, label, value, spec["choices"])
        elif kind == "table":
            self.map(at, label, value, spec)
        elif kind == "table-list":
            self.table_list(at, label, value, spec)
        elif kind == "boxes":
            self.boxes(at, label, value)
        elif kind in ("strings", "string-list"):
            self.strings(at, label, value, spec)
        elif self.scalar_type(at, label, value, kind):
            if kind in ("integer", "number"):
                self.range(at, label, value, spec)
            elif kind == "string":
                self.choice(at, label, value, spec)

    def strings(self, at: Key, label: str, value: Any, spec: dict[str, Any]) -> None:
        """A list of strings, or for type "strings" also one string, each a valid choice."""
        either = spec["type"] == "strings"
        if either and isinstance(value, str):
            self.choice(at, label, value, spec)
            return
        if not isinstance(value, list):
            wanted = "a string or a list of strings" if either else "a list"
            self.add(at, f"{label} must be {wanted}, not {kind_words(value)}")
            return
        for i, item in enumerate(value):
            if isinstance(item, str):
                self.choice((*at, i), label, item, spec, listed=True)
            else:
                self.add((*at, i), f"{label} must hold strings, not {kind_words(item)}")
        if spec.get("exclusive"):
            self.exclusive(at, label, value)

    def scalar_type(self, at: Key, label: str, value: Any, kind: str) -> bool:
        ok = {
            "string": isinstance(value, str),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
        }[kind]
        if not ok:
            wanted = {"string": "a string", "integer": "an integer", "number": "a number"}
            what = wanted.get(kind, "true or false")
            self.add(at, f"{label} must be {what}, not {kind_words(value)}")
        return ok

    def range(self, at: Key, label: str, value: float, spec: dict[str, Any]) -> None:
        low, high = spec.get("min"), spec.get("max")
        if (low is None or value >= low) and (high is None or value <= high):
            return
        if low is not None and high is not None:
            span = f"{low} to {high}"
        else:
            span = f"{low} or more" if low is not None else f"{high} or less"
        self.add(at, f"{label} = {toml_text(value)} is out of range; use {span}")

    def choice(
        self, at: Key, label: str, value: str, spec: dict[str, Any], listed: bool = False
    ) -> None:
        choices = spec.get("choices")
        if choices is None:
            return
        if isinstance(choices, str):
            choices = self.schema["lists"][choices]
        pattern = spec.get("pattern")
        if value in choices or (pattern and re.fullmatch(pattern, value)):
            return
        shown = f"{label}: {toml_text(value)}" if listed else f"{label} = {toml_text(value)}"
        close = _close(value, choices)
        if close is not None:
            self.add(at, f"{shown} is not allowed; did you mean {toml_text(close)}?")
            return
        hint = f" ({spec['hint']})" if "hint" in spec else ""
        allowed = ", ".join(toml_text(c) for c in choices)
        self.add(at, f"{shown} is not allowed; use one of: {allowed}{hint}")

    def exclusive(self, at: Key, label: str, values: list[Any]) -> None:
        for group in self.schema["lists"]["exclusive-options"]:
            both = [v for v in group if v in values]
            if len(both) > 1:
                named = " and ".join(toml_text(v) for v in both)
                self.add(at, f"{label}: {named} exclude each other; claim one", loads=True)

    def action(self, at: Key, label: str, value: Any) -> None:
        names: list[str] = self.schema["actions"]["names"]
        forms = 'write { replace = "VALUE" } or { keep = ["VALUE", ...] }'
        if isinstance(value, str):
            if value in names:
                return
            if value == "replace":
                self.add(at, f'{label} = "replace" needs the value: write {{ replace = "VALUE" }}')
                return
            close = _close(value, names)
            if close is not None:
                hint = f"did you mean {toml_text(close)}?"
                self.add(at, f"{label} = {toml_text(value)} is not an action; {hint}")
                return
            listing = ", ".join(toml_text(n) for n in names)
            self.add(
                at,
                f"{label} = {toml_text(value)} is not an action; use one of: {listing}, "
                '{ replace = "VALUE" }, { keep = ["VALUE", ...] }',
            )
        elif isinstance(value, dict):
            keys = list(value)
            unknown = [k for k in keys if k not in self.schema["actions"]["table_forms"]]
            if unknown:
                hint = suggest(unknown[0], self.schema["actions"]["table_forms"], '"{}"')
                self.add(
                    (*at, unknown[0]),
                    f"{label}: unknown key {toml_text(unknown[0])} in a rule table{hint}",
                )
            elif len(keys) != 1:
                self.add(at, f"{label} = {toml_text(value)} must hold exactly one action; {forms}")
            elif keys == ["keep"] and not (
                isinstance(value["keep"], list)
                and value["keep"]
                and all(isinstance(v, str) for v in value["keep"])
            ):
                kept = value["keep"] if isinstance(value["keep"], list) else []
                wrong = [i for i, v in enumerate(kept) if not isinstance(v, str)]
                self.add(
                    (*at, "keep", *wrong[:1]),
                    f"{label}: keep must be a non-empty list of strings, "
                    'such as { keep = ["M", "F"] }',
                )
            elif keys == ["replace"] and not isinstance(value["replace"], str):
                self.add(
                    (*at, "replace"),
                    f'{label}: replace must be a string, such as {{ replace = "ANONYMOUS" }}',
                )
        else:
            self.add(at, f'{label} must be an action such as "remove", not {kind_words(value)}')

    def action_choice(self, at: Key, label: str, value: Any, choices: list[str]) -> None:
        """A well-formed action that this key does not take (`choices` in the schema)."""
        name = value if isinstance(value, str) else next(iter(value))
        if name in choices:
            return
        forms = {"replace": '{ replace = "VALUE" }', "keep": '"keep"'}
        listing = ", ".join(forms.get(c, toml_text(c)) for c in choices)
        self.add(at, f"{label} = {toml_text(value)} is not allowed here; use one of: {listing}")

    def map(self, at: Key, label: str, value: Any, spec: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            self.add(at, f"{label} must be a table, not {kind_words(value)}")
            return
        section = f"[{label.strip('[]').replace('] ', '.')}]"
        seen: dict[int | tuple[int, int], tuple[str, Any, Key]] = {}
        for key, item in value.items():
            where = (*at, key)
            entry = f"{section} {key_text(key)}"
            if spec["keys"] == "vr":
                self.vr(where, section, key)
            elif spec["keys"] == "selector":
                target = self.selector(where, section, key)
                if target is not None:
                    self.duplicate(seen, target, key, item, where, section)
            if spec["values"] == "action":
                self.action(where, entry, item)
            elif spec["values"] == "offsets":
                self.offsets(where, entry, item)

    def vr(self, at: Key, section: str, key: str) -> None:
        vrs: list[str] = self.schema["vrs"]["names"]
        if key not in vrs:
            hint = suggest(key, vrs, '"{}"', "VRs are")
            self.add(at, f"{section} {toml_text(key)} is not a DICOM VR{hint}")

    def selector(self, at: Key, section: str, key: str) -> int | tuple[int, int] | None:
        """The tag or (mask, value) a `[tags.rules]` key names, after checking it."""
        if key.startswith("(") or "," in key:
            if _TAG_RE.match(key) is None:
                fixed = "(" + re.sub(r"[\s()]", "", key) + ")"
                fixed = re.sub(r"[^,()]", lambda c: c.group().upper(), fixed).replace("X", "x")
                hint = f"did you mean {toml_text(fixed)}?" if _TAG_RE.match(fixed) else _TAG_HINT
                self.add(at, f"{section} {toml_text(key)} is not a tag; {hint}")
                return None
            return profiles.parse_selector(key)
        target = profiles.parse_selector(key)
        if target is not None:
            return target
        if key in _repeater_keywords():
            pattern = _repeater_keywords()[key]
            self.add(
                at,
                f"{section} {toml_text(key)} is a repeating-group attribute; "
                f"name all its groups with {toml_text(pattern)}",
            )
            return None
        close = _keywords_by_lower().get(key.lower()) or _close(key, _all_keywords(), 0.75)
        hint = f"; did you mean {toml_text(close)}?" if close else " or a (gggg,eeee) tag"
        self.add(at, f"{section} {toml_text(key)} is not a DICOM keyword{hint}")
        return None

    def duplicate(
        self,
        seen: dict[int | tuple[int, int], tuple[str, Any, Key]],
        target: int | tuple[int, int],
        key: str,
        value: Any,
        at: Key,
        section: str,
    ) -> None:
        if target not in seen:
            seen[target] = (key, value, at)
            return
        first, first_value, first_at = seen[target]
        line = self.lines.line_of(first_at)
        if isinstance(target, int):
            both = f"both name ({target >> 16:04X},{target & 0xFFFF:04X})"
        else:
            both = "both name the same tag pattern"
        if first_value == value:
            self.add(
                at,
                f"{section} {key_text(key)} repeats {key_text(first)} (line {line}); {both}",
                "warning",
            )
        else:
            self.add(
                at,
                f"{section} {key_text(key)} = {toml_text(value)} contradicts "
                f"{key_text(first)} = {toml_text(first_value)} (line {line}); {both}",
                loads=True,
            )

    def offsets(self, at: Key, label: str, value: Any) -> None:
        if not isinstance(value, list):
            kind = kind_words(value)
            self.add(at, f'{label} must be a list of offsets such as ["xx10"], not {kind}')
            return
        for i, item in enumerate(value):
            if not (isinstance(item, str) and _OFFSET_RE.match(item)):
                self.add(
                    (*at, i),
                    f"{label}: {toml_text(item)} is not an element offset; "
                    'write xx and two hex digits, such as "xx10"',
                )

    def table_list(self, at: Key, label: str, value: Any, spec: dict[str, Any]) -> None:
        name = label.strip("[]").replace("] ", ".")
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.add(at, f"{label} must be a list of tables: write each one under [[{name}]]")
            return
        schema = self.schema["tables"][spec["table"]]
        for i, item in enumerate(value):
            self.table((*at, i), f"[[{name}]] #{i + 1}", item, schema)

    def boxes(self, at: Key, label: str, value: Any) -> None:
        if not isinstance(value, list):
            self.add(at, f"{label} must be a list of [left, top, right, bottom] boxes")
            return
        for i, box in enumerate(value):
            where = (*at, i)
            if not (
                isinstance(box, list)
                and len(box) == 4
                and all(isinstance(v, int) and not isinstance(v, bool) for v in box)
            ):
                self.add(where, f"{label}: box {i + 1} must be [left, top, right, bottom] integers")
            elif not (_span_ok(box[0], box[2]) and _span_ok(box[1], box[3])):
                self.add(
                    where,
                    f"{label}: box {i + 1} {toml_text(box)} is empty or inverted; "
                    "need left < right and top < bottom (negative values count from "
                    "the far edge)",
                )
