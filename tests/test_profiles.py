"""Loading, extending, describing and compiling profiles."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from deid import profiles
from deid.cli import app
from deid.compiler import compile_profile
from deid.errors import ExitCode, ProfileError
from deid.profiles import Action
from deid.validate import has_errors, validate_file


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


# ---- compiling: the schema's checks on every file, before anything runs ---------------

BAD_PROFILES = [
    pytest.param(
        '[[regoins.fixed]]\nmodality = "US"\nboxes = [[0, 0, 10, 10]]\n',
        [(3, "unknown section [regoins]; did you mean [regions]?")],
        id="misspelt-section",
    ),
    pytest.param(
        "[text]\npadding = -3\n",
        [(4, "[text] padding = -3 is out of range; use 0 to 64")],
        id="out-of-range",
    ),
    pytest.param(
        '[descriptors]\naction = "pseudonymize"\n[textt]\ndetect = "always"\n',
        [
            (
                4,
                '[descriptors] action = "pseudonymize" is not allowed here; use one of: '
                '"keep", "remove", "empty", { replace = "VALUE" }',
            ),
            (5, "unknown section [textt]; did you mean [text]?"),
        ],
        id="two-problems",
    ),
    pytest.param(
        '[tags.rules]\nPatientName = "keep"\n',
        [
            (
                4,
                "claims Safe Harbor (inherited from safe-harbor.toml), but PS3.15 Annex E: "
                "(0010,0010) PatientName is kept; the Basic Profile says Z (empty or dummy value)",
            ),
            (
                4,
                "claims Safe Harbor (inherited from safe-harbor.toml), but (A) Names: "
                "PatientName is kept",
            ),
        ],
        id="safe-harbor-claim-with-a-gap",
    ),
]


@pytest.mark.parametrize(("body", "expected"), BAD_PROFILES)
def test_compile_refuses_a_profile_with_every_problem_validate_finds(
    tmp_path: Path, body: str, expected: list[tuple[int, str]]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\nextends = "safe-harbor"\n' + body, encoding="utf-8")
    with pytest.raises(ProfileError) as info:
        compile_profile(str(path))
    assert info.value.exit_code == ExitCode.USAGE
    listed = str(info.value).splitlines()[1:]
    assert listed == [f"{path}:{line}: {message}" for line, message in expected]
    assert listed == [str(p) for p in validate_file(path)]


def test_compile_checks_the_files_a_profile_extends(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text(
        'extends = "research-longitudinal"\n[png]\ncompres_level = 3\n'
    )
    child = tmp_path / "child.toml"
    child.write_text('extends = "base.toml"\n[text]\npadding = 4\n')
    with pytest.raises(ProfileError) as info:
        compile_profile(str(child))
    base = (tmp_path / "base.toml").resolve()
    assert str(info.value).splitlines()[1:] == [
        f'{base}:3: unknown key "compres_level" in [png]; did you mean "compress_level"?'
    ]


@pytest.mark.parametrize(
    "body",
    [
        # a warning does not stop a run
        'extends = "safe-harbor"\n[dates]\nmax_shift_days = 30\n',
        # gaps stop a run only under a Safe Harbor claim
        'extends = "research-longitudinal"\n[tags.rules]\nInstitutionName = "keep"\n',
    ],
    ids=["warning", "gap-without-claim"],
)
def test_compile_accepts_warnings_and_gaps_without_a_claim(tmp_path: Path, body: str) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(body)
    assert not has_errors(validate_file(path))
    profile = compile_profile(str(path))
    assert profile.sources[-1] == str(path.resolve())


@pytest.mark.parametrize("name", profiles.builtin_names())
def test_builtin_profiles_compile_to_what_load_gives(name: str) -> None:
    compiled, loaded = compile_profile(name), profiles.load(name)
    assert list(compiled.rules()) == list(loaded.rules())


def test_compile_names_an_unknown_profile() -> None:
    with pytest.raises(ProfileError, match=r"built-in profiles are: .*safe-harbor"):
        compile_profile("no-such-profile")


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ('[[regoins.fixed]]\nmodality = "CT"\nboxes = [[0, 0, 10, 10]]\n', 3),
        ("[text]\npadding = -3\n", 4),
    ],
    ids=["misspelt-section", "out-of-range"],
)
def test_anonymize_stops_before_the_first_file(
    ct_file: Path, tmp_path: Path, body: str, line: int
) -> None:
    profile = tmp_path / "bad.toml"
    profile.write_text('name = "bad"\nextends = "safe-harbor"\n' + body, encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["anonymize", str(ct_file), "--out", str(out), "-p", str(profile), "-j", "1"]
    )
    text = result.output + (result.stderr or "")
    assert result.exit_code == ExitCode.USAGE, text
    assert f"{profile}:{line}: " in text
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_profiles_show_refuses_a_broken_profile(tmp_path: Path) -> None:
    profile = tmp_path / "bad.toml"
    profile.write_text('extends = "safe-harbor"\n[textt]\ndetect = "always"\n')
    result = CliRunner().invoke(app, ["profiles", "show", str(profile)])
    assert result.exit_code == ExitCode.USAGE
    assert f"{profile}:2: unknown section [textt]" in result.output + (result.stderr or "")
