"""The actions a profile gives attributes, one object each: what it does, its words, what it keeps.

A profile gives every attribute one action: keep, remove, empty, replace, dummy,
pseudonymize, date or age. Three parts of the program need to know about an action: the
tag step applies it to DICOM elements, `deid profiles show`, `deid inspect` and the
README describe it, and the leak checks and the Safe Harbor proof ask what of an original
value may survive it. If each kept its own idea of an action, a change to one (a new date
mode, say) could leave the others describing or checking something the program no longer
does. So each action is one object here that owns all three: `apply`, `words` and
`survives`. `date` and `age` follow the profile's `[dates]` and `[ages]` modes, so every
answer takes the profile's `Modes`.
"""

from __future__ import annotations

import tomllib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, ClassVar, Protocol

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from deid.pseudonym import Pseudonymizer


class Action(StrEnum):
    """The name of an action, spelt as a profile writes it."""

    KEEP = "keep"
    REMOVE = "remove"
    EMPTY = "empty"
    REPLACE = "replace"
    DUMMY = "dummy"
    PSEUDONYMIZE = "pseudonymize"
    DATE = "date"
    AGE = "age"

    @property
    def does(self) -> ActionKind:
        """The object that carries out this action."""
        return of(self)


class DateMode(StrEnum):
    """`[dates] mode`: what the `date` action does."""

    REMOVE = "remove"
    YEAR_ONLY = "year-only"
    SHIFT = "shift"
    KEEP = "keep"


class AgeMode(StrEnum):
    """`[ages] mode`: what the `age` action does."""

    BAND_90 = "band-90"
    KEEP = "keep"
    REMOVE = "remove"


@dataclass(frozen=True)
class Modes:
    """The profile settings that decide what `date` and `age` do."""

    dates: DateMode = DateMode.YEAR_ONLY
    ages: AgeMode = AgeMode.BAND_90
    shift_days: int = 365


class Survives(StrEnum):
    """What of an attribute's original value may be in an output after an action."""

    NOTHING = "nothing identifying"
    LISTED = "only a value the rule lists"
    YEAR = "the year of a date"
    AGE_UNDER_90 = "an age under 90"
    SHIFTED = "a date moved by whole days: a month and a day remain"
    WHOLE = "the whole value"


@dataclass(frozen=True)
class Rule:
    """One action for the attributes a selector matches, with where it was set.

    `value` is the fixed value of `{ replace = "VALUE" }`; `allowed` the values of
    `{ keep = [...] }`. `does` is the action's object, looked up once.
    """

    action: Action
    selector: str
    source: str
    value: str | None = None
    allowed: tuple[str, ...] = ()
    does: ActionKind = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "does", self.action.does)

    def describe(self, modes: Modes | None = None) -> str:
        """The rule's own words, used by `profiles show`, `inspect` and the docs."""
        return self.does.words(self, modes or Modes())

    def survives(self, modes: Modes | None = None) -> Survives:
        """What of an original value may survive this rule."""
        return self.does.survives(self, modes or Modes())


class Editor(Protocol):
    """What the tag step lets an action do to one element of a dataset.

    `get`, `set` and `delete` read and write an element (raw where they can, which
    keeps de-identifying a header cheap); `descend` walks the items of a sequence by
    the same rules. `patient` is the patient's pseudonym, `shift` the patient's keyed
    date offset in days; an action that changes a date sets `dates_changed`.
    """

    modes: Modes
    pseudo: Pseudonymizer
    patient: str
    shift: int
    dates_changed: bool

    def get(self, ds: Dataset, tag: int) -> Any: ...

    def set(self, ds: Dataset, tag: int, vr: str | None, value: Any) -> None: ...

    def delete(self, ds: Dataset, tag: int) -> None: ...

    def descend(self, ds: Dataset, tag: int) -> None: ...


@dataclass(frozen=True)
class Spelling:
    """One way to write an action in a profile, under one setting, for the table of actions."""

    toml: str
    setting: str
    rule: Rule
    modes: Modes


