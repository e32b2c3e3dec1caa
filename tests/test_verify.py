"""The second look at finished outputs: planted leaks are found, clean outputs pass.

Outputs come from the real pipeline; each leak is planted into a copy of a clean one,
so a test fails only for the leak it plants. Findings name a place and a kind, never
the value, and that is checked on every report.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import (
    BURNED_LINES,
    KNEE_PATIENT,
    OVERLAY_NAME,
    PHI,
    burned_in_pixels,
    make_ct_dataset,
    make_dataset,
    overlay_in_bit_12,
    safe_harbor_settings,
    signed_with_garbage,
)
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileDataset
from pydicom.sequence import Sequence
from pydicom.uid import RLELossless
from typer.testing import CliRunner

from deid import batch, inputs, pipeline, profiles
from deid.cli import app
from deid.manifest import MANIFEST_NAME, Manifest, RunInfo
from deid.record import BoxRecord, FileRecord
from deid.report import page
from deid.settings import Settings
from deid.share.encode import encode
from deid.text import TextPolicy
from deid.verify import (
    Leak,
    check_dicom,
    check_jpeg,
    check_png,
    check_text,
    collect_originals,
    verify_outputs,
)

SAMPLES = Path(__file__).resolve().parents[1] / "sample_dicom"
P: dict[str, str] = {key: value for key, value in PHI.items() if isinstance(value, str)}
POLICY = TextPolicy.from_profile(profiles.load("safe-harbor").section("text"))
PLANTED = [
    P["name"],
    *PHI["name_words"],
    P["patient_id"],
    P["accession"],
    P["birth_date"],
    P["study_date"],
    P["institution"],
    P["physician"],
    P["phone"],
    P["sop_uid"],
]
# Values planted in the sample files (sample_dicom/README.md), a few of each kind.
SAMPLE_PHI = [
    "DOE^JANE",
    "JANE",
    "MRN4402817",
    "SMITH^ROBERT",
    "GARCIA",
    "7781204",
    "NGUYEN",
    "PATEL",
    "KOWALSKI",
    "MUELLER",
    "ALT-0098812",
    "19680722",
    "20230314",
    "MERCY FICTIONAL MEDICAL CENTER",
    "LAKESIDE FICTIONAL CLINIC",
    "1.2.826.0.1.3680043.8.498.77001",
]


def assert_no_values(leaks: list[Leak], values: list[str] = PLANTED) -> None:
    """Neither the place nor the kind of a finding repeats what was found."""
    text = "\n".join(f"{leak.where} {leak.kind} {leak!r}".replace(leak.file, "") for leak in leaks)
    for value in values:
        assert value.upper() not in text.upper()


def settings(out_dir: Path, *, tree: bool = False) -> Settings:
    formats = frozenset({"dicom", "png"})
    return safe_harbor_settings(out_dir, "test-verify", formats=formats, tree=tree, context=True)


def planted_dataset() -> FileDataset:
    """A CT slice with fake PHI at the top, in a nested sequence and in a private block."""
    return make_ct_dataset()


@dataclass(frozen=True)
class Outputs:
    """Inputs with fake PHI and what the pipeline made of them."""

    inputs: Path
    dicom: Path
    png: Path
    burned_png: Path
    note: Path


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    root = tmp_path_factory.mktemp("verify")
    inputs = root / "inputs"
    inputs.mkdir()
    ct = inputs / "ct.dcm"
    planted_dataset().save_as(ct, enforce_file_format=True)
    cr = inputs / "cr.dcm"
    make_dataset(
        burned_in_pixels(BURNED_LINES),
        bits_stored=12,
        sop_class="1.2.840.10008.5.1.4.1.1.1",
        modality="CR",
        extra={"WindowCenter": 2048, "WindowWidth": 4096, "ViewPosition": "PA"},
    ).save_as(cr, enforce_file_format=True)
    out = root / "out"
    made = {}
    for name, path in (("ct", ct), ("cr", cr)):
        result = pipeline.process(path, settings(out / name))
        assert result.status == "written", result.reason
        made[name] = {Path(p).suffix: Path(p) for p in result.outputs}
    return Outputs(
        inputs, made["ct"][".dcm"], made["ct"][".png"], made["cr"][".png"], made["ct"][".txt"]
    )


@pytest.fixture(scope="module")
def originals(outputs: Outputs) -> dict[str, str]:
    return collect_originals([outputs.inputs])


def test_collect_originals_reads_dicom_and_skips_the_rest(tmp_path: Path) -> None:
    make_dataset().save_as(tmp_path / "a.dcm", enforce_file_format=True)
    (tmp_path / "notes.txt").write_text("not DICOM\n")
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\2\0\0\0UL\4\0")
    found = collect_originals([tmp_path])
    assert found[P["name"]] == "patient name"
    assert found["DOE"] == "patient name"
    assert found[P["patient_id"]] == "patient ID"
    assert found[P["sop_uid"]] == "original UID"
    assert found[P["frame_uid"]] == "original UID"


# --- DICOM -----------------------------------------------------------------------------

DEEP = "ReferencedStudySequence[0] > ReferencedPatientSequence[0] > OtherPatientIDsSequence[0]"


def _deep_name(ds: FileDataset) -> None:
    deepest = Dataset()
    deepest.PatientName = P["name"]
    middle = Dataset()
    middle.OtherPatientIDsSequence = Sequence([deepest])
    top = Dataset()
    top.ReferencedPatientSequence = Sequence([middle])
    ds.ReferencedStudySequence = Sequence([top])


def _private_date(ds: FileDataset) -> None:
    ds.private_block(0x0019, "ACME SCANNER", create=True).add_new(0x10, "DA", P["birth_date"])


def _original_uid(ds: FileDataset) -> None:
    ds.FrameOfReferenceUID = P["frame_uid"]


def _full_date(ds: FileDataset) -> None:
    ds.AcquisitionDate = "20220915"


def _file_meta_name(ds: FileDataset) -> None:
    ds.file_meta.SourceApplicationEntityTitle = "JOHN DOE"


def _preamble(ds: FileDataset) -> None:
    ds.preamble = b"DOE^JOHN".ljust(128, b"\0")


def _set(keyword: str, value: object) -> Callable[[FileDataset], None]:
    def plant(ds: FileDataset) -> None:
        setattr(ds, keyword, value)

    return plant


def _bit_above_bits_stored(ds: FileDataset) -> None:
    cells = np.frombuffer(ds.PixelData, dtype="<u2").copy()
    cells[100:140] |= 1 << ds.BitsStored
    ds.PixelData = cells.tobytes()


def _tag(tag: int, vr: str, value: object) -> Callable[[FileDataset], None]:
    def plant(ds: FileDataset) -> None:
        ds.add_new(tag, vr, value)

    return plant


# id -> (plant, where, kind, needs the originals)
DICOM_LEAKS: dict[str, tuple[Callable[[FileDataset], None], str, str, bool]] = {
    "name-3-deep": (_deep_name, f"{DEEP} > PatientName", "patient name", True),
    "name-3-deep-no-originals": (_deep_name, f"{DEEP} > PatientName", "person name", False),
    "date-in-private": (_private_date, "(0019,1010) private", "full date", False),
    "private-element": (_private_date, "(0019,1010) private", "private element", False),
    "private-original": (_private_date, "(0019,1010) private", "birth date", True),
    "original-uid": (_original_uid, "FrameOfReferenceUID", "original UID", True),
    "full-date": (_full_date, "AcquisitionDate", "full date", False),
    "file-meta-name": (
        _file_meta_name,
        "file meta > SourceApplicationEntityTitle",
        "patient name",
        True,
    ),
    "preamble": (_preamble, "preamble", "non-zero preamble", False),
    "phone": (
        _set("ImageComments", f"call {P['phone']}"),
        "ImageComments",
        "phone number",
        False,
    ),
    "email": (
        _set("StudyDescription", "ask j.d@example.org"),
        "StudyDescription",
        "e-mail address",
        False,
    ),
    "ssn": (
        _set("ImageComments", "SSN 078-05-1120"),
        "ImageComments",
        "US social security number",
        False,
    ),
    "id-number": (
        _set("StudyDescription", "CT 4471923"),
        "StudyDescription",
        "ID-like number",
        False,
    ),
    "written-date": (
        _set("StudyDescription", "CT 03/14/2023"),
        "StudyDescription",
        "full date",
        False,
    ),
    "person-name": (_set("OperatorsName", "SMITH^ANNA"), "OperatorsName", "person name", False),
    "institution": (
        _set("InstitutionName", P["institution"]),
        "InstitutionName",
        "institution",
        True,
    ),
    "overlay": (_tag(0x60000010, "US", 64), "OverlayRows", "overlay element", False),
    "curve": (_tag(0x50000005, "US", 1), "CurveDimensions", "curve element", False),
    "age-over-90": (_set("PatientAge", "095Y"), "PatientAge", "age over 89", False),
    "bits-above-bits-stored": (
        _bit_above_bits_stored,
        "pixel data",
        "bits above BitsStored",
        False,
    ),
    "identity-flag": (
        _set("PatientIdentityRemoved", "NO"),
        "PatientIdentityRemoved",
        "PatientIdentityRemoved not YES",
        False,
    ),
}


@pytest.mark.parametrize(
    ("plant", "where", "kind", "with_originals"), DICOM_LEAKS.values(), ids=DICOM_LEAKS.keys()
)
def test_check_dicom_finds_planted_leak(
    outputs: Outputs,
    originals: dict[str, str],
    tmp_path: Path,
    plant: Callable[[FileDataset], None],
    where: str,
    kind: str,
    with_originals: bool,
) -> None:
    ds = dcmread(outputs.dicom)
    plant(ds)
    path = tmp_path / "leaky.dcm"
    ds.save_as(path, enforce_file_format=True)
    leaks = check_dicom(path, originals if with_originals else None)
    assert Leak(str(path), where, kind) in leaks
    assert_no_values(leaks)


def test_check_dicom_passes_pipeline_output(outputs: Outputs, originals: dict[str, str]) -> None:
    assert check_dicom(outputs.dicom, originals) == []
    assert check_dicom(outputs.dicom, None) == []


def test_check_dicom_reports_the_original_everywhere(outputs: Outputs) -> None:
    """The input itself, checked as if it were an output, leaks in every way planted."""
    ct = outputs.inputs / "ct.dcm"
    leaks = check_dicom(ct, collect_originals([outputs.inputs]))
    found = {(leak.where, leak.kind) for leak in leaks}
    assert ("ReferencedImageSequence[0] > ReferencedPatientSequence[0] > PatientName",
            "patient name") in found  # fmt: skip
    assert ("(0011,1001) private", "patient name") in found
    assert ("PatientTelephoneNumbers", "telephone number") in found
    assert ("StudyDescription", "patient name") in found
    assert ("PatientIdentityRemoved", "PatientIdentityRemoved not YES") in found
    assert_no_values(leaks)


def test_unreadable_dicom_is_not_clean(tmp_path: Path) -> None:
    path = tmp_path / "bad.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\2\0\0\0UL\4\0")
    assert check_dicom(path, None)[0] == Leak(str(path), "file", "unreadable DICOM")


def _saved(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def _bit_leaks(leaks: list[Leak]) -> list[tuple[str, str]]:
    return [(leak.where, leak.kind) for leak in leaks if leak.kind == "bits above BitsStored"]


def test_stored_bits_are_read_where_every_decoder_masks_them(tmp_path: Path) -> None:
    path = _saved(overlay_in_bit_12(), tmp_path / "made.dcm")
    ds = dcmread(path)
    assert not (ds.pixel_array >> 12).any()  # pydicom shows nothing
    leaks = check_dicom(path, None)
    assert _bit_leaks(leaks) == [("pixel data", "bits above BitsStored")]
    assert_no_values(leaks, [*PLANTED, OVERLAY_NAME, *OVERLAY_NAME.split()])


def test_the_frames_holding_them_are_counted(tmp_path: Path) -> None:
    frames = np.random.default_rng(2).integers(0, 4096, size=(6, 16, 16), dtype=np.uint16)
    frames[2, 0, 0] |= 0x8000
    frames[4, 5, 5] |= 0x1000
    path = _saved(make_dataset(frames, bits_stored=12), tmp_path / "cine.dcm")
    where = "pixel data, 2 of 6 frames from frame 3"
    assert _bit_leaks(check_dicom(path, None)) == [(where, "bits above BitsStored")]


def test_signed_values_are_judged_by_their_sign_extension(tmp_path: Path) -> None:
    garbage, values = signed_with_garbage()
    assert _bit_leaks(check_dicom(_saved(garbage, tmp_path / "garbage.dcm"), None))
    extended = make_dataset(values, bits_stored=12, signed=True)
    assert _bit_leaks(check_dicom(_saved(extended, tmp_path / "extended.dcm"), None)) == []


def test_compressed_outputs_are_read_as_the_codec_gives_them(tmp_path: Path) -> None:
    ds = overlay_in_bit_12()
    ds.compress(RLELossless)
    leaks = check_dicom(_saved(ds, tmp_path / "rle.dcm"), None)
    assert _bit_leaks(leaks) == [("pixel data", "bits above BitsStored")]


def test_the_attackers_file_verifies_clean_once_de_identified(
    overlay_bit_file: Path, tmp_path: Path
) -> None:
    assert _bit_leaks(check_dicom(overlay_bit_file, None))
    result = pipeline.process(overlay_bit_file, settings(tmp_path / "out"))
    assert result.status == "written", result.reason
    originals = collect_originals([overlay_bit_file.parent])
    report = verify_outputs([tmp_path / "out"], None, POLICY, values=originals)
    assert report.dicom == 1 and report.png == 1
    assert report.clean, report.lines()


@pytest.mark.parametrize(
    "name", ["examples_overlay.dcm", "JPGExtended.dcm", "J2K_pixelrep_mismatch.dcm", "693_J2KI.dcm"]
)
def test_real_files_raise_no_bit_alarm(name: str) -> None:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed with pydicom")
    assert _bit_leaks(check_dicom(Path(path), None)) == []


# --- PNG -------------------------------------------------------------------------------


def png_file(path: Path, image: Image.Image, **text: str) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    image.save(path, format="PNG", pnginfo=info if text else None)
    return path


def drawn(
    text: str, size: tuple[int, int] = (400, 160), at: tuple[int, int] = (40, 60)
) -> Image.Image:
    """White text on a dark, noisy background, in Pillow's own font at 28 px."""
    rng = np.random.default_rng(11)
    image = Image.fromarray(rng.integers(0, 60, (size[1], size[0]), dtype=np.uint8), mode="L")
    ImageDraw.Draw(image).text(at, text, fill=255, font=ImageFont.load_default(size=28))
    return image


