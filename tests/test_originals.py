"""The leak check of a DICOM output before it is written (`deid.originals`).

Outputs are made the way the pipeline makes them: original values collected, tags
de-identified by a real profile, file meta rebuilt, the file serialized.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    KNEE_PATIENT,
    PHI,
    make_ct_dataset,
    safe_harbor_settings,
)
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileDataset

from deid import originals, output, pipeline, profiles, tags, verify
from deid.originals import (
    Finding,
    OriginalValues,
    collect_originals,
    original_values,
    output_leaks,
)
from deid.profiles import Profile
from deid.pseudonym import Pseudonymizer

SAFE_HARBOR = profiles.load("safe-harbor")
# pydicom's own scanner files, each once withheld by a false alarm, and the kept
# attribute the alarm was raised in.
PYDICOM_FILES = [
    ("MR_small.dcm", "Manufacturer"),
    ("JPEG2000.dcm", "BodyPartExamined"),
    ("JPGExtended.dcm", "BodyPartExamined"),
    ("MR_small_bigendian.dcm", "Manufacturer"),
]


def pydicom_file(name: str) -> Path:
    return Path(str(get_testdata_file(name)))


def written(ds: Dataset, profile: Profile) -> tuple[OriginalValues, Dataset, bytes]:
    """The original values of `ds`, then `ds` as output and its serialized header, as the
    pipeline makes them from `ds` saved and read back."""
    ds = reread(ds)
    values = original_values(ds, profile)
    tags.deidentify(ds, profile, Pseudonymizer.from_passphrase("test-originals"))
    tags.rebuild_file_meta(ds, str(ds.file_meta.TransferSyntaxUID))
    return values, ds, output.serialize(ds).header()


def reread(ds: Dataset) -> FileDataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return dcmread(buffer)


def leaks(ds: Dataset, profile: Profile = SAFE_HARBOR) -> list[Finding]:
    values, out, header = written(ds, profile)
    return output_leaks(out, header, values)


def profile_keeping(folder: Path, rules: str, extra: str = "") -> Profile:
    """Safe Harbor, with `rules` added to its `[tags.rules]`."""
    path = folder / "keeps.toml"
    path.write_text(f'name = "keeps"\nextends = "safe-harbor"\n[tags.rules]\n{rules}\n{extra}')
    return profiles.load(str(path))


def assert_no_value_shown(findings: list[Finding], values: list[str]) -> None:
    for finding in findings:
        for value in values:
            assert value not in finding.line()


@pytest.mark.parametrize(("name", "kept"), PYDICOM_FILES)
def test_kept_values_of_scanner_files_are_not_leaks(name: str, kept: str) -> None:
    original = dcmread(pydicom_file(name))
    values, out, header = written(original, SAFE_HARBOR)
    assert output_leaks(out, header, values) == []
    assert out[kept].value == original[kept].value


@pytest.mark.parametrize("name", [name for name, _ in PYDICOM_FILES])
def test_scanner_files_are_written(name: str, tmp_path: Path) -> None:
    settings = safe_harbor_settings(
        tmp_path / "out", "test-originals", formats=frozenset({"dicom", "png"})
    )
    result = pipeline.process(pydicom_file(name), settings)
    assert (result.status, result.reason) == ("written", "")
    assert sorted(Path(p).suffix for p in result.outputs) == [".dcm", ".png"]


def test_patient_named_like_the_body_part_is_written(knee_file: Path, tmp_path: Path) -> None:
    settings = safe_harbor_settings(
        tmp_path / "out", "test-originals", formats=frozenset({"dicom", "png"})
    )
    result = pipeline.process(knee_file, settings)
    assert (result.status, result.reason) == ("written", "")
    dicom = next(Path(p) for p in result.outputs if p.endswith(".dcm"))
    out = dcmread(dicom)
    assert out.BodyPartExamined == "KNEE"
    assert str(out.PatientName) != KNEE_PATIENT["name"]


def test_patient_named_like_the_body_part_passes_the_check(knee_dataset: FileDataset) -> None:
    values, out, header = written(knee_dataset, SAFE_HARBOR)
    assert values.kept == {(0x00180015, "KNEE")}
    assert output_leaks(out, header, values) == []
    assert out.BodyPartExamined == "KNEE"


def test_the_same_value_in_another_kept_attribute_is_a_leak(
    knee_dataset: FileDataset, tmp_path: Path
) -> None:
    # StudyDescription holds the name as a word of a longer text: the name, not the body part.
    profile = profile_keeping(tmp_path, 'StudyDescription = "keep"')
    findings = leaks(knee_dataset, profile)
    assert findings == [Finding("patient name", "StudyDescription")]


def _comments(value: str) -> Callable[[FileDataset], None]:
    def plant(ds: FileDataset) -> None:
        ds.ImageComments = value

    return plant


def _nested_comments(ds: FileDataset) -> None:
    item = Dataset()
    item.ImageComments = PHI["name"]
    ds.ReferencedImageSequence.append(item)


def _private_institution(ds: FileDataset) -> None:
    ds.private_block(0x0011, "ACME SCANNER", create=True).add_new(0x03, "LO", PHI["institution"])


def _meta_patient_id(ds: FileDataset) -> None:
    ds.file_meta.SourceApplicationEntityTitle = PHI["patient_id"]


# (what the profile keeps, how the value is planted, the finding it must give)
REAL_LEAKS = [
    ('StudyDescription = "keep"', None, Finding("patient name", "StudyDescription")),
    ('ImageComments = "keep"', _comments(PHI["name"]), Finding("patient name", "ImageComments")),
    (
        'ImageComments = "keep"',
        _comments(f"{PHI['patient_id']}^2"),
        Finding("patient ID", "ImageComments"),
    ),
    (
        'ImageComments = "keep"',
        _comments(f"ID {PHI['patient_id']} LEFT"),
        Finding("patient ID", "ImageComments"),
    ),
    (
        'ReferencedImageSequence = "keep"\nImageComments = "keep"',
        _nested_comments,
        Finding("patient name", "ReferencedImageSequence[1] > ImageComments"),
    ),
    (
        "",
        _private_institution,
        Finding("institution", "(0011,1003)"),
    ),
]


@pytest.mark.parametrize(("rules", "plant", "expected"), REAL_LEAKS)
def test_real_leaks_are_found_and_named(
    rules: str,
    plant: Callable[[FileDataset], None] | None,
    expected: Finding,
    tmp_path: Path,
) -> None:
    extra = '[private.safe]\n"ACME SCANNER" = ["xx03"]\n' if plant is _private_institution else ""
    ds = make_ct_dataset()
    if plant is not None:
        plant(ds)
    findings = leaks(ds, profile_keeping(tmp_path, rules, extra))
    assert expected in findings
    assert_no_value_shown(findings, [PHI["name"], PHI["patient_id"], PHI["institution"]])


def test_a_whole_copy_in_free_text_is_a_leak(tmp_path: Path) -> None:
    # The original's ImageComments is exactly the name: still a leak, unlike a coded value.
    ds = make_ct_dataset()
    ds.ImageComments = "DOE"
    values, out, header = written(ds, profile_keeping(tmp_path, 'ImageComments = "keep"'))
    assert values.kept == frozenset()
    assert Finding("patient name", "ImageComments") in output_leaks(out, header, values)


def test_a_private_copy_of_a_kept_value_is_found_only_where_it_was_copied(
    tmp_path: Path,
) -> None:
    # JPEG2000.dcm's case: a private element copies BodyPartExamined. Kept, the private
    # element is a leak; the body part itself is not.
    ds = make_ct_dataset()
    ds.private_block(0x0019, "ACME MR", create=True).add_new(0x01, "LO", "WHOLE BODY")
    ds.BodyPartExamined = "WHOLE BODY"
    profile = profile_keeping(tmp_path, "", '[private.safe]\n"ACME MR" = ["xx01"]\n')
    assert leaks(ds, profile) == [Finding("private value", "(0019,1001)")]


def test_a_value_in_the_file_meta_is_named() -> None:
    ds = reread(make_ct_dataset())
    values = original_values(ds, SAFE_HARBOR)
    _meta_patient_id(ds)
    findings = output_leaks(ds, output.serialize(ds).header(), values)
    assert Finding("patient ID", "file meta > SourceApplicationEntityTitle") in findings


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("TOSHIBA_MEC", False),  # a vendor's name is not the institution it is part of
        ("TOSHIBA MEC", True),
        ("TOSHIBA^MEC", True),
        ("MEC-TOSHIBA", True),
        ("XTOSHIBA", False),
        ("TOSHIBA2", False),
    ],
)
def test_a_value_counts_as_a_word_of_its_own(value: str, found: bool) -> None:
    ds = make_ct_dataset()
    ds.InstitutionName = "TOSHIBA"
    ds.Manufacturer = value
    findings = leaks(ds)
    assert (Finding("institution", "Manufacturer") in findings) is found


def test_bytes_outside_the_attributes_read_are_still_searched() -> None:
    values, out, header = written(make_ct_dataset(), SAFE_HARBOR)
    assert output_leaks(out, header, values) == []
    hidden = header + b"\0" + PHI["patient_id"].encode() + b"\0"
    assert output_leaks(out, hidden, values) == [Finding("patient ID", "header bytes")]


def test_a_kept_value_found_more_often_in_the_bytes_is_still_found(
    knee_dataset: FileDataset,
) -> None:
    values, out, header = written(knee_dataset, SAFE_HARBOR)
    hidden = header + b"\0KNEE\0"
    assert output_leaks(out, hidden, values) == [Finding("patient name", "header bytes")]


def test_big_endian_pixel_data_is_not_searched() -> None:
    # A big endian output is serialized whole: its pixels must not raise a finding.
    ds = dcmread(pydicom_file("MR_small_bigendian.dcm"))
    values, out, header = written(ds, SAFE_HARBOR)
    pixels = bytearray(out.PixelData)
    pixels[100:109] = b"\0TOSHIBA\0"
    out.PixelData = bytes(pixels)
    header = output.serialize(out).header()
    assert b"\0TOSHIBA\0" in header
    assert output_leaks(out, header, values) == []


def test_without_kept_values_every_copy_is_found(
    knee_dataset: FileDataset,
) -> None:
    values, out, header = written(knee_dataset, SAFE_HARBOR)
    assert output_leaks(out, header, dict(values)) == [Finding("patient name", "BodyPartExamined")]


def test_original_values_are_the_identifying_values() -> None:
    ds = make_ct_dataset()
    values = original_values(ds, SAFE_HARBOR)
    assert dict(values) == originals.phi_values(ds, originals.kept_on_purpose(SAFE_HARBOR))
    assert values[PHI["patient_id"]] == "patient ID"
    assert values[PHI["institution"]] == "institution"


@pytest.mark.parametrize(
    "name",
    ["phi_values", "kept_on_purpose", "scan_bytes", "collect_originals", "Finding"],
)
def test_verify_still_offers_what_moved(name: str) -> None:
    assert getattr(verify, name) is getattr(originals, name)


@pytest.mark.parametrize(
    ("tag", "vr", "allowed"),
    [
        (0x00180015, "CS", True),  # BodyPartExamined: coded, kept
        (0x00080070, "LO", True),  # Manufacturer
        (0x00080008, "CS", True),  # ImageType
        (0x00100010, "PN", False),  # PatientName: an identifier
        (0x00080080, "LO", False),  # InstitutionName: an identifier
        (0x00081030, "LO", False),  # StudyDescription: a free-text descriptor
        (0x00204000, "LT", False),  # ImageComments: free text
        (0x00080018, "UI", False),  # SOPInstanceUID
        (0x00020016, "AE", False),  # SourceApplicationEntityTitle: file meta
        (0x00191001, "LO", False),  # a private element
    ],
)
def test_which_attributes_may_keep_an_unchanged_value(tag: int, vr: str, allowed: bool) -> None:
    assert originals.may_keep_unchanged(tag, vr, SAFE_HARBOR) is allowed


@pytest.mark.parametrize("name", [name for name, _ in PYDICOM_FILES])
def test_the_pipeline_and_the_reviewer_allow_the_same_values(name: str) -> None:
    """What the pipeline's check lets an output keep, the check of finished outputs
    (`collect_originals` with the profile) lets it keep too."""
    path = pydicom_file(name)
    writer = original_values(dcmread(path), SAFE_HARBOR)
    reviewer = originals.collect_originals([path], profile=SAFE_HARBOR)
    assert writer.kept <= reviewer.kept
    assert {value for _, value in reviewer.kept} <= set(reviewer)


def test_the_reviewer_allows_nothing_without_a_profile(knee_file: Path) -> None:
    assert originals.collect_originals([knee_file]).kept == frozenset()
    kept = originals.collect_originals([knee_file], profile=SAFE_HARBOR).kept
    assert kept == {(0x00180015, KNEE_PATIENT["name"])}


def test_a_vendor_class_uid_links_nobody_but_an_instance_uid_does(
    ct_dataset: FileDataset, tmp_path: Path
) -> None:
    source = Dataset()
    source.ReferencedSOPClassUID = "1.3.12.2.1107.5.9.1"
    source.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.99.1234.5"
    ct_dataset.SourceImageSequence = [source]
    ct_dataset.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    found = collect_originals([tmp_path / "ct.dcm"])
    assert "1.3.12.2.1107.5.9.1" not in found
    assert found["1.2.826.0.1.3680043.99.1234.5"] == "original UID"