class ActionKind(ABC):
    """One action: its behaviour on an element, its words, and what of a value it keeps.

    `follows` names the section whose `mode` decides what the action does (`dates`,
    `ages`), so a message can point at the setting rather than the rule.
    """

    action: ClassVar[Action]
    follows: ClassVar[str | None] = None

    def __reduce__(self) -> tuple[Any, tuple[Action]]:
        return of, (self.action,)  # still the one object per action in a worker process

    @abstractmethod
    def words(self, rule: Rule, modes: Modes) -> str:
        """What the action does to an attribute, in the words every listing uses."""

    @abstractmethod
    def apply(self, editor: Editor, ds: Dataset, tag: int, vr: str | None, rule: Rule) -> bool:
        """Apply the action to one element of `ds`; True if the attribute changed."""

    def survives(self, rule: Rule, modes: Modes) -> Survives:
        """What of an original value may be in the output."""
        return Survives.NOTHING

    def effect(self, rule: Rule, modes: Modes) -> str:
        """What the action really does under `modes`, in the words of profile_schema.toml's
        `[basic_profile]` ("keep", "keep-listed", "remove", or the action's own name)."""
        return self.action.value

    def spellings(self) -> list[Spelling]:
        """The ways to write this action, for the table of actions."""
        return [Spelling(f'"{self.action.value}"', "", Rule(self.action, "", ""), Modes())]


class Keep(ActionKind):
    action = Action.KEEP

    def words(self, rule: Rule, modes: Modes) -> str:
        if rule.allowed:
            return f"kept if one of {', '.join(rule.allowed)}; otherwise emptied"
        return "kept (items of a sequence are processed by the same rules)"

    def survives(self, rule: Rule, modes: Modes) -> Survives:
        return Survives.LISTED if rule.allowed else Survives.WHOLE

    def effect(self, rule: Rule, modes: Modes) -> str:
        return "keep-listed" if rule.allowed else "keep"

    def apply(self, editor: Editor, ds: Dataset, tag: int, vr: str | None, rule: Rule) -> bool:
        if rule.allowed:
            value = editor.get(ds, tag)
            if value and str(value) not in rule.allowed:
                editor.set(ds, tag, vr, None)
                return True
            return False
        if vr == "SQ":
            editor.descend(ds, tag)
        return False

    def spellings(self) -> list[Spelling]:
        listed = Rule(self.action, "", "", allowed=("M", "F"))
        return [*super().spellings(), Spelling('{ keep = ["M", "F"] }', "", listed, Modes())]


class Remove(ActionKind):
    action = Action.REMOVE

    def words(self, rule: Rule, modes: Modes) -> str:
        return "removed"

    def apply(self, editor: Editor, ds: Dataset, tag: int, vr: str | None, rule: Rule) -> bool:
        editor.delete(ds, tag)
        return True


class Empty(ActionKind):
    action = Action.EMPTY

    def words(self, rule: Rule, modes: Modes) -> str:
        return "kept with an empty value"

    def apply(self, editor: Editor, ds: Dataset, tag: int, vr: str | None, rule: Rule) -> bool:
        editor.set(ds, tag, vr, Sequence([]) if vr == "SQ" else None)
        return True


class Replace(ActionKind):
    action = Action.REPLACE

    def words(self, rule: Rule, modes: Modes) -> str:
        return f"replaced by the fixed value {rule.value!r}"

    def apply(self, editor: Editor, ds: Dataset, tag: int, vr: str | None, rule: Rule) -> bool:
        editor.set(ds, tag, vr, rule.value)
        return True

    def spellings(self) -> list[Spelling]:
        rule = Rule(self.action, "", "", value="VALUE")
        return [Spelling('{ replace = "VALUE" }', "", rule, Modes())]


_PATIENT_ID_KEYWORDS = ("PatientName", "PatientID", "IssuerOfPatientID")


