"""Checking profiles before anyone trusts them: every mistake at once, each with its line.

A profile that loads is not yet a profile that does what its author meant. A misspelt
keyword, an unknown action or a setting in the wrong section would make the loader stop
at the first mistake, or, worse, be accepted and do nothing. CI runs `validate_paths` on
every profile a change touches and wants all the problems in one run, each as
`file:line: message` so editors and CI annotations can jump to it.

`safe_harbor_gaps` goes further for a resolved profile: it proves, attribute by attribute,
that the profile is at least as strict as the DICOM PS3.15 Annex E Basic Profile and
that no attribute carrying one of the 18 HIPAA Safe Harbor identifier categories is kept.

What a profile may contain (sections, keys, types, ranges, allowed values) is data, in
`deid/data/profile_schema.toml`; the Safe Harbor categories are in
`deid/data/safe_harbor_categories.toml`. Messages quote profile text, which holds no
PHI, and never a value from a DICOM file. Nothing here prints.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydicom._dicom_dict import RepeatersDictionary
from pydicom.datadict import keyword_dict

from deid import profiles
from deid.errors import ProfileError
from deid.tomlkeys import BARE_KEY, Key, KeyLines

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One mistake in a profile file, where it is, and what to write instead.

    A warning marks a setting that is legal but has no effect (such as `max_shift_days`
    without shift mode); it is reported but does not make a profile invalid.
    """

    file: str
    line: int
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}: {prefix}{self.message}"


@dataclass(frozen=True)
class Gap:
    """An attribute a profile lets through although Annex E or Safe Harbor says not to.

    `category` is "PS3.15 Annex E" or a Safe Harbor category such as "(A) Names";
    `where` is the rule that lets it through, as `file:line` (or "built-in default").
    """

    category: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.category}: {self.message}"


def has_errors(problems: Iterable[Problem]) -> bool:
    """True if any problem is an error, not just a warning: the exit status follows this."""
    return any(p.severity == "error" for p in problems)


def profile_files(paths: Sequence[Path]) -> list[Path]:
    """The files to validate: each file given, and every `*.toml` below each folder, sorted."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.rglob("*.toml")) if path.is_dir() else [path])
    return files


def validate_paths(paths: Sequence[Path], *, safe_harbor: bool = False) -> list[Problem]:
    """Validate every profile file `profile_files(paths)` names, in that order."""
    problems: list[Problem] = []
    for file in profile_files(paths):
        problems.extend(validate_file(file, safe_harbor=safe_harbor))
    return problems


def validate_file(path: Path, *, safe_harbor: bool = False) -> list[Problem]:
    """Every problem in one profile file, ordered by line; no errors means valid.

    Checks TOML syntax, sections, keys, types, ranges and allowed values against the
    schema, DICOM keywords, tags, masks and VR names, rule shapes, `extends` targets and
    cycles, and rules that contradict each other. When all that passes, the profile is
    also loaded the way `deid` will load it; then every `safe_harbor_gaps` entry is a
    problem too if the profile claims Safe Harbor (`[safe_harbor] claim = true`) or
    `safe_harbor` asks for the proof anyway. Gaps are reported at the rule's line when
    this file sets it, else at the claim (or `extends`) with the base's `file:line`.
    """
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return [Problem(file, 1, f"cannot read the profile: {exc.strerror or exc}")]
    except UnicodeDecodeError:
        return [Problem(file, 1, "cannot read the profile: it is not UTF-8 text")]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, message = _syntax_error(exc, text)
        return [Problem(file, line, f"not valid TOML: {message}")]
    checker = _Checker(file, path, data, KeyLines(text), safe_harbor)
    checker.run()
    return sorted(checker.problems, key=lambda p: p.line)


def safe_harbor_gaps(ref: str) -> list[Gap]:
    """Every attribute the resolved profile `ref` lets through against Annex E or Safe Harbor.

    `ref` is a built-in name or a path, as for `profiles.load` (whose ProfileError
    propagates). An empty list is the proof a Safe Harbor claim needs: each Annex E row is
    removed or transformed at least as strictly as the Basic Profile (allowing for the
    options the profile claims in `[method] options`), and each keyword of the 18 Safe
    Harbor categories is removed or transformed, dates to no more than the year.
    """
    return _gaps(profiles.load(ref))


# ---- reference data ------------------------------------------------------------------


def _data(name: str) -> str:
    return (resources.files("deid") / "data" / name).read_text(encoding="utf-8")


@cache
def _schema() -> dict[str, Any]:
    return tomllib.loads(_data("profile_schema.toml"))


@cache
def _categories() -> tuple[dict[str, Any], ...]:
    return tuple(tomllib.loads(_data("safe_harbor_categories.toml"))["category"])


@cache
def _repeater_keywords() -> dict[str, str]:
    """Keywords of repeating-group attributes (OverlayData) and the pattern to write."""
    found: dict[str, str] = {}
    for key, entry in RepeatersDictionary.items():
        found[str(entry[4])] = f"({key[:4].lower()},{key[4:].lower()})"
    return found


@cache
def _keyword_tags() -> dict[str, int]:
    """pydicom's keywords, plus the newer ones Annex E names that pydicom lacks."""
    return {**profiles.extra_keywords(), **{str(k): int(v) for k, v in keyword_dict.items()}}