def boxes(leaks: list[Leak]) -> list[tuple[int, int, int, int]]:
    found = []
    for leak in leaks:
        if leak.where.startswith("pixels "):
            _, _, xs, _, ys = leak.where.split(" ")
            (x0, x1), (y0, y1) = xs.split("-"), ys.split("-")
            found.append((int(x0), int(y0), int(x1), int(y1)))
    return found


def test_png_text_chunk_is_a_leak(
    outputs: Outputs, originals: dict[str, str], tmp_path: Path
) -> None:
    with Image.open(outputs.png) as image:
        path = png_file(tmp_path / "chunk.png", image.copy(), Patient=P["name"])
    leaks = check_png(path, originals, POLICY)
    assert Leak(str(path), "PNG tEXt chunk", "text metadata") in leaks
    assert Leak(str(path), "PNG tEXt chunk", "patient name") in leaks
    assert_no_values(leaks)


@pytest.mark.parametrize(
    ("chunk", "kind"),
    [(b"tIME", "modification time"), (b"eXIf", "EXIF metadata"), (b"prVt", "unexpected chunk")],
)
def test_png_metadata_chunks_are_leaks(
    outputs: Outputs, tmp_path: Path, chunk: bytes, kind: str
) -> None:
    data = outputs.png.read_bytes()
    body = b"\0" * 7
    extra = len(body).to_bytes(4, "big") + chunk + body + b"\0\0\0\0"
    path = tmp_path / "meta.png"
    path.write_bytes(data[:33] + extra + data[33:])  # after IHDR
    assert Leak(str(path), f"PNG {chunk.decode()} chunk", kind) in check_png(path, None, POLICY)


