"""De-identification profiles: TOML files that give one action per attribute.

A profile names the attributes it lets through; anything it does not name gets the
`unlisted` rule, which the built-in profiles set to `remove` (an allowlist), so a new,
odd or private attribute can never leak by being forgotten. Every rule knows the file and
line that set it and can describe itself, so `deid profiles show` and `deid inspect`
print the same words the profile means.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword

from deid.errors import ProfileError

DEFAULT_PROFILE = "safe-harbor"


class Action(StrEnum):
    """What a rule does to an attribute."""

    KEEP = "keep"
    REMOVE = "remove"
    EMPTY = "empty"
    REPLACE = "replace"
    PSEUDONYMIZE = "pseudonymize"
    DATE = "date"
    AGE = "age"


class DateMode(StrEnum):
    REMOVE = "remove"
    YEAR_ONLY = "year-only"
    KEEP = "keep"


_DATE_WORDS = {
    DateMode.REMOVE: "removed",
    DateMode.YEAR_ONLY: "reduced to the year (dates become YYYY0101; times are emptied)",
    DateMode.KEEP: "kept unchanged (not Safe Harbor)",
}


@dataclass(frozen=True)
class Rule:
    """One action for the attributes a selector matches, with where it was set."""

    action: Action
    selector: str
    source: str
    value: str | None = None
    date_mode: DateMode = DateMode.YEAR_ONLY
    allowed: tuple[str, ...] = ()

    def describe(self) -> str:
        """The rule's own words, used by `profiles show`, `inspect` and the docs."""
        match self.action:
            case Action.KEEP if self.allowed:
                return f"kept if one of {', '.join(self.allowed)}; otherwise emptied"
            case Action.KEEP:
                return "kept (items of a sequence are processed by the same rules)"
            case Action.REMOVE:
                return "removed"
            case Action.EMPTY:
                return "kept with an empty value"
            case Action.REPLACE:
                return f"replaced by the fixed value {self.value!r}"
            case Action.PSEUDONYMIZE:
                return (
                    "replaced by a keyed HMAC-SHA256 pseudonym "
                    "(UIDs under 2.25, well-known standard UIDs kept)"
                )
            case Action.DATE:
                return _DATE_WORDS[self.date_mode]
            case Action.AGE:
                return "kept, with ages over 89 set to 090Y (90 or older)"
        raise AssertionError(self.action)


_TAG_RE = re.compile(r"^\(([0-9A-Fa-fx]{4}),([0-9A-Fa-fx]{4})\)$")
_VR_RE = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class _Mask:
    """A `(60xx,xxxx)`-style pattern: value bits must match where the mask is set."""

    mask: int
    value: int
    rule: Rule


def parse_selector(selector: str) -> int | _Mask | None:
    """A keyword or `(gggg,eeee)` gives a tag; a pattern with x gives a mask."""
    m = _TAG_RE.match(selector)
    if m:
        text = (m.group(1) + m.group(2)).upper()
        if "X" not in text:
            return int(text, 16)
        mask = int("".join("0" if c == "X" else "F" for c in text), 16)
        value = int(text.replace("X", "0"), 16)
        return _Mask(mask, value, Rule(Action.REMOVE, selector, ""))
    tag = tag_for_keyword(selector)
    return int(tag) if tag is not None else None


@dataclass
class Profile:
    """A resolved profile: its own settings merged over those it extends."""

    name: str
    description: str
    sources: list[str]
    unlisted: Rule
    private: Rule
    tag_rules: dict[int, Rule] = field(default_factory=dict)
    mask_rules: list[_Mask] = field(default_factory=list)
    vr_rules: dict[str, Rule] = field(default_factory=dict)
    date_mode: DateMode = DateMode.YEAR_ONLY
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def rule_for(self, tag: int, vr: str | None) -> Rule:
        """The rule for one attribute: exact tag, then pattern, then VR, then unlisted."""
        rule = self.tag_rules.get(tag)
        if rule is not None:
            return rule
        if tag >> 16 & 1:
            return self.private
        for mask in self.mask_rules:
            if tag & mask.mask == mask.value:
                return mask.rule
        if vr is not None and vr in self.vr_rules:
            return self.vr_rules[vr]
        return self.unlisted

    def section(self, name: str) -> dict[str, Any]:
        """A settings table such as `text`, `render`, `png` or `objects` (empty if absent)."""
        return self.sections.get(name, {})

    def method_options(self) -> list[str]:
        """The Annex E options this profile claims (recorded in the method code sequence)."""
        return list(self.section("method").get("options", []))

    def rules(self) -> Iterator[tuple[str, Rule]]:
        """Every rule with a readable selector, in a stable order, for listings."""
        for tag, rule in sorted(self.tag_rules.items()):
            keyword = keyword_for_tag(tag) or ""
            yield f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {keyword}".rstrip(), rule
        for mask in self.mask_rules:
            yield mask.rule.selector, mask.rule
        for vr, rule in sorted(self.vr_rules.items()):
            yield f"any {vr} attribute not named above", rule
        yield "private attributes", self.private
        yield "any other attribute", self.unlisted


def builtin_dir() -> Path:
    """Where the built-in profiles live: inside the installed package, or the checkout."""
    packaged = Path(str(resources.files("deid"))) / "builtin_profiles"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "profiles"


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.toml"))


