"""Loading, extending and describing profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from deid import profiles
from deid.errors import ProfileError
from deid.profiles import Action


def test_builtin_profiles_are_listed() -> None:
    assert "safe-harbor" in profiles.builtin_names()


def test_every_rule_describes_itself_with_its_source_line() -> None:
    profile = profiles.load("safe-harbor")
    text = (profiles.builtin_dir() / "safe-harbor.toml").read_text().splitlines()
    for selector, rule in profile.rules():
        assert rule.describe()
        file, _, line = rule.source.partition(":")
        if file == "safe-harbor.toml" and selector.startswith("("):
            keyword = selector.split()[-1]
            assert keyword in text[int(line) - 1] or rule.selector in text[int(line) - 1]


def test_unknown_profile_lists_the_names() -> None:
    with pytest.raises(ProfileError, match="safe-harbor"):
        profiles.load("no-such-profile")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[tags.rules]\nPatientNmae = "keep"\n', "not a DICOM keyword"),
        ('[tags.rules]\nPatientName = "blur"\n', "unknown action"),
        ('[tags.rules]\nPatientName = "replace"\n', "replace ="),
        ('[dates]\nmode = "sometimes"\n', "unknown date mode"),
        ("[tags\n", "not valid TOML"),
        ('[tags.vr]\nUIX = "keep"\n', "two-letter VR"),
    ],
)
def test_profile_mistakes_are_reported_with_file_and_line(
    tmp_path: Path, body: str, message: str
) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nextends = "safe-harbor"\n' + body)
    with pytest.raises(ProfileError, match=message) as info:
        profiles.load(str(path))
    assert "mine.toml" in str(info.value)


def test_extends_overrides_and_keeps_base_rules(tmp_path: Path) -> None:
    path = tmp_path / "child.toml"
    path.write_text(
        'name = "child"\nextends = "safe-harbor"\n[tags.rules]\n'
        'InstitutionName = { replace = "HOSPITAL" }\n"(0009,xxxx)" = "remove"\n'
    )
    profile = profiles.load(str(path))
    rule = profile.rule_for(0x00080080, "LO")
    assert rule.action is Action.REPLACE and rule.source == "child.toml:4"
    assert profile.rule_for(0x00100010, "PN").action is Action.PSEUDONYMIZE


def test_circular_extends_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ProfileError, match="circular"):
        profiles.load(str(tmp_path / "a.toml"))


def test_repeating_group_and_vr_rules() -> None:
    profile = profiles.load("safe-harbor")
    assert profile.rule_for(0x60223000, "OW").action is Action.REMOVE
    assert profile.rule_for(0x50100010, "US").action is Action.REMOVE
    assert profile.rule_for(0x00081150, "UI").action is Action.KEEP
    assert profile.rule_for(0x00200052, "UI").action is Action.PSEUDONYMIZE
    assert profile.rule_for(0x0040A124, "UI").action is Action.PSEUDONYMIZE
    assert profile.rule_for(0x00181000, "LO").action is Action.REMOVE


@pytest.mark.parametrize(
    ("body", "keyword", "expected"),
    [
        ('[descriptors]\naction = "keep"\n', "StudyDescription", Action.KEEP),
        ('[descriptors]\naction = "empty"\n', "ImageComments", Action.EMPTY),
        (
            '[descriptors]\naction = "keep"\n[tags.rules]\nStudyDescription = "remove"\n',
            "StudyDescription",
            Action.REMOVE,
        ),
        ('[descriptors]\naction = { replace = "CT" }\n', "SeriesDescription", Action.REPLACE),
    ],
)
def test_descriptors_section_sets_every_free_text_descriptor(
    tmp_path: Path, body: str, keyword: str, expected: Action
) -> None:
    path = tmp_path / "desc.toml"
    path.write_text('extends = "safe-harbor"\n' + body)
    profile = profiles.load(str(path))
    tag = profiles.parse_selector(keyword)
    assert isinstance(tag, int)
    assert profile.rule_for(tag, "LO").action is expected
    assert len(profiles.descriptor_tags()) > 100


def test_descriptors_refuse_pseudonyms(tmp_path: Path) -> None:
    path = tmp_path / "desc.toml"
    path.write_text('extends = "safe-harbor"\n[descriptors]\naction = "pseudonymize"\n')
    with pytest.raises(ProfileError, match="descriptors take"):
        profiles.load(str(path))
