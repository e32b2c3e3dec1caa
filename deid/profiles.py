"""De-identification profiles: TOML files that give one action per attribute.

A profile names the attributes it lets through; anything it does not name gets the
`unlisted` rule, which the built-in Safe Harbor profiles set to `remove` (an allowlist),
so a new, odd or private attribute can never leak by being forgotten. A profile may also
generate its rules from DICOM PS3.15 Table E.1-1 with a chosen set of the standard's
options. Every rule knows the file and line that set it, and its action (`deid.actions`)
describes it, so `deid profiles show` and `deid inspect` print the same words the profile
means.

`load` builds a profile from files it trusts; a run goes through `deid.compiler`, which
checks every file against the profile schema first.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from deid.actions import DATE_VRS
from deid.actions import Action as Action
from deid.actions import AgeMode as AgeMode
from deid.actions import DateMode as DateMode
from deid.actions import Modes as Modes
from deid.actions import Rule as Rule
from deid.actions import Survives as Survives
from deid.errors import ProfileError
from deid.tomlkeys import KeyLines

DEFAULT_PROFILE = "safe-harbor"


ANNEX_E_OPTIONS = {
    "retain-safe-private": "retain_safe_private",
    "retain-uids": "retain_uids",
    "retain-device-identity": "retain_device_identity",
    "retain-institution-identity": "retain_institution_identity",
    "retain-patient-characteristics": "retain_patient_characteristics",
    "retain-longitudinal-full-dates": "retain_long_full_dates",
    "retain-longitudinal-modified-dates": "retain_long_modified_dates",
    "clean-descriptors": "clean_descriptors",
    "clean-structured-content": "clean_structured_content",
    "clean-graphics": "clean_graphics",
}


_TAG_RE = re.compile(r"^\(([0-9A-Fa-fxX]{4}),([0-9A-Fa-fxX]{4})\)$")
_VR_RE = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class Mask:
    """A `(60xx,xxxx)`-style pattern: value bits must match where the mask is set."""

    mask: int
    value: int
    rule: Rule


def parse_selector(selector: str) -> int | tuple[int, int] | None:
    """A keyword or `(gggg,eeee)` gives a tag; a pattern with x gives (mask, value)."""
    m = _TAG_RE.match(selector)
    if m:
        text = (m.group(1) + m.group(2)).upper()
        if "X" not in text:
            return int(text, 16)
        mask = int("".join("0" if c == "X" else "F" for c in text), 16)
        return mask, int(text.replace("X", "0"), 16)
    tag = tag_for_keyword(selector)
    if tag is not None:
        return int(tag)
    return extra_keywords().get(selector)


@cache
def annex_e_rows() -> list[dict[str, Any]]:
    """DICOM PS3.15 2026d Table E.1-1 (c) NEMA, as shipped in the package."""
    text = (resources.files("deid") / "data" / "ps3.15-annex-e.json").read_text("utf-8")
    rows: list[dict[str, Any]] = json.loads(text)
    return rows


@cache
def extra_keywords() -> dict[str, int]:
    """Keywords of Annex E attributes newer than pydicom's dictionary."""
    found = {}
    for row in annex_e_rows():
        parsed = _TAG_RE.match(row["tag"])
        if row["keyword"] and parsed and "X" not in row["tag"].upper():
            found[row["keyword"]] = int(parsed.group(1) + parsed.group(2), 16)
    return found