@cache
def _keywords_by_tag() -> dict[int, str]:
    return {tag: keyword for keyword, tag in _keyword_tags().items()}


def _keyword_of(tag: int) -> str:
    return _keywords_by_tag().get(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@cache
def _all_keywords() -> tuple[str, ...]:
    return (*_keyword_tags(), *_repeater_keywords())


@cache
def _keywords_by_lower() -> dict[str, str]:
    return {k.lower(): k for k in _all_keywords()}


# ---- message helpers -----------------------------------------------------------------


def _key_text(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _toml(value: Any) -> str:
    """A value written back as TOML, to quote the profile's own text in a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key_text(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    return str(value)


_KINDS = (
    (bool, "true/false"),  # before int: a bool is an int
    (int, "an integer"),
    (float, "a decimal number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "a table"),
)


def _kind(value: Any) -> str:
    """A TOML value's type in words (tomllib gives only these, or a date or time)."""
    return next((words for kind, words in _KINDS if isinstance(value, kind)), "a date or time")


def _close(word: str, choices: Iterable[str], cutoff: float = 0.7) -> str | None:
    options = list(choices)
    folded = {c.lower(): c for c in options}
    if word.lower() in folded:
        return folded[word.lower()]
    match = difflib.get_close_matches(word, options, n=1, cutoff=cutoff)
    return match[0] if match else None


def _suggest(word: str, choices: Sequence[str], show: str = "{}", noun: str = "") -> str:
    """`; did you mean X?` if one choice is close, else the list of choices (if a noun)."""
    close = _close(word, choices)
    if close is not None:
        return f"; did you mean {show.format(close)}?"
    if noun:
        return f"; {noun}: " + ", ".join(show.format(c) for c in choices)
    return ""


def _syntax_error(exc: tomllib.TOMLDecodeError, text: str) -> tuple[int, str]:
    message = str(exc)
    m = re.search(r" \(at line (\d+), column (\d+)\)$", message)
    if m:
        return int(m.group(1)), f"{message[: m.start()]} (column {m.group(2)})"
    if message.endswith(" (at end of document)"):
        return max(1, len(text.splitlines())), message.removesuffix(" (at end of document)")
    return 1, message


# ---- the checks ----------------------------------------------------------------------

# Stricter than profiles.load: the documented spelling, with a lower-case x.
_TAG_RE = re.compile(r"^\(([0-9A-Fa-fx]{4}),([0-9A-Fa-fx]{4})\)$")
_OFFSET_RE = re.compile(r"^xx[0-9A-Fa-f]{2}$")
_TAG_HINT = "write (gggg,eeee) with four hex digits in each half and x for any digit"


def _span_ok(low: int, high: int) -> bool:
    """A box side is non-empty; a negative value counts back from the far edge."""
    if low >= 0 and high < 0:
        return True  # from the near edge to short of the far one: depends on the size
    return (low < 0) == (high < 0) and low < high


def _lookup(data: Mapping[str, Any], *keys: str) -> Any:
    value: Any = data
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, Mapping):
            into[key] = _merge({}, value)
        else:
            into[key] = value
    return into


def _extends_refs(data: Mapping[str, Any]) -> list[tuple[str, Key]]:
    raw = data.get("extends")
    if isinstance(raw, str):
        return [(raw, ("extends",))]
    if isinstance(raw, list):
        return [(r, ("extends", i)) for i, r in enumerate(raw) if isinstance(r, str)]
    return []


def _locate(ref: str, folder: Path) -> Path | str:
    """Where `extends = ref` points, as profiles.load resolves it, or why it points nowhere."""
    if ref.endswith(".toml") or "/" in ref:
        path = Path(ref)
        path = path if path.is_absolute() else folder / path
        if not path.is_file():
            return f"extends {_toml(ref)}: no such file (paths are relative to the profile)"
        return path.resolve()
    path = profiles.builtin_dir() / f"{ref}.toml"
    if not path.is_file():
        names = profiles.builtin_names()
        hint = _suggest(ref, names, '"{}"', "built-in profiles are")
        return f"extends {_toml(ref)}: no built-in profile of that name{hint}"
    return path.resolve()


def _follow(ref: str, folder: Path, chain: tuple[Path, ...]) -> dict[str, Any] | str:
    """The settings `ref` resolves to (its bases merged under it), or what is wrong."""
    target = _locate(ref, folder)
    if isinstance(target, str):
        return target
    if target in chain:
        return "circular extends: " + " -> ".join(p.name for p in (*chain, target))
    try:
        text = target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return f"extends {_toml(ref)}: {target.name} cannot be read"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _syntax_error(exc, text)[0]
        return f"extends {_toml(ref)}: {target.name} is not valid TOML (line {line})"
    merged: dict[str, Any] = {}
    for sub, _ in _extends_refs(data):
        result = _follow(sub, target.parent, (*chain, target))
        if isinstance(result, str):
            return result if result.startswith("circular") else f"extends {_toml(ref)}: {result}"
        _merge(merged, result)
    return _merge(merged, data)


class _Checker:
    """Collects every problem of one parsed profile file."""

    def __init__(
        self, file: str, path: Path, data: dict[str, Any], lines: KeyLines, prove: bool
    ) -> None:
        self.file = file
        self.prove = prove
        self.path = path
        self.data = data
        self.lines = lines
        self.schema = _schema()
        self.problems: list[Problem] = []

    def add(self, at: Key, message: str, severity: Severity = "error") -> None:
        self.problems.append(Problem(self.file, self.lines.line_of(at), message, severity))

    def run(self) -> None:
        self.check_structure()
        bases = self.check_extends()
        resolved = None if bases is None else _merge(_merge({}, bases), self.data)
        self.check_contradictions(resolved)
        if not has_errors(self.problems):
            self.check_loads()

    # -- structure: sections, keys, types, values

    def check_structure(self) -> None:
        top, sections = self.schema["top"], self.schema["sections"]
        for key, value in self.data.items():
            if key in top:
                self.value((key,), _key_text(key), value, top[key])
            elif key in sections:
                if isinstance(value, dict):
                    self.table((key,), f"[{key}]", value, sections[key])
                else:
                    self.add((key,), f"[{key}] must be a section (a table), not {_kind(value)}")
            elif isinstance(value, dict):
                hint = _suggest(key, list(sections), "[{}]", "sections are")
                self.add((key,), f"unknown section [{key}]{hint}")
            else:
                hint = _suggest(key, [*top, *sections], '"{}"', "top-level keys are")
                self.add((key,), f"unknown key {_toml(key)}{hint}")

    def table(self, at: Key, label: str, table: dict[str, Any], spec: dict[str, Any]) -> None:
        for key, value in table.items():
            where = (*at, key)
            if key in spec:
                self.value(where, f"{label} {_key_text(key)}", value, spec[key])
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
            hint = _suggest(key, list(spec), '"{}"', "keys are")
            self.add(where, f"unknown key {_toml(key)} in {label}{hint}")
        for key, item in spec.items():
            if item.get("required") and key not in table:
                self.add(at, f"{label} has no {key}")

    def value(self, at: Key, label: str, value: Any, spec: dict[str, Any]) -> None:
        kind = spec["type"]
        if kind == "action":
            self.action(at, label, value)
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
            self.add(at, f"{label} must be {wanted}, not {_kind(value)}")
            return
        for i, item in enumerate(value):
            if isinstance(item, str):
                self.choice((*at, i), label, item, spec, listed=True)
            else:
                self.add((*at, i), f"{label} must hold strings, not {_kind(item)}")
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
            self.add(at, f"{label} must be {wanted.get(kind, 'true or false')}, not {_kind(value)}")
        return ok

    def range(self, at: Key, label: str, value: float, spec: dict[str, Any]) -> None:
        low, high = spec.get("min"), spec.get("max")
        if (low is None or value >= low) and (high is None or value <= high):
            return
        if low is not None and high is not None:
            span = f"{low} to {high}"
        else:
            span = f"{low} or more" if low is not None else f"{high} or less"
        self.add(at, f"{label} = {_toml(value)} is out of range; use {span}")

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
        shown = f"{label}: {_toml(value)}" if listed else f"{label} = {_toml(value)}"
        close = _close(value, choices)
        if close is not None:
            self.add(at, f"{shown} is not allowed; did you mean {_toml(close)}?")
            return
        hint = f" ({spec['hint']})" if "hint" in spec else ""
        allowed = ", ".join(_toml(c) for c in choices)
        self.add(at, f"{shown} is not allowed; use one of: {allowed}{hint}")

    def exclusive(self, at: Key, label: str, values: list[Any]) -> None:
        for group in self.schema["lists"]["exclusive-options"]:
            both = [v for v in group if v in values]
            if len(both) > 1:
                named = " and ".join(_toml(v) for v in both)
                self.add(at, f"{label}: {named} exclude each other; claim one")

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
                self.add(
                    at, f"{label} = {_toml(value)} is not an action; did you mean {_toml(close)}?"
                )
                return
            listing = ", ".join(_toml(n) for n in names)
            self.add(
                at,
                f"{label} = {_toml(value)} is not an action; use one of: {listing}, "
                '{ replace = "VALUE" }, { keep = ["VALUE", ...] }',
            )
        elif isinstance(value, dict):
            keys = list(value)
            unknown = [k for k in keys if k not in self.schema["actions"]["table_forms"]]
            if unknown:
                hint = _suggest(unknown[0], self.schema["actions"]["table_forms"], '"{}"')
                self.add(
                    (*at, unknown[0]),
                    f"{label}: unknown key {_toml(unknown[0])} in a rule table{hint}",
                )
            elif len(keys) != 1:
                self.add(at, f"{label} = {_toml(value)} must hold exactly one action; {forms}")
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
            self.add(at, f'{label} must be an action such as "remove", not {_kind(value)}')

    def map(self, at: Key, label: str, value: Any, spec: dict[str, Any]) -> None:
        if not isinstance(value, dict):
            self.add(at, f"{label} must be a table, not {_kind(value)}")
            return
        section = f"[{label.strip('[]').replace('] ', '.')}]"
        seen: dict[int | tuple[int, int], tuple[str, Any, Key]] = {}
        for key, item in value.items():
            where = (*at, key)
            entry = f"{section} {_key_text(key)}"
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
            hint = _suggest(key, vrs, '"{}"', "VRs are")
            self.add(at, f"{section} {_toml(key)} is not a DICOM VR{hint}")

    def selector(self, at: Key, section: str, key: str) -> int | tuple[int, int] | None:
        """The tag or (mask, value) a `[tags.rules]` key names, after checking it."""
        if key.startswith("(") or "," in key:
            if _TAG_RE.match(key) is None:
                fixed = "(" + re.sub(r"[\s()]", "", key) + ")"
                fixed = re.sub(r"[^,()]", lambda c: c.group().upper(), fixed).replace("X", "x")
                hint = f"did you mean {_toml(fixed)}?" if _TAG_RE.match(fixed) else _TAG_HINT
                self.add(at, f"{section} {_toml(key)} is not a tag; {hint}")
                return None
            return profiles.parse_selector(key)
        target = profiles.parse_selector(key)
        if target is not None:
            return target
        if key in _repeater_keywords():
            pattern = _repeater_keywords()[key]
            self.add(
                at,
                f"{section} {_toml(key)} is a repeating-group attribute; "
                f"name all its groups with {_toml(pattern)}",
            )
            return None
        close = _keywords_by_lower().get(key.lower()) or _close(key, _all_keywords(), 0.75)
        hint = f"; did you mean {_toml(close)}?" if close else " or a (gggg,eeee) tag"
        self.add(at, f"{section} {_toml(key)} is not a DICOM keyword{hint}")
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
                f"{section} {_key_text(key)} repeats {_key_text(first)} (line {line}); {both}",
                "warning",
            )
        else:
            self.add(
                at,
                f"{section} {_key_text(key)} = {_toml(value)} contradicts "
                f"{_key_text(first)} = {_toml(first_value)} (line {line}); {both}",
            )

    def offsets(self, at: Key, label: str, value: Any) -> None:
        if not isinstance(value, list):
            self.add(at, f'{label} must be a list of offsets such as ["xx10"], not {_kind(value)}')
            return
        for i, item in enumerate(value):
            if not (isinstance(item, str) and _OFFSET_RE.match(item)):
                self.add(
                    (*at, i),
                    f"{label}: {_toml(item)} is not an element offset; "
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
                    f"{label}: box {i + 1} {_toml(box)} is empty or inverted; "
                    "need left < right and top < bottom (negative values count from "
                    "the far edge)",
                )

    # -- extends

    def check_extends(self) -> dict[str, Any] | None:
        """The merged settings of the bases, or None if any base cannot be followed."""
        merged: dict[str, Any] = {}
        ok = True
        own = self.path.resolve()
        for ref, at in _extends_refs(self.data):
            result = _follow(ref, own.parent, (own,))
            if isinstance(result, str):
                self.add(at, result)
                ok = False
            else:
                _merge(merged, result)
        return merged if ok else None

    # -- contradictions between settings

    def check_contradictions(self, resolved: dict[str, Any] | None) -> None:
        """Settings that cannot all hold; `resolved` (None if a base is broken) adds the bases."""
        own = self.data
        if resolved is not None and _lookup(resolved, "safe_harbor", "claim") is True:
            for forbid in self.schema["claim_forbids"]:
                section: list[str] = forbid["section"].split(".")
                key, bad = forbid["key"], forbid["value"]
                if _lookup(resolved, *section, key) != bad:
                    continue
                setting = f"[{forbid['section']}] {key} = {_toml(bad)}"
                if _lookup(own, *section, key) == bad:
                    where: Key = (*section, key)
                    self.add(
                        where,
                        f"{setting} contradicts [safe_harbor] claim = true: {forbid['why']}",
                    )
                elif _lookup(own, "safe_harbor", "claim") is True:
                    self.add(
                        ("safe_harbor", "claim"),
                        f"[safe_harbor] claim = true contradicts {setting}, set by a profile "
                        f"this one extends: {forbid['why']}",
                    )
        uids, vr_ui = _lookup(own, "uids", "action"), _lookup(own, "tags", "vr", "UI")
        if uids is not None and vr_ui is not None and uids != vr_ui:
            line = self.lines.line_of(("tags", "vr", "UI"))
            self.add(
                ("uids", "action"),
                f"[uids] action = {_toml(uids)} contradicts [tags.vr] UI = {_toml(vr_ui)} "
                f"(line {line}); both say what happens to UIDs no rule names",
            )
        if resolved is not None and isinstance(_lookup(own, "dates", "max_shift_days"), int):
            mode = _lookup(resolved, "dates", "mode")
            if mode != "shift":
                now = f"mode is {_toml(mode)}" if isinstance(mode, str) else "mode is not set"
                self.add(
                    ("dates", "max_shift_days"),
                    f'[dates] max_shift_days has no effect unless [dates] mode = "shift" ({now})',
                    "warning",
                )

    # -- the loader's view, and a Safe Harbor claim

    def check_loads(self) -> None:
        """Load the file as `deid` will; a Safe Harbor claim (or `prove`) then needs no gaps."""
        extends: Key = ("extends",) if "extends" in self.data else ()
        try:
            profile = profiles.load(str(self.path.resolve()))
        except ProfileError as exc:
            text = str(exc)
            m = re.match(r"^([^:\n]+:\d+(?: [^:\n]*)?): (.*)$", text, re.DOTALL)
            source, message = (m.group(1), m.group(2)) if m else ("", text)
            self.at_source(source, f"the profile loader rejects this: {message}", extends)
            return
        if profile.claims_safe_harbor:
            lead = "claims Safe Harbor, but"
            anchor = ("safe_harbor", "claim") if "safe_harbor" in self.data else extends
        elif self.prove:
            lead, anchor = "not Safe Harbor:", extends
        else:
            return
        for gap in _gaps(profile):
            self.at_source(gap.where, f"{lead} {gap.category}: {gap.message}", anchor)

    def at_source(self, source: str, message: str, anchor: Key) -> None:
        """Report at the line `source` names if it is in this file, else at `anchor`."""
        m = re.match(r"^([^:\n]+):(\d+)", source)
        if m and m.group(1) == self.path.name and int(m.group(2)) > 0:
            self.problems.append(Problem(self.file, int(m.group(2)), message))
        else:
            self.add(anchor, f"{message} (set at {source})" if source else message)


