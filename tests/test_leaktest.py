"""Profile tests, as a team runs them in CI: the built-in profile passes on the sample
CD, a weakened one is caught, refusals count only when the profile asks for them, and
nothing is left on disk.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import make_dataset

from deid.errors import ProfileError
from deid.leaktest import ProfileTestReport, profile_test

SAMPLES = Path(__file__).resolve().parents[1] / "sample_dicom"
CT = SAMPLES / "PATIENT_SMITH" / "CT_CHEST" / "IM0001"
PDF = "1.2.840.10008.5.1.4.1.1.104.1"
# Values planted in the sample files (sample_dicom/README.md), a few of each kind.
SAMPLE_PHI = (
    "DOE",
    "JANE",
    "SMITH",
    "ROBERT",
    "MRN3390415",
    "MRN4402817",
    "19570109",
    "20221103",
    "RIVERBEND TEST HOSPITAL",
    "MERCY FICTIONAL MEDICAL CENTER",
    "QUINN",
    "1.2.826.0.1.3680043.8.498.77002",
)
WEAK = 'name = "weak"\nextends = "safe-harbor"\n[tags.rules]\nInstitutionName = "keep"\n'


def assert_no_phi(text: str) -> None:
    for value in SAMPLE_PHI:
        assert value not in text.upper()


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder every temporary file goes to, so a test can see what is left."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture
def one_ct(tmp_path: Path) -> Path:
    """A samples folder with one CT slice of the sample CD, under a neutral name."""
    folder = tmp_path / "samples"
    folder.mkdir()
    shutil.copy(CT, folder / "slice")
    return folder


@pytest.fixture(scope="module")
def safe_harbor_report() -> ProfileTestReport:
    return profile_test("safe-harbor", SAMPLES, jobs=2)


def test_safe_harbor_passes_on_the_sample_cd(safe_harbor_report: ProfileTestReport) -> None:
    report = safe_harbor_report
    assert report.ok, "\n".join(report.lines())
    assert report.leaks == [] and report.failures == [] and report.refusals == []
    assert report.summary.counts["written"] == 10 and report.summary.counts["skipped"] == 6
    assert (report.verify.dicom, report.verify.png, report.verify.notes) == (10, 10, 10)
    assert len(report.sources) == 30 and all(not Path(p).is_absolute() for p in report.sources)
    assert report.lines()[-1] == "ok: 0 leaks, 0 failures, 10 written"
    assert_no_phi("\n".join(report.lines()))


def test_a_profile_keeping_the_institution_is_caught(
    tmp_path: Path, one_ct: Path, temp_root: Path
) -> None:
    weak = tmp_path / "weak.toml"
    weak.write_text(WEAK)
    report = profile_test(str(weak), one_ct)
    assert not report.ok
    assert [(leak.where, leak.kind) for leak in report.leaks] == [
        ("InstitutionName", "institution")
    ]
    lines = "\n".join(report.lines())
    assert "InstitutionName: institution" in lines and lines.endswith("0 written")
    assert_no_phi(lines)
    assert list(temp_root.iterdir()) == []


def test_nothing_is_left_on_disk(one_ct: Path, temp_root: Path) -> None:
    report = profile_test("safe-harbor", one_ct)
    assert report.ok, "\n".join(report.lines())
    assert report.summary.counts["written"] == 1
    assert list(temp_root.iterdir()) == []
    assert [p.name for p in one_ct.iterdir()] == ["slice"]


@pytest.mark.parametrize(
    ("refuse", "ok"),
    [
        ('["encapsulated-document"]', True),  # the profile asks for the refusal
        ("[]", False),  # refused only because a PDF has no image: a failure
    ],
    ids=["asked", "not-asked"],
)
def test_refusals_count_only_when_the_profile_asks(
    tmp_path: Path, one_ct: Path, refuse: str, ok: bool
) -> None:
    make_dataset(sop_class=PDF).save_as(one_ct / "report", enforce_file_format=True)
    profile = tmp_path / "p.toml"
    profile.write_text(f'name = "p"\nextends = "safe-harbor"\n[objects]\nrefuse = {refuse}\n')
    report = profile_test(str(profile), one_ct)
    assert report.ok is ok, "\n".join(report.lines())
    assert len(report.refusals if ok else report.failures) == 1
    assert report.summary.counts["failed"] == 1 and report.summary.counts["written"] == 1


def test_samples_with_no_dicom_prove_nothing(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing to see\n")
    report = profile_test("safe-harbor", tmp_path)
    assert not report.ok and report.leaks == []
    assert report.lines()[-1] == "FAILED: 0 leaks, 0 failures, 0 written"


def test_an_unknown_profile_is_an_error() -> None:
    with pytest.raises(ProfileError):
        profile_test("no-such-profile", SAMPLES)


def test_scanner_files_pass(pydicom_samples: Path) -> None:
    """pydicom's MR_small (a vendor `TOSHIBA_MEC`, institution `TOSHIBA`), JPEG2000 and
    JPGExtended (private elements copying the kept body part) leak nothing."""
    report = profile_test("safe-harbor", pydicom_samples)
    assert report.ok, "\n".join(report.lines())
    assert report.summary.counts["written"] == 3 and report.verify.dicom == 3


@pytest.mark.parametrize("source", ["knee_file", "knee_slices"])
def test_a_patient_named_like_the_body_part_passes(
    request: pytest.FixtureRequest, source: str
) -> None:
    found: Path = request.getfixturevalue(source)
    report = profile_test("safe-harbor", found.parent if found.is_file() else found)
    assert report.ok, "\n".join(report.lines())


def test_the_name_in_a_kept_description_is_caught(tmp_path: Path, knee_file: Path) -> None:
    """Keeping StudyDescription `MR KNEE LEFT` of the patient named `KNEE` is a leak: the
    pipeline withholds the output, and the test says where the name was, and only there
    (not in the kept BodyPartExamined `KNEE`)."""
    keeps = tmp_path / "keeps.toml"
    keeps.write_text(WEAK.replace("InstitutionName", "StudyDescription"))
    report = profile_test(str(keeps), knee_file.parent)
    assert not report.ok and len(report.withheld) == 1
    assert [(leak.where, leak.kind) for leak in report.leaks] == [
        ("StudyDescription", "patient name")
    ]
    assert "KNEE" not in "\n".join(line.split(": ", 1)[1] for line in report.lines()[1:])