@dataclass
class Profile:
    """A resolved profile: its own settings merged over those it extends."""

    name: str
    description: str
    sources: list[str]
    unlisted: Rule
    private: Rule
    tag_rules: dict[int, Rule] = field(default_factory=dict)
    mask_rules: list[Mask] = field(default_factory=list)
    vr_rules: dict[str, Rule] = field(default_factory=dict)
    date_mode: DateMode = DateMode.YEAR_ONLY
    shift_days: int = 365
    age_mode: AgeMode = AgeMode.BAND_90
    safe_private: dict[str, frozenset[int]] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    explicit: dict[int, Rule] = field(default_factory=dict)
    explicit_settings: set[str] = field(default_factory=set)
    setting_sources: dict[str, str] = field(default_factory=dict)

    def rule_for(self, tag: int, vr: str | None) -> Rule:
        """The rule for one attribute: exact tag, then pattern, then VR, then unlisted."""
        rule = self.tag_rules.get(tag)
        if rule is not None:
            return rule
        for mask in self.mask_rules:
            if tag & mask.mask == mask.value:
                return mask.rule
        if tag >> 16 & 1:
            return self.private
        if vr is not None and vr in self.vr_rules:
            return self.vr_rules[vr]
        return self.unlisted

    @property
    def modes(self) -> Modes:
        """The settings that decide what the `date` and `age` actions do."""
        return Modes(self.date_mode, self.age_mode, self.shift_days)

    def describe(self, rule: Rule) -> str:
        """A rule's words with this profile's date and age settings."""
        return rule.describe(self.modes)

    def survives(self, rule: Rule) -> Survives:
        """What of an original value may survive a rule, with this profile's settings."""
        return rule.survives(self.modes)

    def source_of(self, setting: str) -> str:
        """The `file:line` that set a `section.key` setting, or "built-in default"."""
        return self.setting_sources.get(setting, "built-in default")

    def section(self, name: str) -> dict[str, Any]:
        """A settings table such as `text`, `render`, `png` or `objects` (empty if absent)."""
        return self.sections.get(name, {})

    def method_options(self) -> list[str]:
        """The Annex E options this profile claims (recorded in the method code sequence)."""
        options = self.section("method").get("options")
        if options is None:
            options = self.section("annex_e").get("options", [])
        return list(options)

    @property
    def claims_safe_harbor(self) -> bool:
        return bool(self.section("safe_harbor").get("claim", False))

    def rules(self) -> Iterator[tuple[str, Rule]]:
        """Every rule with a readable selector, in a stable order, for listings."""
        for tag, rule in sorted(self.tag_rules.items()):
            keyword = keyword_for_tag(tag) or ""
            yield f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {keyword}".rstrip(), rule
        for mask in self.mask_rules:
            yield mask.rule.selector, mask.rule
        for vr, rule in sorted(self.vr_rules.items()):
            yield f"any {vr} attribute not named above", rule
        for creator, elements in sorted(self.safe_private.items()):
            offsets = ", ".join(f"xx{e:02X}" for e in sorted(elements))
            yield f"private {creator!r} {offsets}", Rule(Action.KEEP, creator, "safe private")
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


def locate(ref: str, relative_to: Path | None = None) -> Path:
    """The file a profile reference names: a built-in name, or a path."""
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


Reader = Callable[[Path], tuple[dict[str, Any], KeyLines]]


def read(path: Path) -> tuple[dict[str, Any], KeyLines]:
    """A profile file's settings and the line of each key, as `load` reads them."""
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from exc
    return data, KeyLines(text)


def make_rule(raw: Any, selector: str, source: str) -> Rule:
    """A rule from its TOML value: an action name or a `replace`/`keep` inline table."""
    if isinstance(raw, Mapping):
        if set(raw) == {"keep"} and isinstance(raw["keep"], list):
            return Rule(Action.KEEP, selector, source, None, tuple(str(v) for v in raw["keep"]))
        if set(raw) != {"replace"}:
            raise ProfileError(
                f'{source}: a table rule is {{ replace = "VALUE" }} or {{ keep = ["VALUE", ...] }}'
            )
        return Rule(Action.REPLACE, selector, source, str(raw["replace"]))
    try:
        action = Action(raw)
    except ValueError:
        choices = ", ".join(a.value for a in Action)
        raise ProfileError(f"{source}: unknown action {raw!r}; use one of: {choices}") from None
    if action is Action.REPLACE:
        raise ProfileError(f'{source}: write a replacement as {{ replace = "VALUE" }}')
    return Rule(action, selector, source)


def load(ref: str = DEFAULT_PROFILE, *, reader: Reader = read) -> Profile:
    """Load a profile by built-in name or path, resolving `extends` depth-first.

    Each file's settings come from `reader`; the validator passes one that leaves out
    what the schema rejects, to see what the rest of a broken profile would do. Raises
    `ProfileError` at the first thing it cannot build; it does not check the schema
    (`deid.compiler.compile_profile` does, for every file, before anything runs).
    """
    return _load(ref, reader, ())