# ---- Safe Harbor and Annex E coverage ------------------------------------------------


def _effective(rule: profiles.Rule, profile: profiles.Profile) -> str:
    """What a rule really does, in the words of profile_schema.toml's [basic_profile]."""
    action = str(rule.action.value)
    if action == "keep" and rule.allowed:
        return "keep-listed"
    mode = {"date": str(profile.date_mode), "age": str(profile.age_mode)}.get(action)
    return mode if mode in ("keep", "remove") else action


def _fate(rule: profiles.Rule, profile: profiles.Profile) -> str:
    effect, action = _effective(rule, profile), str(rule.action.value)
    if effect == "keep" and action in ("date", "age"):
        section = "dates" if action == "date" else "ages"
        return f'kept unchanged ([{section}] mode = "keep")'
    if effect == "keep":
        return "kept"
    if effect == "keep-listed":
        return "kept when it is one of " + ", ".join(rule.allowed)
    return profile.describe(rule)


def _allowed(row: Mapping[str, Any], claimed: Sequence[str]) -> set[str]:
    """Actions at least as strict as the row's Basic Profile code, given the claimed options."""
    spec = _schema()["basic_profile"]
    everything = {*_schema()["actions"]["names"], "replace", "keep-listed"}
    everything |= {str(a.value) for a in profiles.Action}
    allowed: set[str] = set()
    for code in str(row["basic"]).rstrip("*").split("/"):
        allowed |= everything if code == "K" else set(spec["codes"].get(code, []))
    if row["basic"] in spec["keep_sequences"]:
        allowed |= {"keep", "keep-listed"}
    for option in claimed:
        column = spec["options"].get(option)
        if column is None:
            continue
        cell = row["options"][column["column"]]
        if cell == "K":
            allowed |= everything
        elif cell == "C":
            allowed |= set(spec["cleaning"])
            if column["c_keeps"]:
                allowed.add("keep")
    return allowed


