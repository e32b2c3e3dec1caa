"""The tag step against DICOM PS3.15 Annex E and the safe-harbor profile."""

from __future__ import annotations

import hashlib
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import PHI, make_dataset
from pydicom import dcmread, dcmwrite
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileDataset
from pydicom.sequence import Sequence

from deid import profiles, tags
from deid.profiles import Action
from deid.pseudonym import Pseudonymizer

ANNEX_FILE_SHA256 = "106ce327eedcf85f7a1e04d7ee50dc8ab52a52b4076f53bd1ee072799fb0153f"
SHARED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def annex_rows() -> list[dict[str, Any]]:
    text = (resources.files("deid") / "data" / "ps3.15-annex-e.json").read_text("utf-8")
    rows: list[dict[str, Any]] = json.loads(text)
    return rows


def test_packaged_annex_table_is_the_2026d_reference() -> None:
    data = (resources.files("deid") / "data" / "ps3.15-annex-e.json").read_bytes()
    assert hashlib.sha256(data).hexdigest() == ANNEX_FILE_SHA256
    assert len(annex_rows()) == 657
    shared = SHARED_REFERENCE / "ps3.15-annex-e.json"
    if shared.is_file():
        assert shared.read_bytes() == data


def _tag(row: dict[str, Any]) -> int | None:
    text = row["tag"].strip("()").replace(",", "")
    return None if "X" in text.upper() or "G" in text.upper() else int(text, 16)


def _planted(index: int, vr: str) -> Any:
    """A PHI-like value valid for the VR, unique per row so a survivor can be traced."""
    token = f"PHI{index:04d}Q"
    match vr:
        case "PN":
            return f"PLANTED{index:04d}^NAME"
        case "DA":
            return "19870623"
        case "DT":
            return "19870623101010"
        case "TM":
            return "101010"
        case "UI":
            return f"1.2.826.0.1.3680043.8.498.77.{index}"
        case "AS":
            return "095Y"
        case "IS":
            return "7713"
        case "DS":
            return "7713.5"
        case "US" | "SS" | "UL" | "SL" | "UV" | "SV":
            return 7713
        case "FL" | "FD":
            return 7713.5
        case "AT":
            return 0x00100010
        case "OB" | "OW" | "UN" | "OF" | "OD" | "OL" | "OV":
            return token.encode() * 2
        case "SQ":
            inner = Dataset()
            inner.PatientName = f"PLANTED{index:04d}^INNER"
            deeper = Dataset()
            deeper.PatientID = f"{token}DEEP"
            inner.OtherPatientIDsSequence = Sequence([deeper])
            return Sequence([inner])
        case _:
            return token


def _every_annex_attribute() -> tuple[FileDataset, dict[int, str]]:
    ds = make_dataset(np.zeros((8, 8), dtype=np.uint16))
    planted: dict[int, str] = {}
    for index, row in enumerate(annex_rows()):
        tag = _tag(row)
        if tag is None or tag >> 16 == 0x0002:
            continue
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "LO"
        vr = vr.split(" or ")[0]
        if tag in (0x7FE00010,) or (tag >> 16 == 0x0028 and vr in ("US",)):
            continue
        ds.add_new(tag, vr, _planted(index, vr))
        planted[tag] = vr
    ds.add_new(0x60003000, "OW", b"OVERLAYPHI" * 4)
    ds.add_new(0x60004000, "LT", "OVERLAY COMMENT PHI0001Q")
    ds.add_new(0x50003000, "OW", b"CURVEPHI00" * 4)
    block = ds.private_block(0x0009, "VENDOR PHI", create=True)
    block.add_new(0x10, "LO", "PRIVATEPHI0001Q")
    return ds, planted