def _load(ref: str, reader: Reader, seen: tuple[Path, ...]) -> Profile:
    path = locate(ref, seen[-1].parent if seen else None).resolve()
    if path in seen:
        chain = " -> ".join(p.name for p in (*seen, path))
        raise ProfileError(f"circular extends: {chain}")
    data, lines = reader(path)
    bases = data.get("extends", [])
    bases = [bases] if isinstance(bases, str) else list(bases)
    if bases:
        profile = _load(bases[0], reader, (*seen, path))
        for other in bases[1:]:
            _merge(profile, _load(other, reader, (*seen, path)))
    else:
        default = "built-in default"
        profile = Profile(
            "",
            "",
            [],
            Rule(Action.REMOVE, "any other attribute", default),
            Rule(Action.REMOVE, "private attributes", default),
        )
    _apply(profile, path, data, lines)
    return profile


def _merge(into: Profile, other: Profile) -> None:
    into.tag_rules.update(other.tag_rules)
    into.explicit.update(other.explicit)
    into.mask_rules = other.mask_rules + into.mask_rules
    into.vr_rules.update(other.vr_rules)
    into.safe_private.update(other.safe_private)
    # A later base overrides an earlier one only in what it sets itself.
    chosen = other.explicit_settings
    if "tags.unlisted" in chosen:
        into.unlisted = other.unlisted
    if "tags.private" in chosen:
        into.private = other.private
    if "dates.mode" in chosen:
        into.date_mode = other.date_mode
    if "dates.max_shift_days" in chosen:
        into.shift_days = other.shift_days
    if "ages.mode" in chosen:
        into.age_mode = other.age_mode
    into.explicit_settings |= chosen
    into.setting_sources.update(other.setting_sources)
    for name, table in other.sections.items():
        into.sections.setdefault(name, {}).update(table)
    into.sources += other.sources