def _probes(row: Mapping[str, Any]) -> list[tuple[int, str | None]]:
    """Tags standing for an Annex E row: itself, or the ends of a repeating group range."""
    digits = str(row["tag"]).strip("()").replace(",", "").upper()
    if digits == "GGGGEEEE":
        return [(0x00190010, "LO"), (0x00191010, "LO")]
    group, element = digits[:4], digits[4:]
    groups = [group.replace("XX", "00"), group.replace("XX", "1E")] if "X" in group else [group]
    elements = [element.replace("X", "0")]
    if element == "XXXX":
        elements.append("3000")
    tags = [int(g + e, 16) for g in dict.fromkeys(groups) for e in elements]
    return [(tag, profiles.dictionary_vr(tag)) for tag in tags]


def _row_label(row: Mapping[str, Any]) -> str:
    if str(row["tag"]).lower() == "(gggg,eeee)":
        return "private attributes"
    return f"{row['tag']} {row['keyword'] or row['name']}"


def _category_leak(rule: profiles.Rule, profile: profiles.Profile) -> str | None:
    """How a rule leaks a Safe Harbor identifier, or None if it removes or transforms it."""
    effect = _effective(rule, profile)
    if effect == "keep":
        return _fate(rule, profile)
    if effect == "date" and str(profile.date_mode) == "shift":
        return 'shifted ([dates] mode = "shift"), which keeps a month and a day'
    return None


