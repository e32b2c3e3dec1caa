"""The Safe Harbor proof: attribute by attribute, what a resolved profile lets through.

A profile that claims HIPAA Safe Harbor promises whoever receives its outputs that none
of the 18 identifier categories of 45 CFR 164.514(b)(2) survives. `gaps` checks that
promise on the resolved profile: every row of DICOM PS3.15 Table E.1-1 must be handled at
least as strictly as the Basic Profile (allowing for the options the profile claims), and
no attribute that carries one of the 18 categories may be kept, nor a date shifted. What
an action keeps is the action's own answer (`deid.actions`), with the profile's date and
age modes, so the proof and the tag step cannot disagree.

The categories are data, in `deid/data/safe_harbor_categories.toml`; what "at least as
strict" means for each Basic Profile code is in `deid/data/profile_schema.toml`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from deid import profiles
from deid.actions import Action, Survives
from deid.profiles import Profile, Rule
from deid.schema import data_toml, keyword_of, keyword_tags, profile_schema


@dataclass(frozen=True)
class Gap:
    """An attribute a profile lets through although Annex E or Safe Harbor says not to.

    `category` is "PS3.15 Annex E" or a Safe Harbor category such as "(A) Names";
    `where` is what to change, as `file:line` (or "built-in default"): the rule, or the
    `[dates]` or `[ages]` mode when the mode is what lets the value through.
    """

    category: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.category}: {self.message}"


def safe_harbor_gaps(ref: str) -> list[Gap]:
    """Every attribute the resolved profile `ref` lets through against Annex E or Safe Harbor.

    `ref` is a built-in name or a path, as for `profiles.load` (whose ProfileError
    propagates). An empty list is the proof a Safe Harbor claim needs.
    """
    return gaps(profiles.load(ref))


def gaps(profile: Profile) -> list[Gap]:
    """The gaps of a resolved profile: Annex E rows first, then the 18 categories in order.

    Each Annex E row is removed or transformed at least as strictly as the Basic Profile
    (allowing for the options the profile claims in `[method] options`), and each
    keyword of the 18 Safe Harbor categories is removed or transformed, dates to no more
    than the year.
    """
    found: list[Gap] = []
    claimed = profile.method_options()
    words: Mapping[str, str] = profile_schema()["basic_profile"]["words"]
    for row in profiles.annex_e_rows():
        allowed = _allowed(row, claimed)
        for tag, vr in _probes(row):
            rule = profile.rule_for(tag, vr)
            if rule.does.effect(rule, profile.modes) not in allowed:
                basic = str(row["basic"])
                says = f"{basic} ({words.get(basic, basic)})"
                message = (
                    f"{_row_label(row)} is {_fate(rule, profile)}; the Basic Profile says {says}"
                )
                found.append(Gap("PS3.15 Annex E", _cause(rule, profile), message))
                break
    tags = keyword_tags()
    for category in _categories():
        name = f"({category['letter']}) {category['title']}"
        listed = {*category["keywords"], *category["not_checked"]}
        for keyword in category["keywords"]:
            tag = tags[keyword]
            rule = profile.rule_for(tag, profiles.dictionary_vr(tag))
            leak = _leak(rule, profile)
            if leak:
                found.append(Gap(name, _cause(rule, profile), f"{keyword} is {leak}"))
        for vr in category["vrs"]:
            rule = profile.vr_rules.get(vr, profile.unlisted)
            leak = _leak(rule, profile)
            if leak:
                message = f"{vr} attributes no rule names are {leak}"
                found.append(Gap(name, _cause(rule, profile), message))
            for tag, named in sorted(profile.tag_rules.items()):
                keyword = keyword_of(tag)
                leak = _leak(named, profile)
                if leak and keyword not in listed and profiles.dictionary_vr(tag) == vr:
                    found.append(Gap(name, _cause(named, profile), f"{keyword} ({vr}) is {leak}"))
    return found


@cache
def _categories() -> tuple[dict[str, Any], ...]:
    return tuple(data_toml("safe_harbor_categories.toml")["category"])


def _fate(rule: Rule, profile: Profile) -> str:
    """What happens to an attribute's value, in a gap message's words."""
    survives, follows = profile.survives(rule), rule.does.follows
    if survives is Survives.WHOLE and follows:
        return f'kept unchanged ([{follows}] mode = "keep")'
    if survives is Survives.WHOLE:
        return "kept"
    if survives is Survives.LISTED:
        return "kept when it is one of " + ", ".join(rule.allowed)
    if survives is Survives.SHIFTED:
        return 'shifted ([dates] mode = "shift"), which keeps a month and a day'
    return profile.describe(rule)


def _leak(rule: Rule, profile: Profile) -> str | None:
    """How a rule leaks a Safe Harbor identifier, or None if no identifying part survives."""
    if profile.survives(rule) in (Survives.WHOLE, Survives.SHIFTED):
        return _fate(rule, profile)
    return None


def _cause(rule: Rule, profile: Profile) -> str:
    """Where to fix a gap: the mode that lets a date or age through, else the rule."""
    follows = rule.does.follows
    if follows and profile.survives(rule) in (Survives.WHOLE, Survives.SHIFTED):
        return profile.source_of(f"{follows}.mode")
    return rule.source


def _allowed(row: Mapping[str, Any], claimed: Sequence[str]) -> set[str]:
    """Actions at least as strict as the row's Basic Profile code, given the claimed options."""
    spec = profile_schema()["basic_profile"]
    everything = {*profile_schema()["actions"]["names"], "replace", "keep-listed"}
    everything |= {str(a.value) for a in Action}
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