def test_png_data_after_the_end_is_a_leak(outputs: Outputs, tmp_path: Path) -> None:
    path = tmp_path / "tail.png"
    path.write_bytes(outputs.png.read_bytes() + b"DOE^JOHN")
    leaks = check_png(path, None, POLICY)
    assert Leak(str(path), "after PNG IEND", "data after the image end") in leaks


@pytest.mark.parametrize(
    ("text", "with_originals", "kind"),
    [
        ("DOE JOHN", True, "patient name"),
        ("DOE JOHN", False, "text that is not kept"),
        ("03/14/2023", False, "full date"),
    ],
    ids=["name", "name-no-originals", "date"],
)
def test_text_drawn_into_pixels_is_found(
    originals: dict[str, str], tmp_path: Path, text: str, with_originals: bool, kind: str
) -> None:
    path = png_file(tmp_path / "drawn.png", drawn(text))
    leaks = check_png(path, originals if with_originals else None, POLICY)
    assert kind in {leak.kind for leak in leaks}
    found = boxes([leak for leak in leaks if leak.kind == kind])
    left, top = min(b[0] for b in found), min(b[1] for b in found)
    right, bottom = max(b[2] for b in found), max(b[3] for b in found)
    assert left < 80 and top < 100 and right > 120 and bottom > 60  # around the drawn text
    assert_no_values(leaks)