def _gaps(profile: profiles.Profile) -> list[Gap]:
    gaps: list[Gap] = []
    claimed = profile.method_options()
    words: Mapping[str, str] = _schema()["basic_profile"]["words"]
    for row in profiles.annex_e_rows():
        allowed = _allowed(row, claimed)
        for tag, vr in _probes(row):
            rule = profile.rule_for(tag, vr)
            if _effective(rule, profile) not in allowed:
                basic = str(row["basic"])
                says = f"{basic} ({words.get(basic, basic)})"
                message = (
                    f"{_row_label(row)} is {_fate(rule, profile)}; the Basic Profile says {says}"
                )
                gaps.append(Gap("PS3.15 Annex E", rule.source, message))
                break
    tags = _keyword_tags()
    for category in _categories():
        name = f"({category['letter']}) {category['title']}"
        listed = {*category["keywords"], *category["not_checked"]}
        for keyword in category["keywords"]:
            tag = tags[keyword]
            rule = profile.rule_for(tag, profiles.dictionary_vr(tag))
            leak = _category_leak(rule, profile)
            if leak:
                gaps.append(Gap(name, rule.source, f"{keyword} is {leak}"))
        for vr in category["vrs"]:
            rule = profile.vr_rules.get(vr, profile.unlisted)
            leak = _category_leak(rule, profile)
            if leak:
                gaps.append(Gap(name, rule.source, f"{vr} attributes no rule names are {leak}"))
            for tag, named in sorted(profile.tag_rules.items()):
                keyword = _keyword_of(tag)
                leak = _category_leak(named, profile)
                if leak and keyword not in listed and profiles.dictionary_vr(tag) == vr:
                    gaps.append(Gap(name, named.source, f"{keyword} ({vr}) is {leak}"))
    return gaps
