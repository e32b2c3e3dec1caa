"""Reading by content and classifying objects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import make_dataset
from pydicom.dataset import Dataset, FileDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from deid import classify, pixels, profiles, reader
from deid.errors import NotDicomError, RefusedError, UnreadableError

PDF = "1.2.840.10008.5.1.4.1.1.104.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
KEY_OBJECT = "1.2.840.10008.5.1.4.1.1.88.59"
DICOMDIR = "1.2.840.10008.1.3.10"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (".DS_Store", b"\x00\x00\x00\x01Bud1" + b"\x00" * 200),
        ("AUTORUN.INF", b"[autorun]\r\nopen=viewer.exe\r\n"),
        ("photo.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 300),
        ("empty", b""),
    ],
)
def test_files_that_are_not_dicom_are_recognised_by_content(
    tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert not reader.sniff(path)
    with pytest.raises(NotDicomError) as info:
        reader.read(path)
    assert name in str(info.value)


def test_dicom_without_extension_is_found(
    ct_dataset: FileDataset, write_dicom: Callable[..., Path]
) -> None:
    path = write_dicom(ct_dataset, "IM0001")
    assert reader.sniff(path)
    assert reader.read(path).Modality == "CT"


@pytest.mark.parametrize("keep", [200, 700])
def test_truncated_header_is_unreadable(
    ct_dataset: FileDataset, write_dicom: Callable[..., Path], keep: int
) -> None:
    path = write_dicom(ct_dataset)
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(UnreadableError) as info:
        ds = reader.read(path)
        classify.classify(ds, str(path), profiles.load())
    assert str(path) in str(info.value)


def test_reading_never_modifies_the_input(
    ct_dataset: FileDataset, write_dicom: Callable[..., Path]
) -> None:
    path = write_dicom(ct_dataset)
    before = path.read_bytes()
    reader.read(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("sop_class", "expected"),
    [
        (PDF, "encapsulated document"),
        (BASIC_TEXT_SR, "structured report"),
        (KEY_OBJECT, "structured report"),
    ],
)
def test_text_objects_are_refused(sop_class: str, expected: str) -> None:
    ds = make_dataset(sop_class=sop_class)
    with pytest.raises(RefusedError) as info:
        classify.classify(ds, "doc.dcm", profiles.load())
    assert expected in str(info.value)


def test_dicomdir_is_skipped_not_failed() -> None:
    ds = make_dataset(sop_class=DICOMDIR)
    with pytest.raises(NotDicomError, match="DICOMDIR"):
        classify.classify(ds, "DICOMDIR", profiles.load())


def test_face_images_are_refused() -> None:
    ds = make_dataset(extra={"RecognizableVisualFeatures": "YES"})
    with pytest.raises(RefusedError, match="face"):
        classify.classify(ds, "face.dcm", profiles.load())


def test_image_is_classified_with_burned_in_flag() -> None:
    ds = make_dataset(extra={"BurnedInAnnotation": "YES", "SOPInstanceUID": generate_uid()})
    found = classify.classify(ds, "x.dcm", profiles.load())
    assert (found.kind, found.burned_in_annotation) == ("image", "YES")


def _big(rows: int = 300) -> FileDataset:
    pixels = (np.arange(rows * 300, dtype=np.uint16) % 4001).reshape(rows, 300)
    return make_dataset(pixels)


def test_pixel_data_stays_in_the_file_and_everything_else_is_read(
    write_dicom: Callable[..., Path],
) -> None:
    ds = _big()
    block = ds.private_block(0x0029, "ACME BLOB", create=True)
    block.add_new(0x10, "OB", b"\x01\x02" * 60_000)  # larger than the deferral limit
    path = write_dicom(ds)
    read = reader.read(path)
    pixel = read._dict[reader.PIXEL_DATA]
    assert reader.deferred(pixel)
    assert reader.pixel_length(read) == 300 * 300 * 2
    blob = read._dict[0x00291010]
    assert not reader.deferred(blob) and blob.value == b"\x01\x02" * 60_000
    assert read.PixelData == ds.PixelData  # looked at: read then


def test_large_values_nested_in_parsed_sequences_are_read_at_once(
    write_dicom: Callable[..., Path],
) -> None:
    ds = _big()
    item = Dataset()
    item.add_new(0x00091010, "OB", b"\x07" * 100_000)
    item.ReferencedSOPInstanceUID = generate_uid()
    ds.ReferencedImageSequence = Sequence([item])
    ds["ReferencedImageSequence"].is_undefined_length = True
    path = write_dicom(ds)
    read = reader.read(path)
    nested = read.ReferencedImageSequence[0]._dict[0x00091010]
    assert not reader.deferred(nested) and nested.value == b"\x07" * 100_000


def test_large_encapsulated_pixel_data_is_read_at_once(write_dicom: Callable[..., Path]) -> None:
    ds = _big()
    frame = b"\xff\xd8" + b"\x11" * 99_996 + b"\xff\xd9"
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    path = write_dicom(ds)
    read = reader.read(path)
    assert not reader.deferred(read._dict[reader.PIXEL_DATA])
    assert reader.pixel_length(read) == len(ds.PixelData)


def test_pixel_data_cut_short_is_still_seen_as_truncated(
    write_dicom: Callable[..., Path],
) -> None:
    path = write_dicom(_big())
    path.write_bytes(path.read_bytes()[:-50_000])
    ds = reader.read(path)
    assert reader.pixel_length(ds) == 300 * 300 * 2 - 50_000
    with pytest.raises(UnreadableError, match="truncated"):
        pixels.check_pixel_data(ds, str(path))