def _locate(ref: str, relative_to: Path | None) -> Path:
    if ref.endswith(".toml") or "/" in ref:
        path = Path(ref)
        if not path.is_absolute() and relative_to is not None:
            path = relative_to / path
        if not path.is_file():
            raise ProfileError(f"profile file not found: {ref}")
        return path
    path = builtin_dir() / f"{ref}.toml"
    if not path.is_file():
        names = ", ".join(builtin_names())
        raise ProfileError(f"unknown profile {ref!r}; built-in profiles are: {names}")
    return path


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """Map (table, key) to its line number, so every rule can say where it was set."""
    lines: dict[tuple[str, str], int] = {}
    table = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("["):
            table = line.strip("[]").strip()
            continue
        m = re.match(r'^("([^"]+)"|([A-Za-z0-9_\-]+))\s*=', line)
        if m:
            lines[(table, m.group(2) or m.group(3))] = number
    return lines


def _read(path: Path) -> tuple[dict[str, Any], dict[tuple[str, str], int]]:
    text = path.read_text(encoding="utf-8")
    try:
        return tomllib.loads(text), _key_lines(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from exc


def _make_rule(raw: Any, selector: str, source: str, date_mode: DateMode, where: str) -> Rule:
    if isinstance(raw, Mapping):
        if set(raw) == {"keep"} and isinstance(raw["keep"], list):
            values = tuple(str(v) for v in raw["keep"])
            return Rule(Action.KEEP, selector, source, None, date_mode, values)
        if set(raw) != {"replace"}:
            raise ProfileError(
                f'{where}: a table rule is {{ replace = "VALUE" }} or {{ keep = ["VALUE", ...] }}'
            )
        return Rule(Action.REPLACE, selector, source, str(raw["replace"]), date_mode)
    try:
        action = Action(raw)
    except ValueError:
        choices = ", ".join(a.value for a in Action)
        raise ProfileError(f"{where}: unknown action {raw!r}; use one of: {choices}") from None
    if action is Action.REPLACE:
        raise ProfileError(f'{where}: write a replacement as {{ replace = "VALUE" }}')
    return Rule(action, selector, source, None, date_mode)


def load(ref: str = DEFAULT_PROFILE, *, _seen: tuple[Path, ...] = ()) -> Profile:
    """Load a profile by built-in name or path, resolving `extends` depth-first."""
    path = _locate(ref, _seen[-1].parent if _seen else None).resolve()
    if path in _seen:
        chain = " -> ".join(p.name for p in (*_seen, path))
        raise ProfileError(f"circular extends: {chain}")
    data, lines = _read(path)
    bases = data.get("extends", [])
    bases = [bases] if isinstance(bases, str) else list(bases)
    if bases:
        profile = load(bases[0], _seen=(*_seen, path))
        for other in bases[1:]:
            _merge(profile, load(other, _seen=(*_seen, path)))
    else:
        blank = Rule(Action.REMOVE, "any other attribute", "built-in default")
        profile = Profile("", "", [], blank, Rule(Action.REMOVE, "private", "built-in default"))
    _apply(profile, path, data, lines)
    return profile


def _merge(into: Profile, other: Profile) -> None:
    into.tag_rules.update(other.tag_rules)
    into.mask_rules = other.mask_rules + into.mask_rules
    into.vr_rules.update(other.vr_rules)
    into.unlisted, into.private, into.date_mode = other.unlisted, other.private, other.date_mode
    for name, table in other.sections.items():
        into.sections.setdefault(name, {}).update(table)
    into.sources += other.sources


def _apply(
    profile: Profile, path: Path, data: dict[str, Any], lines: dict[tuple[str, str], int]
) -> None:
    def src(table: str, key: str) -> str:
        return f"{path.name}:{lines.get((table, key), 0)}"

    profile.name = str(data.get("name", path.stem))
    profile.description = str(data.get("description", profile.description)).strip()
    profile.sources.append(str(path))
    dates = data.get("dates", {})
    if "mode" in dates:
        try:
            profile.date_mode = DateMode(dates["mode"])
        except ValueError:
            modes = ", ".join(m.value for m in DateMode)
            raise ProfileError(
                f"{src('dates', 'mode')}: unknown date mode {dates['mode']!r}; use one of: {modes}"
            ) from None
    mode = profile.date_mode
    tags = data.get("tags", {})
    if "unlisted" in tags:
        where = src("tags", "unlisted")
        profile.unlisted = _make_rule(tags["unlisted"], "any other attribute", where, mode, where)
    if "private" in tags:
        where = src("tags", "private")
        profile.private = _make_rule(tags["private"], "private attributes", where, mode, where)
    for vr, raw in tags.get("vr", {}).items():
        where = src("tags.vr", vr)
        if not _VR_RE.match(vr):
            raise ProfileError(f"{where}: {vr!r} is not a two-letter VR")
        profile.vr_rules[vr] = _make_rule(raw, f"VR {vr}", where, mode, where)
    for selector, raw in tags.get("rules", {}).items():
        where = src("tags.rules", selector)
        rule = _make_rule(raw, selector, where, mode, where)
        parsed = parse_selector(selector)
        if parsed is None:
            raise ProfileError(f"{where}: {selector!r} is not a DICOM keyword or (gggg,eeee) tag")
        if isinstance(parsed, _Mask):
            profile.mask_rules.insert(0, _Mask(parsed.mask, parsed.value, rule))
        else:
            profile.tag_rules[parsed] = rule
    for rule in list(profile.tag_rules.values()):
        if rule.action is Action.DATE and rule.date_mode is not mode:
            profile.tag_rules = {
                t: Rule(r.action, r.selector, r.source, r.value, mode, r.allowed)
                if r.action is Action.DATE
                else r
                for t, r in profile.tag_rules.items()
            }
            break
    for name, table in data.items():
        if isinstance(table, dict) and name not in ("tags", "dates"):
            profile.sections.setdefault(name, {}).update(table)