def _serialize(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def test_no_planted_annex_value_survives() -> None:
    ds, planted = _every_annex_attribute()
    assert len(planted) > 600
    profile = profiles.load("safe-harbor")
    report = tags.deidentify(ds, profile, Pseudonymizer.from_passphrase("test"))
    tags.rebuild_file_meta(ds, ds.file_meta.TransferSyntaxUID)
    data = _serialize(ds)
    reread = dcmread(io.BytesIO(data))
    for needle in (b"PHI", b"PLANTED", b"1.2.826.0.1.3680043.8.498.77.", b"19870623"):
        assert needle not in data
    assert b"101010" not in data.split(b"\xe0\x7f\x10\x00")[0]
    for elem in reread.iterall():
        assert not elem.tag.is_private
        assert elem.tag.group not in range(0x5000, 0x5100)
        assert elem.tag.group not in range(0x6000, 0x6100)
        assert elem.keyword != "IconImageSequence"
    assert reread.file_meta.MediaStorageSOPInstanceUID == reread.SOPInstanceUID
    assert reread.PatientIdentityRemoved == "YES"
    assert reread.PatientAge == "090Y"
    assert len(report.changes) >= len(planted)


# Which profile actions are at least as strict as each Basic Profile code.
_STRICT = {
    "X": {Action.REMOVE},
    "Z": {Action.REMOVE, Action.EMPTY, Action.REPLACE, Action.PSEUDONYMIZE},
    "D": {Action.REMOVE, Action.EMPTY, Action.REPLACE, Action.PSEUDONYMIZE},
    "U": {Action.REMOVE, Action.EMPTY, Action.PSEUDONYMIZE},
}
_OPTION_ACTIONS = {
    "retain-longitudinal-modified-dates": ("retain_long_modified_dates", {Action.DATE}),
    "retain-patient-characteristics": ("retain_patient_characteristics", {Action.KEEP, Action.AGE}),
}


def _allowed(row: dict[str, Any], claimed: list[str]) -> set[Action]:
    allowed: set[Action] = set()
    for code in row["basic"].rstrip("*").split("/"):
        if code == "K":
            allowed |= set(Action)
        allowed |= _STRICT.get(code, set())
    if row["basic"] == "X/Z/U*":
        allowed.add(Action.KEEP)  # kept sequences are walked; their UIDs re-issued
    for option in claimed:
        column, actions = _OPTION_ACTIONS[option]
        if row["options"][column]:
            allowed |= actions
    return allowed


@pytest.mark.parametrize("row", annex_rows(), ids=lambda r: f"{r['tag']} {r['keyword']}")
def test_safe_harbor_is_at_least_as_strict_as_basic_profile(row: dict[str, Any]) -> None:
    profile = profiles.load("safe-harbor")
    text = row["tag"].strip("()").replace(",", "").upper()
    if text == "GGGGEEEE":
        tag, vr = 0x00190010, "LO"
    else:
        tag = int(text.replace("X", "0"), 16)
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            vr = None
    rule = profile.rule_for(tag, vr)
    assert rule.action in _allowed(row, profile.method_options()), rule


def test_method_code_sequence_records_applied_options(ct_dataset: FileDataset) -> None:
    profile = profiles.load("safe-harbor")
    tags.deidentify(ct_dataset, profile, Pseudonymizer.from_passphrase("k"), pixels_cleaned=True)
    codes = [item.CodeValue for item in ct_dataset.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113101", "113107", "113108"]
    assert ct_dataset.LongitudinalTemporalInformationModified == "MODIFIED"


def test_references_map_like_the_instances_they_point_to(ct_dataset: FileDataset) -> None:
    referenced = ct_dataset.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    other = make_dataset(phi=False)
    other.SOPInstanceUID = referenced
    pseudo = Pseudonymizer.from_passphrase("same key")
    profile = profiles.load("safe-harbor")
    tags.deidentify(ct_dataset, profile, pseudo)
    tags.deidentify(other, profile, pseudo)
    assert ct_dataset.ReferencedImageSequence[0].ReferencedSOPInstanceUID == other.SOPInstanceUID
    assert other.SOPInstanceUID.startswith("2.25.")
    item = ct_dataset.ReferencedImageSequence[0]
    assert "ReferencedPatientSequence" not in item
    assert ct_dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"


def test_same_key_same_pseudonyms_and_no_key_unlinkable() -> None:
    profile = profiles.load("safe-harbor")
    results = []
    for key in ("k1", "k1", None):
        ds = make_dataset()
        tags.deidentify(ds, profile, Pseudonymizer.from_passphrase(key))
        results.append((ds.PatientID, ds.StudyInstanceUID, ds.SOPInstanceUID))
    assert results[0] == results[1]
    assert results[2][0] != results[0][0] and results[2][1] != results[0][1]


@pytest.mark.parametrize(
    ("keyword", "original", "expected"),
    [
        ("StudyDate", "20230817", "20230101"),
        ("PatientBirthDate", "19520314", None),
        ("AcquisitionDateTime", "20230817101530.123", "20230101"),
        ("StudyTime", "101530", None),
        ("PatientAge", "095Y", "090Y"),
        ("PatientAge", "089Y", "089Y"),
        ("PatientAge", "999M", "999M"),
        ("PatientAge", "999W", "999W"),
        ("PatientAge", "NINETY", None),
        ("PatientAge", "040W", "040W"),
    ],
)
def test_date_and_age_rules(keyword: str, original: str, expected: str | None) -> None:
    ds = make_dataset()
    setattr(ds, keyword, original)
    tags.deidentify(ds, profiles.load("safe-harbor"), Pseudonymizer.from_passphrase("k"))
    value = ds.get(keyword)
    assert (value or None) == expected


def test_birth_year_that_reveals_age_over_89_is_removed() -> None:
    ds = make_dataset()
    ds.PatientBirthDate = "19200505"
    ds.StudyDate = "20230817"
    tags.deidentify(ds, profiles.load("safe-harbor"), Pseudonymizer.from_passphrase("k"))
    assert not ds.PatientBirthDate


def test_pixels_changed_gives_a_new_instance_uid() -> None:
    profile = profiles.load("safe-harbor")
    pseudo = Pseudonymizer.from_passphrase("k")
    same, changed = make_dataset(), make_dataset()
    tags.deidentify(same, profile, pseudo)
    tags.deidentify(changed, profile, pseudo, pixels_changed=True)
    assert same.SOPInstanceUID != changed.SOPInstanceUID
    assert same.StudyInstanceUID == changed.StudyInstanceUID


def test_report_names_paths_and_rules_never_values(ct_dataset: FileDataset) -> None:
    report = tags.deidentify(
        ct_dataset, profiles.load("safe-harbor"), Pseudonymizer.from_passphrase("k")
    )
    listing = "\n".join(f"{c.path} {c.tag_text} {c.rule.describe()}" for c in report.changes)
    assert "ReferencedImageSequence[0] > ReferencedSOPInstanceUID" in listing
    for value in (PHI["name"], PHI["patient_id"], PHI["institution"], "DOE"):
        assert value not in listing


def _row_tag_vr(row: dict[str, Any]) -> tuple[int, str] | None:
    tag = _tag(row)
    if tag is None or tag >> 16 in (0x0000, 0x0002) or tag == 0x7FE00010:
        return None
    try:
        return tag, dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return tag, "LO"


@pytest.fixture(scope="module")
def basic_outcome() -> tuple[Dataset, Dataset]:
    ds, _ = _every_annex_attribute()
    for tag in [t for t in ds.keys() if t.group == 0]:  # noqa: SIM118
        del ds[tag]
    original = dcmread(io.BytesIO(_serialize(ds)))
    tags.deidentify(ds, profiles.load("dicom-basic"), Pseudonymizer.from_passphrase("k"))
    return original, ds


@pytest.mark.parametrize("row", annex_rows(), ids=lambda r: f"{r['tag']} {r['keyword']}")
def test_dicom_basic_applies_table_e1_1(
    row: dict[str, Any], basic_outcome: tuple[Dataset, Dataset]
) -> None:
    found = _row_tag_vr(row)
    if found is None:
        pytest.skip("repeating group, private row or file meta")
    tag, vr = found
    original, clean = basic_outcome
    if tag not in original or (vr == "US" and tag >> 16 == 0x0028):
        pytest.skip("not planted")
    code = row["basic"]
    if code == "X":
        assert tag not in clean
    elif code in ("Z", "X/Z", "X/Z/D"):
        assert tag in clean and clean[tag].is_empty
    elif code == "U" and vr == "UI":
        assert str(clean[tag].value).startswith("2.25.")
    elif code in ("D", "X/D", "Z/D") and vr not in ("SQ", "UI"):
        assert tag in clean and clean[tag].value != original[tag].value
    elif code == "K":
        assert clean[tag].value == original[tag].value


@pytest.mark.parametrize(
    ("options", "keyword", "kept"),
    [
        ([], "SOPInstanceUID", False),
        (["retain-uids"], "SOPInstanceUID", True),
        ([], "StudyDate", False),
        (["retain-longitudinal-full-dates"], "StudyDate", True),
        (["retain-patient-characteristics"], "PatientSex", True),
        ([], "PatientSex", False),
        (["retain-institution-identity"], "InstitutionName", True),
    ],
)
def test_dicom_basic_options_are_switches(
    tmp_path: Path, options: list[str], keyword: str, kept: bool
) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(f'extends = "dicom-basic"\n[annex_e]\noptions = {json.dumps(options)}\n')
    ds = make_dataset()
    before = str(ds.get(keyword))
    tags.deidentify(ds, profiles.load(str(path)), Pseudonymizer.from_passphrase("k"))
    assert (str(ds.get(keyword)) == before) is kept
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    expected = {
        "retain-uids": "113110",
        "retain-longitudinal-full-dates": "113106",
        "retain-patient-characteristics": "113108",
        "retain-institution-identity": "113112",
    }
    assert codes == ["113100"] + [expected[o] for o in options]


def test_research_profile_shifts_each_patient_consistently() -> None:
    profile = profiles.load("research-longitudinal")
    pseudo = Pseudonymizer.from_passphrase("study key")
    first, second, other = make_dataset(), make_dataset(), make_dataset()
    second.StudyDate, second.StudyTime = "20231001", "083000"
    other.PatientID = "SOMEONE-ELSE"
    other.PatientAge = "095Y"
    for ds in (first, second, other):
        tags.deidentify(ds, profile, pseudo)
    from datetime import date

    def day(value: str) -> date:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))

    assert first.StudyDate != PHI["study_date"]
    assert (day(second.StudyDate) - day(first.StudyDate)).days == 45
    assert second.StudyTime == "083000"
    assert first.PatientBirthDate and first.PatientBirthDate != PHI["birth_date"]
    assert other.PatientAge == "095Y"
    assert "per-patient offset" in profile.describe(profile.rule_for(0x00080020, "DA"))
    assert not profile.claims_safe_harbor and "NOT HIPAA Safe Harbor" in profile.description