class Pseudonymize(ActionKind):
    action = Action.PSEUDONYMIZE

    def words(self, rule: Rule, modes: Modes) -> str:
        return (
            "replaced by a keyed HMAC-SHA256 pseudonym "
            "(UIDs under 2.25, well-known standard UIDs kept)"
        )

    def apply(self, editor: Editor, ds: Dataset, tag: int, vr: str | None, rule: Rule) -> bool:
        if vr == "SQ":
            editor.descend(ds, tag)
            return False
        old = editor.get(ds, tag)
        new = self.pseudonym(editor, tag, vr, old)
        editor.set(ds, tag, vr, new)
        return bool(new != old)

    @staticmethod
    def pseudonym(editor: Editor, tag: int, vr: str | None, value: Any) -> Any:
        """UIDs under 2.25; names and patient IDs the patient's pseudonym; else a token."""
        if value is None or value == "":
            return value
        if vr == "UI":
            if isinstance(value, str):
                return editor.pseudo.uid(value)
            return [editor.pseudo.uid(str(v)) for v in value]
        keyword = keyword_for_tag(tag)
        if keyword in _PATIENT_ID_KEYWORDS or vr == "PN":
            return editor.patient
        return editor.pseudo.identifier(keyword or "id", str(value))[:16]


_NUMERIC_VRS = ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV")


@cache
def _dummies() -> dict[str, Any]:
    text = (resources.files("deid") / "data" / "dummy_values.toml").read_text("utf-8")
    return tomllib.loads(text)


def dummy_value(vr: str | None) -> Any:
    """The fixed dummy value for a VR (`deid/data/dummy_values.toml`), or None."""
    values = _dummies()
    return values.get(vr or "", values["numeric"] if vr in _NUMERIC_VRS else None)


class Dummy(ActionKind):
    action = Action.DUMMY

    def words(self, rule: Rule, modes: Modes) -> str:
        return "replaced by a fixed dummy value valid for its VR"

    def apply(self, editor: Editor, ds: Dataset, tag: int, vr: str | None, rule: Rule) -> bool:
        if vr == "UI":
            return _OBJECTS[Action.PSEUDONYMIZE].apply(editor, ds, tag, vr, rule)
        editor.set(ds, tag, vr, Sequence([]) if vr == "SQ" else dummy_value(vr))
        return True


DATE_VRS = ("DA", "DT", "TM")


def year_of(value: str) -> str:
    """The year a DA or DT value starts with, or "" if it starts with no year."""
    return value.strip()[:4] if len(value.strip()) >= 4 and value[:4].isdigit() else ""


def shifted(text: str, vr: str | None, days: int) -> str | None:
    """A DA or DT shifted by whole days (times untouched, so intervals stay true)."""
    if vr == "TM":
        return text
    digits = text.strip()
    if len(digits) < 8 or not digits[:8].isdigit():
        return None
    try:
        moved = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8])) + timedelta(days=days)
    except ValueError:
        return None
    return moved.strftime("%Y%m%d") + digits[8:]


class _FollowsMode(ActionKind):
    """An action whose effect the profile's `[dates]` or `[ages]` mode decides: `follows`
    names both the section and the `Modes` field, `modes_of` the mode's choices."""

    follows: ClassVar[str]
    modes_of: ClassVar[type[DateMode] | type[AgeMode]]

    def effect(self, rule: Rule, modes: Modes) -> str:
        mode = getattr(modes, self.follows).value
        return mode if mode in ("keep", "remove") else self.action.value

    def spellings(self) -> list[Spelling]:
        rule = Rule(self.action, "", "")
        return [
            Spelling(
                f'"{self.action.value}"',
                f'[{self.follows}] mode = "{mode.value}"',
                rule,
                self.under(mode),
            )
            for mode in self.modes_of
        ]

    def under(self, mode: DateMode | AgeMode) -> Modes:
        """The default modes with this action's mode set to `mode`."""
        setting: dict[str, Any] = {self.follows: mode}
        return replace(Modes(), **setting)


