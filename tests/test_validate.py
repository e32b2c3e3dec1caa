"""Profile validation: every mistake at once with its line, and Safe Harbor coverage."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from deid import profiles
from deid.errors import ProfileError
from deid.safe_harbor import Gap, safe_harbor_gaps
from deid.validate import Problem, validate_file, validate_paths

SHARED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
HEAD = 'name = "t"\nextends = "safe-harbor"\n'
ACTIONS = (
    '"keep", "remove", "empty", "pseudonymize", "date", "age", "dummy", '
    '{ replace = "VALUE" }, { keep = ["VALUE", ...] }'
)
METHOD_OPTIONS = (
    '"retain-safe-private", "retain-uids", "retain-device-identity", '
    '"retain-institution-identity", "retain-patient-characteristics", '
    '"retain-longitudinal-full-dates", "retain-longitudinal-modified-dates", '
    '"clean-descriptors", "clean-structured-content", "clean-graphics", '
    '"clean-pixel-data", "clean-recognizable-visual-features"'
)

# (profile text, other files next to it, line, message): one case per kind of message.
CASES = [
    pytest.param(
        HEAD + "[tags\n",
        {},
        3,
        "not valid TOML: Expected ']' at the end of a table declaration (column 6)",
        id="toml-syntax",
    ),
    pytest.param(
        HEAD + 'descripton = "x"\n',
        {},
        3,
        'unknown key "descripton"; did you mean "description"?',
        id="unknown-top-key",
    ),
    pytest.param(
        HEAD + '[textt]\ndetect = "always"\n',
        {},
        3,
        "unknown section [textt]; did you mean [text]?",
        id="unknown-section",
    ),
    pytest.param(
        HEAD + "[colours]\nred = 1\n",
        {},
        3,
        "unknown section [colours]; sections are: [dates], [ages], [uids], [descriptors], "
        "[tags], [private], [annex_e], [objects], [render], [text], [regions], [png], "
        "[method], [safe_harbor], [limits]",
        id="unknown-section-listed",
    ),
    pytest.param(
        HEAD + '[tags.rule]\nPatientName = "remove"\n',
        {},
        3,
        "unknown section [tags.rule]; did you mean [tags.rules]?",
        id="unknown-subsection",
    ),
    pytest.param(
        HEAD + '[text]\ndetetc = "always"\n',
        {},
        4,
        'unknown key "detetc" in [text]; did you mean "detect"?',
        id="unknown-key",
    ),
    pytest.param(
        HEAD + "text = 5\n",
        {},
        3,
        "[text] must be a section (a table), not an integer",
        id="section-not-a-table",
    ),
    pytest.param(
        HEAD + '[text]\npadding = "4"\n',
        {},
        4,
        "[text] padding must be an integer, not a string",
        id="wrong-type",
    ),
    pytest.param(
        HEAD + "[png]\nmax_size = true\n",
        {},
        4,
        "[png] max_size must be an integer, not true/false",
        id="boolean-is-not-a-number",
    ),
    pytest.param(
        HEAD + "[png]\ncompress_level = 12\n",
        {},
        4,
        "[png] compress_level = 12 is out of range; use 0 to 9",
        id="out-of-range",
    ),
    pytest.param(
        HEAD + "[png]\nmax_size = -1\n",
        {},
        4,
        "[png] max_size = -1 is out of range; use 0 or more",
        id="below-minimum",
    ),
    pytest.param(
        HEAD + '[text]\ndetect = "sometimes"\n',
        {},
        4,
        '[text] detect = "sometimes" is not allowed; use one of: "always", "never"',
        id="value-not-allowed",
    ),
    pytest.param(
        HEAD + '[dates]\nmode = "year_only"\n',
        {},
        4,
        '[dates] mode = "year_only" is not allowed; did you mean "year-only"?',
        id="value-misspelt",
    ),
    pytest.param(
        HEAD + '[render]\nframes = "first"\n',
        {},
        4,
        '[render] frames = "first" is not allowed; use one of: "all", "middle" '
        '(or a frame number as a string, such as "1")',
        id="frames",
    ),
    pytest.param(
        HEAD + '[text]\nallow_list = [\n    "L",\n    5,\n]\n',
        {},
        6,
        "[text] allow_list must hold strings, not an integer",
        id="list-item-type",
    ),
    pytest.param(
        HEAD + '[tags.rules]\nPatientName = "blur"\n',
        {},
        4,
        f'[tags.rules] PatientName = "blur" is not an action; use one of: {ACTIONS}',
        id="unknown-action",
    ),
    pytest.param(
        HEAD + '[tags.rules]\nPatientName = "pseudonymise"\n',
        {},
        4,
        '[tags.rules] PatientName = "pseudonymise" is not an action; did you mean "pseudonymize"?',
        id="misspelt-action",
    ),
    pytest.param(
        HEAD + '[tags]\nunlisted = "blur"\n',
        {},
        4,
        f'[tags] unlisted = "blur" is not an action; use one of: {ACTIONS}',
        id="unknown-action-for-unlisted",
    ),
    pytest.param(
        HEAD + '[tags.rules]\nInstitutionName = "replace"\n',
        {},
        4,
        '[tags.rules] InstitutionName = "replace" needs the value: write { replace = "VALUE" }',
        id="replace-without-value",
    ),
    pytest.param(
        HEAD + '[tags.rules]\nPatientSex = { keep = "M" }\n',
        {},
        4,
        "[tags.rules] PatientSex: keep must be a non-empty list of strings, such as "
        '{ keep = ["M", "F"] }',
        id="keep-table-shape",
    ),
    pytest.param(
        HEAD + "[tags.rules]\nInstitutionName = { replace = 5 }\n",
        {},
        4,
        '[tags.rules] InstitutionName: replace must be a string, such as { replace = "ANONYMOUS" }',
        id="replace-table-shape",
    ),
    pytest.param(
        HEAD + '[tags.rules]\nInstitutionName = { replce = "X" }\n',
        {},
        4,
        '[tags.rules] InstitutionName: unknown key "replce" in a rule table; '
        'did you mean "replace"?',
        id="rule-table-key",
    ),
    pytest.param(
        HEAD + '[tags.rules]\nPatientSex = { keep = ["M"], replace = "F" }\n',
        {},
        4,
        '[tags.rules] PatientSex = { keep = ["M"], replace = "F" } must hold exactly one '
        'action; write { replace = "VALUE" } or { keep = ["VALUE", ...] }',
        id="rule-table-two-actions",
    ),
    pytest.param(
        HEAD + "[tags.rules]\nPatientName = 3\n",
        {},
        4,
        '[tags.rules] PatientName must be an action such as "remove", not an integer',
        id="action-type",
    ),
    pytest.param(
        HEAD + '[tags.rules]\nPatientNmae = "keep"\n',
        {},
        4,
        '[tags.rules] "PatientNmae" is not a DICOM keyword; did you mean "PatientName"?',
        id="misspelt-keyword",
    ),
    pytest.param(
        HEAD + '[tags.rules]\npatientname = "keep"\n',
        {},
        4,
        '[tags.rules] "patientname" is not a DICOM keyword; did you mean "PatientName"?',
        id="keyword-case",
    ),
    pytest.param(
        HEAD + '[tags.rules]\nZzyzxQuux = "keep"\n',
        {},
        4,
        '[tags.rules] "ZzyzxQuux" is not a DICOM keyword or a (gggg,eeee) tag',
        id="unknown-keyword",
    ),
    pytest.param(
        HEAD + '[tags.rules]\nOverlayData = "remove"\n',
        {},
        4,
        '[tags.rules] "OverlayData" is a repeating-group attribute; '
        'name all its groups with "(60xx,3000)"',
        id="repeating-group-keyword",
    ),
    pytest.param(
        HEAD + '[tags.rules]\n"(0010,001)" = "remove"\n',
        {},
        4,
        '[tags.rules] "(0010,001)" is not a tag; '
        "write (gggg,eeee) with four hex digits in each half and x for any digit",
        id="malformed-tag",
    ),
    pytest.param(
        HEAD + '[tags.rules]\n"0010,0010" = "remove"\n',
        {},
        4,
        '[tags.rules] "0010,0010" is not a tag; did you mean "(0010,0010)"?',
        id="tag-without-parentheses",
    ),
    pytest.param(
        HEAD + "[tags.rules]\n'(60XX,XXXX)' = \"remove\"\n",
        {},
        4,
        '[tags.rules] "(60XX,XXXX)" is not a tag; did you mean "(60xx,xxxx)"?',
        id="malformed-mask",
    ),
    pytest.param(
        HEAD + '[tags.vr]\nui = "remove"\n',
        {},
        4,
        '[tags.vr] "ui" is not a DICOM VR; did you mean "UI"?',
        id="invalid-vr",
    ),
    pytest.param(
        HEAD + '[tags.rules]\nPatientName = "keep"\n"(0010,0010)" = "remove"\n',
        {},
        5,
        '[tags.rules] "(0010,0010)" = "remove" contradicts PatientName = "keep" (line 4); '
        "both name (0010,0010)",
        id="keyword-and-tag-contradict",
    ),
    pytest.param(
        HEAD + '[tags.rules]\nStudyDate = "date"\n"(0008,0020)" = "date"\n',
        {},
        5,
        'warning: [tags.rules] "(0008,0020)" repeats StudyDate (line 4); both name (0008,0020)',
        id="keyword-and-tag-repeat",
    ),
    pytest.param(
        HEAD + '[tags]\nunlisted = "keep"\n',
        {},
        4,
        '[tags] unlisted = "keep" contradicts [safe_harbor] claim = true: every attribute '
        "the profile does not name would be kept, names and dates included",
        id="unlisted-keep-with-claim",
    ),
    pytest.param(
        HEAD + '[dates]\nmode = "shift"\n',
        {},
        4,
        '[dates] mode = "shift" contradicts [safe_harbor] claim = true: a shifted date still '
        "has a month and a day; Safe Harbor keeps only the year (category C)",
        id="shift-with-claim",
    ),
    pytest.param(
        'extends = "base.toml"\n\n[safe_harbor]\nclaim = true\n',
        {"base.toml": 'extends = "safe-harbor"\n[tags]\nprivate = "keep"\n'},
        4,
        '[safe_harbor] claim = true contradicts [tags] private = "keep", set by a profile this '
        "one extends: private attributes often hold names, IDs and dates; keep known-safe ones "
        "with [private.safe]",
        id="claim-over-inherited-keep",
    ),
    pytest.param(
        HEAD + '[uids]\naction = "pseudonymize"\n\n[tags.vr]\nUI = "remove"\n',
        {},
        4,
        '[uids] action = "pseudonymize" contradicts [tags.vr] UI = "remove" (line 7); '
        "both say what happens to UIDs no rule names",
        id="uids-and-vr-ui",
    ),
    pytest.param(
        HEAD + "[dates]\nmax_shift_days = 30\n",
        {},
        4,
        'warning: [dates] max_shift_days has no effect unless [dates] mode = "shift" '
        '(mode is "year-only")',
        id="max-shift-without-shift",
    ),
    pytest.param(
        HEAD + '[descriptors]\naction = "dummy"\n',
        {},
        4,
        '[descriptors] action = "dummy" is not allowed here; use one of: "keep", "remove", '
        '"empty", { replace = "VALUE" }',
        id="action-not-taken-here",
    ),
    pytest.param(
        HEAD + '[annex_e]\nbasis = "basic"\noptions = ["retain-uid"]\n',
        {},
        5,
        '[annex_e] options: "retain-uid" is not allowed; did you mean "retain-uids"?',
        id="annex-e-option",
    ),
    pytest.param(
        HEAD + '[method]\noptions = ["clean-everything"]\n',
        {},
        4,
        f'[method] options: "clean-everything" is not allowed; use one of: {METHOD_OPTIONS}',
        id="method-option",
    ),
    pytest.param(
        HEAD + "[method]\noptions = [\n"
        '    "retain-longitudinal-full-dates",\n'
        '    "retain-longitudinal-modified-dates",\n'
        '    "retain-patient-characteristics",\n]\n',
        {},
        4,
        '[method] options: "retain-longitudinal-full-dates" and '
        '"retain-longitudinal-modified-dates" exclude each other; claim one',
        id="exclusive-options",
    ),
    pytest.param(
        HEAD + '[private.safe]\n"ACME 1.0" = ["xx10",\n  "x11"]\n',
        {},
        5,
        '[private.safe] "ACME 1.0": "x11" is not an element offset; '
        'write xx and two hex digits, such as "xx10"',
        id="private-offset",
    ),
    pytest.param(
        HEAD + '[[regions.fixed]]\nmodality = "US"\nboxes = [[0, 0, 10, 10],\n  [5, 5, 1, 1]]\n',
        {},
        6,
        "[[regions.fixed]] #1 boxes: box 2 [5, 5, 1, 1] is empty or inverted; "
        "need left < right and top < bottom (negative values count from the far edge)",
        id="region-box",
    ),
    pytest.param(
        HEAD + '[[regions.fixed]]\nmodality = "US"\nboxes = [[0, 0, 10, 10]]\n\n'
        "[[regions.fixed]]\nboxes = [[0, 0, 10, 10]]\n",
        {},
        7,
        "[[regions.fixed]] #2 has no modality",
        id="region-required-key",
    ),
    pytest.param(
        HEAD + '[regions.fixed]\nmodality = "US"\n',
        {},
        3,
        "[regions] fixed must be a list of tables: write each one under [[regions.fixed]]",
        id="region-not-array-of-tables",
    ),
    pytest.param(
        'name = "t"\nextends = 5\n',
        {},
        2,
        "extends must be a string or a list of strings, not an integer",
        id="extends-type",
    ),
    pytest.param(
        'name = "t"\nextends = "safe-harbour"\n',
        {},
        2,
        'extends "safe-harbour": no built-in profile of that name; did you mean "safe-harbor"?',
        id="extends-missing-builtin",
    ),
    pytest.param(
        'name = "t"\nextends = ["safe-harbor",\n  "base.toml"]\n',
        {},
        3,
        'extends "base.toml": no such file (paths are relative to the profile)',
        id="extends-missing-file",
    ),
    pytest.param(
        'extends = "b.toml"\n',
        {"b.toml": 'extends = "t.toml"\n'},
        1,
        "circular extends: t.toml -> b.toml -> t.toml",
        id="extends-circular",
    ),
    pytest.param(
        'extends = "b.toml"\n',
        {"b.toml": "[tags\n"},
        1,
        'extends "b.toml": b.toml is not valid TOML (line 1)',
        id="extends-broken-base",
    ),
]


@pytest.mark.parametrize(("text", "others", "line", "message"), CASES)
def test_each_kind_of_problem_with_its_line(
    tmp_path: Path, text: str, others: dict[str, str], line: int, message: str
) -> None:
    for name, other in others.items():
        (tmp_path / name).write_text(other, encoding="utf-8")
    path = tmp_path / "t.toml"
    path.write_text(text, encoding="utf-8")
    assert [str(p) for p in validate_file(path)] == [f"{path}:{line}: {message}"]


MANY = """\
name = "many"
extends = ["safe-harbor"]
description = '''
[tags.rules]
PatientNmae = "keep"
'''
descripton = "not a key"