def _enum(kind: type[StrEnum], value: Any, where: str, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise ProfileError(f"{where}: unknown {what} {value!r}; use one of: {choices}") from None


_SETTINGS = ("dates.mode", "dates.max_shift_days", "ages.mode", "tags.unlisted", "tags.private")


def _apply(profile: Profile, path: Path, data: dict[str, Any], lines: KeyLines) -> None:
    def src(table: str, key: str) -> str:
        return f"{path.name}:{lines.line_of((*table.split('.'), key))}"

    for setting in _SETTINGS:
        table, key = setting.split(".")
        if key in data.get(table, {}):
            profile.explicit_settings.add(setting)
    profile.name = str(data.get("name", path.stem))
    profile.description = str(data.get("description", profile.description)).strip()
    profile.sources.append(str(path))
    dates = data.get("dates", {})
    if "mode" in dates:
        profile.date_mode = _enum(DateMode, dates["mode"], src("dates", "mode"), "date mode")
    if "max_shift_days" in dates:
        profile.shift_days = int(dates["max_shift_days"])
    if "mode" in data.get("ages", {}):
        profile.age_mode = _enum(AgeMode, data["ages"]["mode"], src("ages", "mode"), "age mode")
    if "annex_e" in data:
        annex = {**profile.section("annex_e"), **data["annex_e"]}
        if annex.get("basis") == "basic":
            where = src("annex_e", "options" if "options" in data["annex_e"] else "basis")
            _annex_e_rules(profile, list(annex.get("options", [])), where)
            profile.tag_rules.update(profile.explicit)  # rules a profile names still win
    if "action" in data.get("descriptors", {}):
        _descriptor_rules(profile, data["descriptors"]["action"], src("descriptors", "action"))
    tags = data.get("tags", {})
    if "unlisted" in tags:
        profile.unlisted = make_rule(
            tags["unlisted"], "any other attribute", src("tags", "unlisted")
        )
    if "private" in tags:
        profile.private = make_rule(tags["private"], "private attributes", src("tags", "private"))
    if "action" in data.get("uids", {}):
        profile.vr_rules["UI"] = make_rule(data["uids"]["action"], "VR UI", src("uids", "action"))
    for vr, raw in tags.get("vr", {}).items():
        where = src("tags.vr", vr)
        if not _VR_RE.match(vr):
            raise ProfileError(f"{where}: {vr!r} is not a two-letter VR")
        profile.vr_rules[vr] = make_rule(raw, f"VR {vr}", where)
    for selector, raw in tags.get("rules", {}).items():
        where = src("tags.rules", selector)
        rule = make_rule(raw, selector, where)
        parsed = parse_selector(selector)
        if parsed is None:
            raise ProfileError(f"{where}: {selector!r} is not a DICOM keyword or (gggg,eeee) tag")
        if isinstance(parsed, tuple):
            profile.mask_rules.insert(0, Mask(*parsed, rule))
        else:
            profile.tag_rules[parsed] = rule
            profile.explicit[parsed] = rule
    for creator, offsets in data.get("private", {}).get("safe", {}).items():
        profile.safe_private[creator] = frozenset(int(str(o)[-2:], 16) for o in offsets)
    for name, table in data.items():
        if isinstance(table, dict):
            for key in table:
                profile.setting_sources[f"{name}.{key}"] = src(name, key)
        if isinstance(table, dict) and name not in (
            "tags",
            "dates",
            "ages",
            "uids",
            "private",
            "descriptors",
        ):
            profile.sections.setdefault(name, {}).update(table)


# Basic Profile codes and what each becomes here; "C" (clean) is decided per VR.
_CODE_ACTIONS = {
    "X": Action.REMOVE,
    "Z": Action.EMPTY,
    "D": Action.DUMMY,
    "U": Action.PSEUDONYMIZE,
    "K": Action.KEEP,
    "X/Z": Action.EMPTY,
    "X/D": Action.DUMMY,
    "X/Z/D": Action.EMPTY,
    "Z/D": Action.DUMMY,
    "X/Z/U*": Action.KEEP,
}


def annex_e_action(row: Mapping[str, Any], options: list[str]) -> tuple[Action, str]:
    """The action for one Table E.1-1 row under a set of options, and the code it came from.

    Retaining options (K) win over cleaning ones (C), which win over the Basic action.
    Cleaning free text cannot be done safely by a program, so C removes it; C on a date
    applies the profile's date rule.
    """
    codes = [row["options"][ANNEX_E_OPTIONS[o]] for o in options if o in ANNEX_E_OPTIONS]
    code = "K" if "K" in codes else "C" if "C" in codes else row["basic"]
    if code == "C":
        vr = _row_vr(row)
        return (Action.DATE if vr in DATE_VRS else Action.REMOVE), code
    return _CODE_ACTIONS[code], code


def _row_vr(row: Mapping[str, Any]) -> str | None:
    parsed = parse_selector(row["tag"])
    return dictionary_vr(parsed) if isinstance(parsed, int) else None


@cache
def dictionary_vrs(tag: int) -> tuple[str, ...]:
    """The VRs the data dictionary allows a tag, in its order (empty for private and
    unknown tags)."""
    try:
        return tuple(str(dictionary_VR(tag)).split(" or "))
    except KeyError:
        return ()


@cache
def dictionary_vr(tag: int) -> str | None:
    """The VR the data dictionary gives a tag (the first, where it allows two), or None."""
    vrs = dictionary_vrs(tag)
    return vrs[0] if vrs else None


def descriptor_tags() -> list[int]:
    """Free-text descriptors: the Annex E rows the Clean Descriptors option marks C."""
    tags = []
    for row in annex_e_rows():
        parsed = parse_selector(row["tag"])
        if row["options"]["clean_descriptors"] == "C" and isinstance(parsed, int):
            tags.append(parsed)
    return tags


def _descriptor_rules(profile: Profile, raw: Any, source: str) -> None:
    """One action for every free-text descriptor a rule does not name itself."""
    rule = make_rule(raw, "free-text descriptor", source)
    if rule.action not in (Action.KEEP, Action.REMOVE, Action.EMPTY, Action.REPLACE):
        raise ProfileError(f"{source}: descriptors take keep, remove, empty or a replacement")
    for tag in descriptor_tags():
        if tag not in profile.explicit:
            profile.tag_rules[tag] = rule


def _annex_e_rules(profile: Profile, options: list[str], source: str) -> None:
    profile.mask_rules = [m for m in profile.mask_rules if "Table E.1-1" not in m.rule.source]
    for row in annex_e_rows():
        action, code = annex_e_action(row, options)
        rule = Rule(
            action, row["keyword"] or row["tag"], f"{source} Table E.1-1 {row['tag']} {code}"
        )
        if row["tag"] == "(gggg,eeee)":
            profile.private = replace(rule, selector="private attributes")
            continue
        parsed = parse_selector(row["tag"])
        if isinstance(parsed, tuple):
            profile.mask_rules.append(Mask(*parsed, rule))
        elif parsed is not None:
            profile.tag_rules[parsed] = rule
