"""Checking profiles before anyone trusts them: every mistake at once, each with its line.

A profile that loads is not yet a profile that does what its author meant. A misspelt
keyword, an unknown action or a setting in the wrong section would make the loader stop
at the first mistake, or, worse, be accepted and do nothing. CI runs `validate_paths` on
every profile a change touches and wants all the problems in one run, each as
`file:line: message` so editors and CI annotations can jump to it; `deid.compiler` runs
the same checks before a profile is used at all.

`validate_file` checks the file against the schema (`deid.schema`), follows `extends`,
looks for settings that contradict each other, and then loads what the schema accepts,
leaving out the entries it rejects, to prove a Safe Harbor claim (`deid.safe_harbor`) on
what the profile would do. So one run lists the typos and the Safe Harbor gaps together.
Messages quote profile text, which holds no PHI, and never a value from a DICOM file.
Nothing here prints.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deid import profiles, safe_harbor
from deid.errors import ProfileError
from deid.safe_harbor import Gap as Gap
from deid.safe_harbor import safe_harbor_gaps as safe_harbor_gaps
from deid.schema import Severity, Structure, profile_schema, suggest
from deid.tomlkeys import Key, KeyLines, syntax_error, toml_text


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
    cycles, and rules that contradict each other. Then the profile is loaded the way
    `deid` will load it, from what the schema accepts in this file and in every file it
    extends; every Safe Harbor gap of that profile is a problem too if it claims Safe
    Harbor (`[safe_harbor] claim = true`, here or in a profile it extends) or
    `safe_harbor` asks for the proof anyway. A gap is reported at the line to change when
    this file has it (the rule, or the `[dates]`/`[ages]` mode that lets a value through),
    else at the claim (or `extends`) with the base's `file:line`; a gap at a line that
    already has an error is left out, as that error says why.
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
        line, message = syntax_error(exc, text)
        return [Problem(file, line, f"not valid TOML: {message}")]
    checker = _Checker(file, path, data, KeyLines(text), safe_harbor)
    checker.run()
    return sorted(checker.problems, key=lambda p: p.line)


def extends_refs(data: Mapping[str, Any]) -> list[tuple[str, Key]]:
    """The profiles a file's `extends` names, each with its key (for its line)."""
    raw = data.get("extends")
    if isinstance(raw, str):
        return [(raw, ("extends",))]
    if isinstance(raw, list):
        return [(r, ("extends", i)) for i, r in enumerate(raw) if isinstance(r, str)]
    return []


def extends_target(ref: str, folder: Path) -> Path | str:
    """Where `extends = ref` points, as profiles.load resolves it, or why it points nowhere."""
    if ref.endswith(".toml") or "/" in ref:
        path = Path(ref)
        path = path if path.is_absolute() else folder / path
        if not path.is_file():
            return f"extends {toml_text(ref)}: no such file (paths are relative to the profile)"
        return path.resolve()
    path = profiles.builtin_dir() / f"{ref}.toml"
    if not path.is_file():
        names = profiles.builtin_names()
        hint = suggest(ref, names, '"{}"', "built-in profiles are")
        return f"extends {toml_text(ref)}: no built-in profile of that name{hint}"
    return path.resolve()


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


def _follow(ref: str, folder: Path, chain: tuple[Path, ...]) -> dict[str, Any] | str:
    """The settings `ref` resolves to (its bases merged under it), or what is wrong."""
    target = extends_target(ref, folder)
    if isinstance(target, str):
        return target
    if target in chain:
        return "circular extends: " + " -> ".join(p.name for p in (*chain, target))
    try:
        text = target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return f"extends {toml_text(ref)}: {target.name} cannot be read"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = syntax_error(exc, text)[0]
        return f"extends {toml_text(ref)}: {target.name} is not valid TOML (line {line})"
    merged: dict[str, Any] = {}
    for sub, _ in extends_refs(data):
        result = _follow(sub, target.parent, (*chain, target))
        if isinstance(result, str):
            return (
                result if result.startswith("circular") else f"extends {toml_text(ref)}: {result}"
            )
        _merge(merged, result)
    return _merge(merged, data)