class Date(_FollowsMode):
    action = Action.DATE
    follows = "dates"
    modes_of = DateMode

    def words(self, rule: Rule, modes: Modes) -> str:
        return {
            DateMode.REMOVE: "removed",
            DateMode.YEAR_ONLY: "reduced to the year (dates become YYYY0101; times are emptied)",
            DateMode.SHIFT: f"shifted by a keyed per-patient offset of up to {modes.shift_days} "
            "days (times kept, so intervals stay true; not Safe Harbor)",
            DateMode.KEEP: "kept unchanged (not Safe Harbor)",
        }[modes.dates]

    def survives(self, rule: Rule, modes: Modes) -> Survives:
        return {
            DateMode.REMOVE: Survives.NOTHING,
            DateMode.YEAR_ONLY: Survives.YEAR,
            DateMode.SHIFT: Survives.SHIFTED,
            DateMode.KEEP: Survives.WHOLE,
        }[modes.dates]

    def apply(self, editor: Editor, ds: Dataset, tag: int, vr: str | None, rule: Rule) -> bool:
        mode = editor.modes.dates
        if mode is DateMode.KEEP:
            return False
        if mode is DateMode.REMOVE or vr not in DATE_VRS:
            editor.delete(ds, tag)
            return True
        value = editor.get(ds, tag)
        if not value:
            return False
        editor.dates_changed = True
        values = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        kept = [v for v in (self.one(text, vr, mode, editor.shift) for text in values) if v]
        editor.set(ds, tag, vr, (kept[0] if len(kept) == 1 else kept) if kept else None)
        return True

    @staticmethod
    def one(text: str, vr: str | None, mode: DateMode, days: int) -> str | None:
        """One date, date-time or time value under a shift or year-only mode."""
        if mode is DateMode.SHIFT:
            return shifted(text, vr, days)
        if vr == "TM":
            return None
        year = year_of(text)
        return f"{year}0101" if year else None


def age_in_years(value: str) -> float | None:
    """An Age String (nnnD/W/M/Y) in years, or None when it is not one."""
    value = value.strip()
    if len(value) != 4 or not value[:3].isdigit():
        return None
    per_year = {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}.get(value[3].upper())
    return int(value[:3]) / per_year if per_year else None


class Age(_FollowsMode):
    action = Action.AGE
    follows = "ages"
    modes_of = AgeMode

    def words(self, rule: Rule, modes: Modes) -> str:
        return {
            AgeMode.BAND_90: "kept, with ages over 89 set to 090Y (90 or older)",
            AgeMode.KEEP: "kept unchanged (ages over 89 are not Safe Harbor)",
            AgeMode.REMOVE: "removed",
        }[modes.ages]

    def survives(self, rule: Rule, modes: Modes) -> Survives:
        return {
            AgeMode.BAND_90: Survives.AGE_UNDER_90,
            AgeMode.KEEP: Survives.WHOLE,
            AgeMode.REMOVE: Survives.NOTHING,
        }[modes.ages]

    def apply(self, editor: Editor, ds: Dataset, tag: int, vr: str | None, rule: Rule) -> bool:
        mode = editor.modes.ages
        if mode is AgeMode.KEEP:
            return False
        if mode is AgeMode.REMOVE:
            editor.delete(ds, tag)
            return True
        text = str(editor.get(ds, tag) or "")
        years = age_in_years(text)
        if years is None and text:
            editor.set(ds, tag, vr, None)  # not a valid age string: it could hold anything
            return True
        if years is not None and years > 89:
            editor.set(ds, tag, vr, "090Y")
            return True
        return False


_OBJECTS: dict[Action, ActionKind] = {
    kind.action: kind() for kind in (Keep, Remove, Empty, Replace, Dummy, Pseudonymize, Date, Age)
}


def of(action: Action) -> ActionKind:
    """The object that carries out an action."""
    return _OBJECTS[action]


def every() -> Iterator[ActionKind]:
    """Every action's object, in the order of `Action`."""
    return (action.does for action in Action)


def table() -> str:
    """The table of actions as Markdown: the README carries this text, a test compares it."""
    rows = [
        "| action | what happens to the attribute | what of the original value may survive |",
        "|---|---|---|",
    ]
    for kind in every():
        for spelling in kind.spellings():
            action = f"`{spelling.toml}`"
            if spelling.setting:
                default = " (the default)" if spelling.modes == Modes() else ""
                action += f" with `{spelling.setting}`{default}"
            words = spelling.rule.describe(spelling.modes)
            survives = spelling.rule.survives(spelling.modes).value
            rows.append(f"| {action} | {words} | {survives} |")
    return "\n".join(rows) + "\n"