@pytest.mark.parametrize("marker", ["L", "R", "PA"])
def test_allow_listed_marker_alone_passes(tmp_path: Path, marker: str) -> None:
    path = png_file(tmp_path / "marker.png", drawn(marker, at=(180, 60)))
    assert check_png(path, None, POLICY) == []


def test_pipeline_pngs_pass(outputs: Outputs, originals: dict[str, str]) -> None:
    assert check_png(outputs.png, originals, POLICY) == []
    assert check_png(outputs.burned_png, originals, POLICY) == []


def test_unreadable_png_is_not_clean(tmp_path: Path) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\0\0")
    assert Leak(str(path), "file", "unreadable PNG") in check_png(path, None, POLICY)


# --- JPEG ------------------------------------------------------------------------------


def encoded_jpeg(path: Path, png: Path) -> Path:
    """The pixels of a pipeline PNG as `deid share` sends them as JPEG."""
    with Image.open(png) as image:
        data, ext = encode(np.asarray(image), 2_000_000, photo=True)
    assert ext == "jpg"
    path.write_bytes(data)
    return path


def test_jpeg_metadata_is_a_leak(
    outputs: Outputs, originals: dict[str, str], tmp_path: Path
) -> None:
    exif = Image.Exif()
    exif[0x013B] = P["name"]  # Artist
    path = tmp_path / "exif.jpg"
    with Image.open(outputs.png) as image:
        image.save(path, "JPEG", quality=95, exif=exif.tobytes(), comment=b"seen 2023")
    leaks = check_jpeg(path, originals, POLICY)
    assert leaks[:2] == [
        Leak(str(path), "JPEG APP1 segment at byte 20", "EXIF metadata"),
        Leak(str(path), "JPEG APP1 segment at byte 20", "patient name"),
    ]
    comment_at = 20 + 4 + len(exif.tobytes())
    assert Leak(str(path), f"JPEG COM segment at byte {comment_at}", "comment") in leaks
    assert_no_values(leaks)