def _accepted(path: Path) -> tuple[dict[str, Any], KeyLines]:
    """A profile file's settings without the entries the schema rejects (a loader's reader)."""
    data, lines = profiles.read(path)
    structure = Structure(data, lines)
    structure.run()
    return structure.accepted(), lines


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
        self.problems: list[Problem] = []
        self.gaps: list[Problem] = []

    def add(self, at: Key, message: str, severity: Severity = "error") -> None:
        self.problems.append(Problem(self.file, self.lines.line_of(at), message, severity))

    def run(self) -> None:
        structure = Structure(self.data, self.lines)
        structure.run()
        for finding in structure.findings:
            self.add(finding.at, finding.message, finding.severity)
        bases = self.check_extends()
        resolved = None if bases is None else _merge(_merge({}, bases), self.data)
        self.check_contradictions(resolved)
        if resolved is not None and ("extends",) not in structure.rejected:
            self.check_loads(structure.accepted())
        explained = {p.line for p in self.problems if p.severity == "error"}
        self.problems += [gap for gap in self.gaps if gap.line not in explained]

    # -- extends

    def check_extends(self) -> dict[str, Any] | None:
        """The merged settings of the bases, or None if any base cannot be followed."""
        merged: dict[str, Any] = {}
        ok = True
        own = self.path.resolve()
        for ref, at in extends_refs(self.data):
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
            for forbid in profile_schema()["claim_forbids"]:
                section: list[str] = forbid["section"].split(".")
                key, bad = forbid["key"], forbid["value"]
                if _lookup(resolved, *section, key) != bad:
                    continue
                setting = f"[{forbid['section']}] {key} = {toml_text(bad)}"
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
                f"[uids] action = {toml_text(uids)} contradicts [tags.vr] UI = {toml_text(vr_ui)} "
                f"(line {line}); both say what happens to UIDs no rule names",
            )
        if resolved is not None and isinstance(_lookup(own, "dates", "max_shift_days"), int):
            mode = _lookup(resolved, "dates", "mode")
            if mode != "shift":
                now = f"mode is {toml_text(mode)}" if isinstance(mode, str) else "mode is not set"
                self.add(
                    ("dates", "max_shift_days"),
                    f'[dates] max_shift_days has no effect unless [dates] mode = "shift" ({now})',
                    "warning",
                )

    # -- the loader's view, and a Safe Harbor claim

    def check_loads(self, accepted: dict[str, Any]) -> None:
        """Load what the schema accepts, as `deid` would; then prove a Safe Harbor claim.

        The proof runs if the profile claims Safe Harbor, here or by `extends` (the
        message names the file the claim comes from), or if `prove` asks for it.
        """
        own = self.path.resolve()
        extends: Key = ("extends",) if "extends" in self.data else ()

        def reader(path: Path) -> tuple[dict[str, Any], KeyLines]:
            return (accepted, self.lines) if path == own else _accepted(path)

        try:
            profile = profiles.load(str(own), reader=reader)
        except ProfileError as exc:
            text = str(exc)
            m = re.match(r"^([^:\n]+:\d+(?: [^:\n]*)?): (.*)$", text, re.DOTALL)
            source, message = (m.group(1), m.group(2)) if m else ("", text)
            self.at_source(source, f"the profile loader rejects this: {message}", extends)
            return
        anchor: Key = extends
        if profile.claims_safe_harbor and _lookup(self.data, "safe_harbor", "claim") is True:
            lead, anchor = "claims Safe Harbor, but", ("safe_harbor", "claim")
        elif profile.claims_safe_harbor:
            origin = profile.source_of("safe_harbor.claim").rsplit(":", 1)[0]
            lead = f"claims Safe Harbor (inherited from {origin}), but"
        elif self.prove:
            lead = "not Safe Harbor:"
        else:
            return
        for gap in safe_harbor.gaps(profile):
            self.at_source(gap.where, f"{lead} {gap.category}: {gap.message}", anchor, gap=True)

    def at_source(self, source: str, message: str, anchor: Key, *, gap: bool = False) -> None:
        """Report at the line `source` names if it is in this file, else at `anchor`."""
        m = re.match(r"^([^:\n]+):(\d+)", source)
        if m and m.group(1) == self.path.name and int(m.group(2)) > 0:
            problem = Problem(self.file, int(m.group(2)), message)
        else:
            text = f"{message} (set at {source})" if source else message
            problem = Problem(self.file, self.lines.line_of(anchor), text)
        (self.gaps if gap else self.problems).append(problem)
