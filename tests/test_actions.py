"""One object per action: its behaviour, its words and what it keeps agree with each other."""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_dataset

from deid import actions, profiles, tags
from deid.actions import Action, Spelling, Survives
from deid.pseudonym import Pseudonymizer

README = Path(__file__).resolve().parents[1] / "README.md"
SPELLINGS = [spelling for kind in actions.every() for spelling in kind.spellings()]

# The attribute each action is tried on, and the original values to try.
ATTRIBUTE = {
    Action.DATE: ("StudyDate", ["20230817"]),
    Action.AGE: ("PatientAge", ["071Y", "095Y"]),
}
LISTED = ("PatientSex", ["M", "O"])
OTHER = ("InstitutionName", ["SAINT ELSEWHERE HOSPITAL"])


def _as_date(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def _shifted(original: str, after: Any, spelling: Spelling) -> bool:
    moved = abs((_as_date(str(after)) - _as_date(original)).days)
    return str(after) != original and 0 < moved <= spelling.modes.shift_days


def _age_under_90(original: str, after: Any, spelling: Spelling) -> bool:
    return str(after) == (original if int(original[:3]) < 90 else "090Y")


def _nothing(original: str, after: Any, spelling: Spelling) -> bool:
    """Gone, empty, or a value that is neither the original nor a date or age like it."""
    if after is None or str(after) == "":
        return True
    shape = re.compile(r"\d{8}|\d{3}[DWMY]")
    return original not in str(after) and not shape.fullmatch(str(after))


# What each answer of `survives` means for the value found in the output (None: removed).
MEANS: dict[Survives, Callable[[str, Any, Spelling], bool]] = {
    Survives.NOTHING: _nothing,
    Survives.LISTED: lambda original, after, s: (
        str(after) == original if original in s.rule.allowed else not after
    ),
    Survives.YEAR: lambda original, after, _: str(after) == original[:4] + "0101",
    Survives.SHIFTED: _shifted,
    Survives.AGE_UNDER_90: _age_under_90,
    Survives.WHOLE: lambda original, after, _: str(after) == original,
}


def _profile(tmp_path: Path, spelling: Spelling, keyword: str) -> profiles.Profile:
    modes = spelling.modes
    path = tmp_path / "one-rule.toml"
    path.write_text(
        'extends = "safe-harbor"\n[safe_harbor]\nclaim = false\n'
        f'[dates]\nmode = "{modes.dates}"\nmax_shift_days = {modes.shift_days}\n'
        f'[ages]\nmode = "{modes.ages}"\n'
        f"[tags.rules]\n{keyword} = {spelling.toml}\n",
        encoding="utf-8",
    )
    return profiles.load(str(path))


@pytest.mark.parametrize(
    "spelling", SPELLINGS, ids=[f"{s.toml} {s.setting}".strip() for s in SPELLINGS]
)
def test_what_an_action_says_it_keeps_is_what_it_keeps(tmp_path: Path, spelling: Spelling) -> None:
    keyword, originals = (
        LISTED if spelling.rule.allowed else ATTRIBUTE.get(spelling.rule.action, OTHER)
    )
    profile = _profile(tmp_path, spelling, keyword)
    rule = profile.rule_for(int(profiles.parse_selector(keyword) or 0), None)
    assert rule.action is spelling.rule.action and rule.allowed == spelling.rule.allowed
    survives = profile.survives(rule)
    assert survives is spelling.rule.survives(spelling.modes)
    assert profile.describe(rule) == spelling.rule.describe(spelling.modes)
    for original in originals:
        ds = make_dataset(np.zeros((8, 8), dtype=np.uint16))
        setattr(ds, keyword, original)
        tags.deidentify(ds, profile, Pseudonymizer.from_passphrase("k"))
        after = ds[keyword].value if keyword in ds else None
        assert MEANS[survives](original, after, spelling), (original, after)


def test_the_readme_table_of_actions_is_the_actions_own_words() -> None:
    table = actions.table()
    assert table in README.read_text(encoding="utf-8"), "README.md needs:\n" + table
    for action in Action:
        assert f'`"{action.value}"' in table or f"`{{ {action.value} = " in table


@pytest.mark.parametrize("action", list(Action))
def test_each_action_has_one_object(action: Action) -> None:
    rule = profiles.Rule(
        action, "PatientName", "p.toml:3", "X" if action is Action.REPLACE else None
    )
    assert rule.does is action.does and rule.does.action is action
    assert pickle.loads(pickle.dumps(rule)).does is action.does  # as a worker process gets it
    assert rule.describe() == action.does.words(rule, actions.Modes())
    assert profiles.Action is Action


@pytest.mark.parametrize(
    ("action", "modes", "effect"),
    [
        (Action.KEEP, actions.Modes(), "keep"),
        (Action.REMOVE, actions.Modes(), "remove"),
        (Action.DATE, actions.Modes(), "date"),
        (Action.DATE, actions.Modes(actions.DateMode.KEEP), "keep"),
        (Action.DATE, actions.Modes(actions.DateMode.REMOVE), "remove"),
        (Action.AGE, actions.Modes(ages=actions.AgeMode.KEEP), "keep"),
        (Action.AGE, actions.Modes(), "age"),
    ],
)
def test_effect_is_what_the_action_does_under_the_modes(
    action: Action, modes: actions.Modes, effect: str
) -> None:
    rule = profiles.Rule(action, "StudyDate", "p.toml:3")
    assert action.does.effect(rule, modes) == effect


def test_a_listed_keep_is_its_own_effect() -> None:
    rule = profiles.Rule(Action.KEEP, "PatientSex", "p.toml:3", allowed=("M", "F"))
    assert rule.does.effect(rule, actions.Modes()) == "keep-listed"
    assert rule.survives() is Survives.LISTED