@pytest.mark.parametrize(
    ("action", "keyword", "original", "expected"),
    [
        ('"keep"', "InstitutionName", "SAINT ELSEWHERE", "SAINT ELSEWHERE"),
        ('{ keep = ["A"] }', "InstitutionName", "SAINT ELSEWHERE", ""),
        ('"remove"', "InstitutionName", "SAINT ELSEWHERE", None),
        ('"empty"', "InstitutionName", "SAINT ELSEWHERE", ""),
        ('{ replace = "SITE" }', "InstitutionName", "SAINT ELSEWHERE", "SITE"),
        ('"dummy"', "InstitutionName", "SAINT ELSEWHERE", "ANONYMOUS"),
        ('"dummy"', "ReferencedSOPInstanceUID", "1.2.826.0.1.3680043.8.498.9", "2.25."),
        ('"pseudonymize"', "ReferencedSOPInstanceUID", "1.2.826.0.1.3680043.8.498.9", "2.25."),
    ],
)
def test_each_action_inside_a_kept_sequence(
    tmp_path: Path, action: str, keyword: str, original: str, expected: str | None
) -> None:
    path = tmp_path / "nested.toml"
    path.write_text(
        'extends = "safe-harbor"\n[safe_harbor]\nclaim = false\n'
        f'[tags.rules]\nReferencedImageSequence = "keep"\n{keyword} = {action}\n'
    )
    item = Dataset()
    setattr(item, keyword, original)
    ds = make_dataset()
    ds.ReferencedImageSequence = Sequence([item])
    report = tags.deidentify(ds, profiles.load(str(path)), Pseudonymizer.from_passphrase("k"))
    inner = ds.ReferencedImageSequence[0]
    after = str(inner[keyword].value or "") if keyword in inner else None
    if expected == "2.25.":
        assert after is not None and after.startswith("2.25.")
    else:
        assert after == expected
    changed = [c.path for c in report.changes if c.path.startswith("ReferencedImageSequence")]
    assert changed == ([] if after == original else [f"ReferencedImageSequence[0] > {keyword}"])