def test_a_jpeg_made_by_share_is_clean(
    outputs: Outputs, originals: dict[str, str], tmp_path: Path
) -> None:
    for png in (outputs.png, outputs.burned_png):
        path = encoded_jpeg(tmp_path / f"{png.stem}.jpg", png)
        assert check_jpeg(path, originals, POLICY) == []


def test_text_drawn_into_jpeg_pixels_is_found(originals: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "drawn.jpg"
    drawn("DOE JOHN").save(path, "JPEG", quality=90)
    leaks = check_jpeg(path, originals, POLICY)
    assert "patient name" in {leak.kind for leak in leaks}
    assert all(leak.where.startswith("pixels ") for leak in leaks)
    assert_no_values(leaks)


def test_unreadable_jpeg_is_not_clean(outputs: Outputs, tmp_path: Path) -> None:
    whole = encoded_jpeg(tmp_path / "whole.jpg", outputs.png).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole[: len(whole) // 2])
    assert check_jpeg(path, None, POLICY) == [Leak(str(path), "file", "unreadable JPEG")]
    named = tmp_path / "empty.jpg"
    named.write_bytes(b"")
    assert verify_outputs([named], None, POLICY).leaks == [
        Leak(str(named), "file", "unreadable JPEG")
    ]


def test_verify_outputs_reads_jpeg_and_webp_by_content(outputs: Outputs, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    encoded_jpeg(folder / "IM1234", outputs.png)  # no extension: found by content
    with Image.open(outputs.png) as image:
        image.save(folder / "shot.webp", "WEBP", lossless=True, exif=b"Exif\0\0II*\0")
    report = verify_outputs([folder], None, POLICY)
    assert (report.checked, report.jpeg, report.webp, report.png, report.skipped) == (2, 1, 1, 0, 0)
    assert [(leak.file, leak.kind) for leak in report.leaks] == [
        (str(folder / "shot.webp"), "EXIF metadata")
    ]
    assert "2 files checked (0 DICOM, 0 PNG, 1 JPEG, 1 WebP, 0 notes)" in report.summary()


# --- Notes, names and whole folders ----------------------------------------------------


def test_pipeline_note_passes_and_a_careless_one_does_not(
    outputs: Outputs, originals: dict[str, str], tmp_path: Path
) -> None:
    assert check_text(outputs.note, originals) == []
    note = tmp_path / "note.txt"
    note.write_text(f"Modality: CT\nPatient: Doe, John {P['phone']}\nSeen at {P['institution']}\n")
    leaks = check_text(note, originals)
    assert {(leak.where, leak.kind) for leak in leaks} == {
        ("line 2", "patient name"),
        ("line 2", "telephone number"),
        ("line 2", "phone number"),
        ("line 3", "institution"),
    }
    assert_no_values(leaks)


def test_verify_outputs_counts_and_file_names(outputs: Outputs, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    shutil.copy(outputs.dicom, folder / "clean.dcm")
    shutil.copy(outputs.dicom, folder / "DOE_JOHN.dcm")
    shutil.copy(outputs.note, folder / "note.txt")
    (folder / "readme.md").write_text("hello\n")
    report = verify_outputs([folder], [outputs.inputs], POLICY)
    assert (report.checked, report.dicom, report.png, report.notes, report.skipped) == (
        3,
        2,
        0,
        1,
        1,
    )
    assert report.leaks == [Leak(str(folder / "DOE_JOHN.dcm"), "file name", "patient name")]
    assert report.lines() == [f"{folder / 'DOE_JOHN.dcm'}: file name: patient name"]
    assert not report.clean and "1 leaks in 1 files" in report.summary()


def test_verify_outputs_uses_values_already_collected(
    outputs: Outputs, originals: dict[str, str], tmp_path: Path
) -> None:
    """Given the originals' values, it matches them without reading the originals again."""
    folder = tmp_path / "out"
    folder.mkdir()
    shutil.copy(outputs.dicom, folder / "DOE_JOHN.dcm")
    report = verify_outputs([folder], None, POLICY, values=originals)
    assert report.leaks == [Leak(str(folder / "DOE_JOHN.dcm"), "file name", "patient name")]


# --- The sample patient CD -------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("samples") / "out"
    summary = batch.run_paths(inputs.discover([SAMPLES]), settings(out, tree=True), jobs=2)
    assert summary.counts["written"] == 10 and summary.counts["failed"] == 0, summary.problems
    return out


def test_every_sample_output_is_clean(sample_outputs: Path) -> None:
    report = verify_outputs([sample_outputs], [SAMPLES], POLICY, jobs=2)
    assert report.lines() == []
    assert (report.dicom, report.png, report.notes, report.skipped) == (10, 10, 10, 0)


def test_samples_themselves_leak_without_showing_values() -> None:
    """Checked as if they were outputs, the originals leak, and no finding says what."""
    report = verify_outputs([SAMPLES / "DICOM", SAMPLES / "PATIENT_SMITH"], [SAMPLES], POLICY)
    by_file = report.by_file()
    assert len(by_file) == 11  # 10 DICOM files and notes.txt
    assert all(any(leak.kind == "patient name" for leak in leaks) for leaks in by_file.values())
    assert_no_values(report.leaks, SAMPLE_PHI)
    text = "\n".join(line.split(": ", 1)[1] for line in report.lines())
    for value in SAMPLE_PHI:
        assert value not in text


# --- What an output may keep: the rules the pipeline's own check applies too -----------

SAFE_HARBOR = profiles.load("safe-harbor")


def made(folder: Path, out: Path) -> Path:
    """`out`, holding what the pipeline writes (DICOM, PNG, note) from each DICOM file
    under `folder`."""
    for path in inputs.discover([folder]):
        result = pipeline.process(path, settings(out))
        assert result.status == "written", result.reason
    return out


def dicom_output(folder: Path) -> Path:
    return next(path for path in folder.rglob("*.dcm"))


def profile_with(tmp_path: Path, rules: str) -> profiles.Profile:
    """Safe Harbor, with `rules` added to its `[tags.rules]`."""
    path = tmp_path / "p.toml"
    path.write_text(f'name = "p"\nextends = "safe-harbor"\n[tags.rules]\n{rules}\n')
    return profiles.load(str(path))


def test_scanner_outputs_raise_no_false_alarm(pydicom_samples: Path, tmp_path: Path) -> None:
    """MR_small's Manufacturer `TOSHIBA_MEC` is not its institution `TOSHIBA`; JPEG2000's
    and JPGExtended's kept BodyPartExamined and ImageType hold what private elements of
    the original also held."""
    out = made(pydicom_samples, tmp_path / "out")
    report = verify_outputs([out], [pydicom_samples], POLICY)
    assert report.lines() == []
    assert (report.dicom, report.png, report.notes) == (3, 3, 3)


@pytest.mark.parametrize("source", ["knee_file", "knee_slices"])
def test_a_patient_named_like_the_body_part_is_no_leak(
    request: pytest.FixtureRequest, tmp_path: Path, source: str
) -> None:
    """A knee MR whose patient is named `KNEE` keeps BodyPartExamined `KNEE` (the real
    series and a dataset made like it): that is the body part, not the name."""
    found: Path = request.getfixturevalue(source)
    folder = found.parent if found.is_file() else found
    out = made(folder, tmp_path / "out")
    assert verify_outputs([out], [folder], POLICY, profile=SAFE_HARBOR).lines() == []
    assert verify_outputs([out], [folder], POLICY).lines() == []  # the default profile
    without_rule = verify_outputs([out], None, POLICY, values=dict(collect_originals([folder])))
    assert {(leak.where, leak.kind) for leak in without_rule.leaks} == {
        ("BodyPartExamined", "patient name")
    }


@pytest.mark.parametrize(
    ("manufacturer", "found"),
    [
        ("TOSHIBA_MEC", False),  # a vendor's name is not the institution it is part of
        ("MEC_TOSHIBA", False),
        ("_TOSHIBA", False),
        ("TOSHIBA MEC", True),
        ("Toshiba^Mec", True),
        ("MEC-TOSHIBA", True),
        ("XTOSHIBA", False),
        ("TOSHIBA2", False),
    ],
)
def test_underscore_joins_words_in_dicom_values(
    outputs: Outputs, tmp_path: Path, manufacturer: str, found: bool
) -> None:
    originals = collect_originals([Path(str(get_testdata_file("MR_small.dcm")))])
    assert originals["TOSHIBA"] == "institution"
    ds = dcmread(outputs.dicom)
    ds.Manufacturer = manufacturer
    path = tmp_path / "out.dcm"
    ds.save_as(path, enforce_file_format=True)
    leaks = check_dicom(path, originals)
    assert (Leak(str(path), "Manufacturer", "institution") in leaks) is found
    assert_no_values(leaks, ["TOSHIBA"])


def _knee_private(value: str) -> Callable[[FileDataset], None]:
    def plant(ds: FileDataset) -> None:
        ds.private_block(0x0011, "ACME SCANNER", create=True).add_new(0x03, "LO", value)

    return plant


def _meta_title(ds: FileDataset) -> None:
    ds.file_meta.SourceApplicationEntityTitle = KNEE_PATIENT["name"]


# id -> (profile rules, plant, where, kind): values that leak though the knee patient's
# name is the kept body part.
KNEE_LEAKS: dict[str, tuple[str, Callable[[FileDataset], None], str, str]] = {
    "name-in-kept-study-description": (
        'StudyDescription = "keep"',
        _set("StudyDescription", "MR KNEE LEFT"),
        "StudyDescription",
        "patient name",
    ),
    "body-part-with-more": (
        "",
        _set("BodyPartExamined", "KNEE LEFT"),
        "BodyPartExamined",
        "patient name",
    ),
    "another-kept-attribute": ("", _set("Manufacturer", "KNEE"), "Manufacturer", "patient name"),
    "whole-in-free-text": (
        'ImageComments = "keep"',
        _set("ImageComments", "KNEE"),
        "ImageComments",
        "patient name",
    ),
    "institution-in-private": (
        "",
        _knee_private(KNEE_PATIENT["institution"]),
        "(0011,1003) private",
        "institution",
    ),
    "name-in-private": ("", _knee_private("KNEE"), "(0011,1003) private", "patient name"),
    "id-with-suffix": (
        'ImageComments = "keep"',
        _set("ImageComments", f"{KNEE_PATIENT['patient_id']}^2"),
        "ImageComments",
        "patient ID",
    ),
    "file-meta": ("", _meta_title, "file meta > SourceApplicationEntityTitle", "patient name"),
}


@pytest.mark.parametrize(
    ("rules", "plant", "where", "kind"), KNEE_LEAKS.values(), ids=KNEE_LEAKS.keys()
)
def test_real_leaks_are_found_beside_a_kept_value(
    knee_file: Path,
    tmp_path: Path,
    rules: str,
    plant: Callable[[FileDataset], None],
    where: str,
    kind: str,
) -> None:
    profile = profile_with(tmp_path, rules)
    originals = collect_originals([knee_file.parent], profile=profile)
    assert originals.kept == {(0x00180015, "KNEE")}
    ds = dcmread(dicom_output(made(knee_file.parent, tmp_path / "out")))
    plant(ds)
    path = tmp_path / "planted.dcm"
    ds.save_as(path, enforce_file_format=True)
    leaks = check_dicom(path, originals)
    value_kinds = set(originals.values())
    assert [leak for leak in leaks if leak.kind in value_kinds] == [Leak(str(path), where, kind)]
    assert_no_values(leaks, list(KNEE_PATIENT.values()))


def test_the_profile_given_decides_what_may_stay(knee_file: Path, tmp_path: Path) -> None:
    """A body part the profile given removes is no longer a value that may stay."""
    out = made(knee_file.parent, tmp_path / "out")
    removes = profile_with(tmp_path, 'BodyPartExamined = "remove"')
    report = verify_outputs([out], [knee_file.parent], POLICY, profile=removes)
    assert [(leak.where, leak.kind) for leak in report.leaks] == [
        ("BodyPartExamined", "patient name")
    ]
    assert verify_outputs([out], [knee_file.parent], POLICY, profile=SAFE_HARBOR).clean


# --- The run's manifest and report page ------------------------------------------------

RUN = RunInfo("safe-harbor", "sha256:" + "0" * 64, "k-0123456789", "given")


def manifest_with(out: Path, info: RunInfo = RUN, **fields: Any) -> Path:
    """An output folder whose manifest holds one failed input's record with `fields`."""
    out.mkdir(parents=True, exist_ok=True)
    record = FileRecord(path="in", status="failed", input_id="id-1", digest="sha256:1", **fields)
    with Manifest.open(out, info) as manifest:
        manifest.add(record, out)
    return out / MANIFEST_NAME


# id -> (run info, record fields, where, kind)
MANIFEST_LEAKS: dict[str, tuple[RunInfo, dict[str, Any], str, str]] = {
    "reason": (
        RUN,
        {"reason": f"cannot read {P['name']}"},
        "files record 1 > reason",
        "patient name",
    ),
    "reason-with-input-path": (
        RUN,
        {"reason": "cannot read DOE_JOHN/SERIES1/IM0001"},
        "files record 1 > reason",
        "patient name",
    ),
    "box-reason": (
        RUN,
        {"boxes": [BoxRecord(0, 1, 2, 30, 40, f"read {P['patient_id']}")]},
        "files record 1 > boxes[0] > reason",
        "patient ID",
    ),
    "output-name": (
        RUN,
        {"outputs": (f"{P['accession']}.png",)},
        "files record 1 > outputs[0]",
        "accession number",
    ),
    "run-table": (
        dataclasses.replace(RUN, profile=P["institution"]),
        {},
        "run > profile",
        "institution",
    ),
}


@pytest.mark.parametrize(
    ("info", "fields", "where", "kind"), MANIFEST_LEAKS.values(), ids=MANIFEST_LEAKS.keys()
)
def test_an_original_value_in_the_manifest_is_a_leak(
    outputs: Outputs, tmp_path: Path, info: RunInfo, fields: dict[str, Any], where: str, kind: str
) -> None:
    path = manifest_with(tmp_path / "out", info, **fields)
    before = path.read_bytes()
    report = verify_outputs([tmp_path / "out"], [outputs.inputs], POLICY)
    assert report.leaks == [Leak(str(path), where, kind)]
    assert (report.manifests, report.skipped) == (1, 0)
    assert path.read_bytes() == before and list(path.parent.iterdir()) == [path]
    assert_no_values(report.leaks)


def test_a_record_only_in_the_log_of_a_killed_run_is_read(outputs: Outputs, tmp_path: Path) -> None:
    """A run killed before SQLite moved its log into the file leaves its last records in
    `deid-manifest.sqlite-wal`: they are read too, and nothing is added beside them."""
    out = tmp_path / "out"
    out.mkdir()
    manifest = Manifest.open(out, RUN)
    try:
        manifest.add(FileRecord(path="in", input_id="id-1", reason=f"at {P['institution']}"), out)
        assert (out / f"{MANIFEST_NAME}-wal").stat().st_size > 0
        before = sorted(p.name for p in out.iterdir())
        report = verify_outputs([out / MANIFEST_NAME], [outputs.inputs], POLICY)
        assert report.leaks == [
            Leak(str(out / MANIFEST_NAME), "files record 1 > reason", "institution")
        ]
        assert sorted(p.name for p in out.iterdir()) == before
    finally:
        manifest.close()


def test_a_clean_manifest_passes_and_a_broken_one_does_not(
    outputs: Outputs, tmp_path: Path
) -> None:
    path = manifest_with(tmp_path / "out", reason="not DICOM")
    assert verify_outputs([tmp_path / "out"], [outputs.inputs], POLICY).clean
    path.write_bytes(b"not a database" * 100)
    report = verify_outputs([tmp_path / "out"], [outputs.inputs], POLICY)
    assert report.leaks == [Leak(str(path), "file", "unreadable manifest")]


def test_an_original_value_in_the_report_page_is_a_leak(tmp_path: Path) -> None:
    """JPGExtended's institution has an apostrophe, which the page writes as a character
    reference: markup is blanked out, not decoded, and the name is still read."""
    original = Path(str(get_testdata_file("JPGExtended.dcm")))
    institution = str(dcmread(original).InstitutionName)
    assert "'" in institution
    out = tmp_path / "out"
    out.mkdir()
    record = FileRecord(path="in", status="failed", input_id="id-1", reason=f"from {institution}")
    text = page(RUN, [record], out)
    (out / "report.html").write_text(text, "utf-8")
    found = verify_outputs([out], [original], POLICY)
    assert [leak.kind for leak in found.leaks] == ["institution"]
    number = int(found.leaks[0].where.removeprefix("line "))
    assert "&#x27;" in text.splitlines()[number - 1]
    assert (found.pages, found.skipped) == (1, 0)
    assert_no_values(found.leaks, [institution, institution.split("'")[0]])
    clean = page(RUN, [dataclasses.replace(record, reason="not DICOM")], out)
    (out / "report.html").write_text(clean, "utf-8")
    assert verify_outputs([out], [original], POLICY).clean


def test_a_run_with_its_report_verifies_clean(series_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    runner = CliRunner()
    made_run = runner.invoke(
        app,
        ["anonymize", str(series_folder), "--out", str(out), "--format", "dicom,png", "--key", "k"],
    )
    assert made_run.exit_code == 0, made_run.output
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    before = sorted(out.rglob("*"))
    result = runner.invoke(app, ["verify", str(out), "--originals", str(series_folder)])
    assert result.exit_code == 0, result.output
    assert sorted(out.rglob("*")) == before
    assert "(6 DICOM, 6 PNG, 0 notes, 1 manifest, 1 HTML page), 0 skipped" in result.output
    checked = verify_outputs([out], [series_folder], POLICY)
    assert (checked.manifests, checked.pages, checked.skipped, checked.lines()) == (1, 1, 0, [])