[textt]
detect = "always"

[ text ]
detetc = "always"
"padding" = "4"
allow_list = [
    "L",  # comma, then a comment
    5,
]

[tags.rules]
PatientNmae = "keep"
'(0010,001)' = "remove"
PatientSex = { keep = "M" }
InstitutionName = { replce = "X" }
StudyID = "pseudonymise"

[tags . vr]
ui = "remove"

[[regions.fixed]]
modality = "US"
boxes = [[0, 0, 10, 10], [5, 5, 1, 1]]

[[regions.fixed]]
modalty = "CR"
boxes = [[0, 0, 10, 10]]

[png]
compress_level = 12
dates.mode = "year_only"

[method]
options = ["retain-longitudinal-modified-dates", "clean-everything"]

[tags]
unlisted = "keep"
"""


def test_a_profile_with_many_mistakes_gets_all_of_them_at_once(tmp_path: Path) -> None:
    path = tmp_path / "many.toml"
    path.write_text(MANY, encoding="utf-8")
    found = [(p.line, p.message) for p in validate_file(path)]
    assert found == [
        (7, 'unknown key "descripton"; did you mean "description"?'),
        (9, "unknown section [textt]; did you mean [text]?"),
        (13, 'unknown key "detetc" in [text]; did you mean "detect"?'),
        (14, "[text] padding must be an integer, not a string"),
        (17, "[text] allow_list must hold strings, not an integer"),
        (21, '[tags.rules] "PatientNmae" is not a DICOM keyword; did you mean "PatientName"?'),
        (
            22,
            '[tags.rules] "(0010,001)" is not a tag; '
            "write (gggg,eeee) with four hex digits in each half and x for any digit",
        ),
        (
            23,
            "[tags.rules] PatientSex: keep must be a non-empty list of strings, such as "
            '{ keep = ["M", "F"] }',
        ),
        (
            24,
            '[tags.rules] InstitutionName: unknown key "replce" in a rule table; '
            'did you mean "replace"?',
        ),
        (
            25,
            '[tags.rules] StudyID = "pseudonymise" is not an action; did you mean "pseudonymize"?',
        ),
        (28, '[tags.vr] "ui" is not a DICOM VR; did you mean "UI"?'),
        (
            32,
            "[[regions.fixed]] #1 boxes: box 2 [5, 5, 1, 1] is empty or inverted; "
            "need left < right and top < bottom (negative values count from the far edge)",
        ),
        (34, "[[regions.fixed]] #2 has no modality"),
        (35, 'unknown key "modalty" in [[regions.fixed]] #2; did you mean "modality"?'),
        (39, "[png] compress_level = 12 is out of range; use 0 to 9"),
        (40, "unknown section [png.dates]; [dates] is a section of its own, not part of [png]"),
        (
            43,
            f'[method] options: "clean-everything" is not allowed; use one of: {METHOD_OPTIONS}',
        ),
        (
            46,
            '[tags] unlisted = "keep" contradicts [safe_harbor] claim = true: every attribute '
            "the profile does not name would be kept, names and dates included",
        ),
    ]


def test_problems_print_as_file_line_message() -> None:
    assert str(Problem("p.toml", 4, "bad")) == "p.toml:4: bad"
    assert str(Problem("p.toml", 4, "odd", "warning")) == "p.toml:4: warning: odd"
    gap = Gap("(A) Names", "p.toml:9", "PatientName is kept")
    assert str(gap) == "p.toml:9: (A) Names: PatientName is kept"


@pytest.mark.parametrize("name", profiles.builtin_names())
def test_builtin_profiles_validate_clean(name: str) -> None:
    assert validate_file(profiles.builtin_dir() / f"{name}.toml") == []


def test_shift_without_max_shift_days_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('extends = "research-longitudinal"\n[dates]\nmode = "shift"\n')
    assert validate_file(path) == []


def test_validate_paths_walks_folders_in_order(tmp_path: Path) -> None:
    (tmp_path / "b.toml").write_text(HEAD + "[png]\ncompress_level = 12\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.toml").write_text(HEAD + "[textt]\n")
    (tmp_path / "ok.toml").write_text(HEAD)
    problems = validate_paths([tmp_path, tmp_path / "ok.toml"])
    assert [(Path(p.file).name, p.line) for p in problems] == [("b.toml", 4), ("a.toml", 3)]


def test_an_unreadable_file_is_one_problem(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    assert [p.line for p in validate_file(missing)] == [1]
    (tmp_path / "latin1.toml").write_bytes(b'name = "caf\xe9"\n')
    assert "not UTF-8" in validate_file(tmp_path / "latin1.toml")[0].message


def test_safe_harbor_has_no_gaps() -> None:
    assert safe_harbor_gaps("safe-harbor") == []


def test_keeping_patient_name_is_a_category_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(HEAD + '[tags.rules]\nPatientName = "keep"\n')
    gaps = safe_harbor_gaps(str(path))
    assert "t.toml:4: (A) Names: PatientName is kept" in [str(g) for g in gaps]
    assert {g.category for g in gaps} == {"PS3.15 Annex E", "(A) Names"}
    messages = [str(p) for p in validate_file(path)]
    inherited = "claims Safe Harbor (inherited from safe-harbor.toml), but"
    assert f"{path}:4: {inherited} (A) Names: PatientName is kept" in messages


def test_unlisted_keep_has_category_a_gaps(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('extends = "safe-harbor"\n[tags]\nunlisted = "keep"\n')
    gaps = safe_harbor_gaps(str(path))
    names = [g for g in gaps if g.category == "(A) Names"]
    assert "OtherPatientNames is kept" in [g.message for g in names]
    assert "PN attributes no rule names are kept" in [g.message for g in names]
    assert all(g.where == "t.toml:3" for g in names)


def test_research_longitudinal_has_gaps_under_dates_only() -> None:
    gaps = safe_harbor_gaps("research-longitudinal")
    categories = {g.category for g in gaps} - {"PS3.15 Annex E"}
    assert categories == {"(C) Dates and ages"}
    messages = [g.message for g in gaps]
    assert any(m.startswith("StudyDate is shifted") for m in messages)
    assert any(m.startswith("PatientAge is kept unchanged") for m in messages)


def test_safe_harbor_flag_proves_profiles_that_do_not_claim_it() -> None:
    path = profiles.builtin_dir() / "research-longitudinal.toml"
    assert validate_file(path) == []
    problems = validate_paths([path], safe_harbor=True)
    assert problems and all(p.message.startswith("not Safe Harbor: ") for p in problems)
    messages = [str(p) for p in problems]
    age = '(C) Dates and ages: PatientAge is kept unchanged ([ages] mode = "keep")'
    assert f"{path}:18: not Safe Harbor: {age}" in messages
    date = 'StudyDate is shifted ([dates] mode = "shift"), which keeps a month and a day'
    assert f"{path}:14: not Safe Harbor: (C) Dates and ages: {date}" in messages


def test_schema_agrees_with_the_loader() -> None:
    text = (resources.files("deid") / "data" / "profile_schema.toml").read_text()
    schema = tomllib.loads(text)
    assert {*schema["actions"]["names"], "replace"} == {a.value for a in profiles.Action}
    dates, ages = schema["sections"]["dates"]["mode"], schema["sections"]["ages"]["mode"]
    assert dates["choices"] == [m.value for m in profiles.DateMode]
    assert ages["choices"] == [m.value for m in profiles.AgeMode]
    assert schema["lists"]["annex-e-options"] == list(profiles.ANNEX_E_OPTIONS)
    columns = {name: o["column"] for name, o in schema["basic_profile"]["options"].items()}
    assert columns == profiles.ANNEX_E_OPTIONS


def test_gaps_need_a_loadable_profile(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ProfileError, match="circular"):
        safe_harbor_gaps(str(tmp_path / "a.toml"))


def _categories() -> list[dict[str, Any]]:
    text = (resources.files("deid") / "data" / "safe_harbor_categories.toml").read_text()
    found: list[dict[str, Any]] = tomllib.loads(text)["category"]
    return found


def test_category_keywords_are_dicom_keywords() -> None:
    categories = _categories()
    assert [c["letter"] for c in categories] == list("ABCDEFGHIJKLMNOPQR")
    for category in categories:
        for keyword in [*category["keywords"], *category["not_checked"]]:
            assert profiles.parse_selector(keyword) is not None, keyword


@pytest.mark.skipif(
    not (SHARED_REFERENCE / "safe-harbor-identifiers.md").is_file(),
    reason="the shared reference is not checked out next to this project",
)
def test_categories_agree_with_the_shared_reference() -> None:
    text = (SHARED_REFERENCE / "safe-harbor-identifiers.md").read_text(encoding="utf-8")
    parts = re.split(r"^### \((\w)\) (.+)$", text, flags=re.MULTILINE)
    reference: dict[str, tuple[str, set[str]]] = {}
    for letter, title, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        body = body.split("\n## ")[0]
        words = {
            word
            for quoted in re.findall(r"`([^`]+)`", body)
            for word in quoted.split("/")
            if re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", word)
        }
        reference[letter] = (title.strip(), words)
    ours = {
        str(c["letter"]): (str(c["title"]), {*c["keywords"], *c["not_checked"]})
        for c in _categories()
    }
    assert ours == reference


def test_every_toml_example_in_the_docs_validates(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "profiles.md").read_text()
    found = re.findall(r"([^\n]*)\n\n```toml\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert len(found) > 10
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "site-private-tags.toml").write_text('[private.safe]\nX = ["xx10"]\n')
    shown_wrong = ("A profile with mistakes", "A profile that claims Safe Harbor and keeps names")
    for number, (lead, example) in enumerate(found):
        path = tmp_path / f"example{number}.toml"
        path.write_text(example, encoding="utf-8")
        problems = [str(p) for p in validate_file(path)]
        if any(words in lead for words in shown_wrong):
            assert problems, example  # shown to demonstrate what validate reports
        else:
            assert problems == [], example


def test_typos_and_safe_harbor_gaps_are_reported_in_one_run(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        HEAD + '[textt]\ndetect = "always"\n\n[tags.rules]\nPatientNmae = "remove"\n'
        'PatientName = "keep"\nStudyDate = "keep"\n',
        encoding="utf-8",
    )
    claim = "claims Safe Harbor (inherited from safe-harbor.toml), but"
    assert [(p.line, p.message) for p in validate_file(path)] == [
        (3, "unknown section [textt]; did you mean [text]?"),
        (7, '[tags.rules] "PatientNmae" is not a DICOM keyword; did you mean "PatientName"?'),
        (
            8,
            f"{claim} PS3.15 Annex E: (0010,0010) PatientName is kept; "
            "the Basic Profile says Z (empty or dummy value)",
        ),
        (8, f"{claim} (A) Names: PatientName is kept"),
        (
            9,
            f"{claim} PS3.15 Annex E: (0008,0020) StudyDate is kept; "
            "the Basic Profile says Z (empty or dummy value)",
        ),
        (9, f"{claim} (C) Dates and ages: StudyDate is kept"),
    ]


def test_a_claim_inherited_through_a_chain_names_its_file(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text('extends = "safe-harbor"\n[png]\ncompress_level = 3\n')
    (tmp_path / "team.toml").write_text(
        'extends = "site.toml"\n[tags.rules]\nPatientName = "keep"\n'
    )
    messages = [p.message for p in validate_file(tmp_path / "team.toml")]
    inherited = "claims Safe Harbor (inherited from safe-harbor.toml), but"
    assert f"{inherited} (A) Names: PatientName is kept" in messages
    (tmp_path / "site.toml").write_text('extends = "dicom-basic"\n[safe_harbor]\nclaim = true\n')
    messages = [p.message for p in validate_file(tmp_path / "team.toml")]
    assert any(m.startswith("claims Safe Harbor (inherited from site.toml), but") for m in messages)


def test_a_base_with_mistakes_still_shows_what_its_children_let_through(tmp_path: Path) -> None:
    base = tmp_path / "base.toml"
    base.write_text(
        'extends = "safe-harbor"\n[tags.rules]\nPatientNmae = "x"\nPatientName = "keep"\n'
    )
    child = tmp_path / "child.toml"
    child.write_text('name = "child"\nextends = "base.toml"\n')
    names = "claims Safe Harbor (inherited from safe-harbor.toml), but (A) Names"
    assert f"{child}:2: {names}: PatientName is kept (set at base.toml:4)" in [
        str(p) for p in validate_file(child)
    ]
    assert [p.line for p in validate_file(base)] == [3, 3, 4, 4]


def test_a_gap_on_a_line_with_an_error_is_left_to_that_error(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(HEAD + '[dates]\nmode = "keep"\n')
    problems = validate_file(path)
    assert len(problems) == 1 and "contradicts [safe_harbor] claim = true" in problems[0].message
    assert "t.toml:4" in {g.where for g in safe_harbor_gaps(str(path))}
