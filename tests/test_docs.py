"""docs/profiles.md says what the program does: its table of actions and its examples."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deid import actions, validate
from deid.cli import app

ROOT = Path(__file__).resolve().parents[1]
PROFILES_DOC = ROOT / "docs" / "profiles.md"


def _doc() -> str:
    return PROFILES_DOC.read_text(encoding="utf-8")


def _block_after(text: str, lead: str, language: str) -> str:
    """The first fenced block of `language` after the line `lead`."""
    at = text.index(lead)
    m = re.compile(rf"^```{language}\n(.*?)^```$", re.DOTALL | re.MULTILINE).search(text, at)
    assert m, f"no {language} block after {lead!r}"
    return m.group(1)


def test_the_profiles_doc_table_of_actions_is_the_actions_own_words() -> None:
    table = actions.table()
    assert table in _doc(), "docs/profiles.md needs:\n" + table


@pytest.mark.parametrize(
    ("lead", "name"),
    [
        ("A profile with mistakes, `profiles/trial.toml`:", "trial.toml"),
        ("A profile that claims Safe Harbor and keeps names:", "mine.toml"),
    ],
)
def test_the_validate_examples_print_what_the_doc_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lead: str, name: str
) -> None:
    text = _doc()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / name).write_text(_block_after(text, lead, "toml"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    problems = validate.validate_paths([Path("profiles") / name])
    shown = _block_after(text, lead, "console")
    assert problems
    for problem in problems:
        assert f"\n{problem}\n" in shown, str(problem)


def test_the_research_profile_gaps_are_what_the_doc_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    problems = validate.validate_paths(
        [Path("profiles/research-longitudinal.toml")], safe_harbor=True
    )
    shown = _block_after(_doc(), "the mode that lets them through:", "console").splitlines()
    assert shown[0] == "$ deid profiles validate --safe-harbor profiles/research-longitudinal.toml"
    assert [str(p) for p in problems] == shown[1 : len(problems) + 1]


def test_profiles_show_prints_what_the_doc_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _doc()
    profile = _block_after(text, "Most profiles extend a built-in one", "toml")
    (tmp_path / "site-ct.toml").write_text(profile, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["profiles", "show", "site-ct.toml"])
    assert result.exit_code == 0, result.output
    shown = _block_after(text, "rules its own file sets, each in its own words", "console")
    assert shown == "$ deid profiles show site-ct.toml\n" + result.output
