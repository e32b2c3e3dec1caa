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


def test_pixel_data_cut_short_is_refused_without_reading_it(
    write_dicom: Callable[..., Path],
) -> None:
    path = write_dicom(_big())
    path.write_bytes(path.read_bytes()[:-50_000])
    with pytest.raises(UnreadableError, match="truncated: 130000 of 180000 bytes"):
        reader.read(path)
    header = reader.read(path, stop_before_pixels=True)  # what the originals are read for
    assert header.Modality == "CT" and "PixelData" not in header


def test_a_pixel_data_length_past_the_end_of_the_file_is_refused(
    write_dicom: Callable[..., Path],
) -> None:
    path = write_dicom(_big(rows=10))
    data = bytearray(path.read_bytes())
    at = data.rindex(b"\xe0\x7f\x10\x00OW") + 8
    data[at : at + 4] = (0xFFFFFFF0).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableError, match=r"truncated: 6000 of 4294967280 bytes"):
        reader.read(path)


def test_a_little_zero_padding_after_the_last_element_is_let_pass(
    write_dicom: Callable[..., Path],
) -> None:
    path = write_dicom(_big())
    path.write_bytes(path.read_bytes() + b"\0" * 1000)
    ds = reader.read(path)
    assert reader.pixel_length(ds) == 300 * 300 * 2
    pixels.check_pixel_data(ds, str(path))


@pytest.mark.parametrize("with_pixels", [True, False])
def test_zeros_after_the_header_are_refused_without_parsing_them(
    write_dicom: Callable[..., Path], with_pixels: bool
) -> None:
    ds = _big()
    if not with_pixels:
        del ds.PixelData
    path = write_dicom(ds)
    with path.open("ab") as f:
        f.write(b"\0" * (8 << 20))
    with pytest.raises(UnreadableError) as caught:
        reader.read(path)
    assert caught.value.message == (
        "8388608 bytes of zeros or damage follow the last element, as an interrupted "
        "download leaves; the file is damaged"
    )


def test_zeros_where_the_dataset_should_start_are_refused_at_once(
    write_dicom: Callable[..., Path],
) -> None:
    path = write_dicom(_big())
    data = path.read_bytes()
    meta_end = 144 + int.from_bytes(data[140:144], "little")
    path.write_bytes(data[:meta_end] + b"\0" * (4 << 20))
    with pytest.raises(UnreadableError, match="4194304 bytes of zeros or damage follow"):
        reader.read(path)


def test_zeros_inside_a_sequence_are_refused_at_once(write_dicom: Callable[..., Path]) -> None:
    ds = _big()
    item = Dataset()
    item.ReferencedSOPInstanceUID = generate_uid()
    ds.ReferencedImageSequence = Sequence([item])
    ds["ReferencedImageSequence"].is_undefined_length = True
    item.is_undefined_length_sequence_item = True
    path = write_dicom(ds)
    data = path.read_bytes()
    start = data.index(b"\xfe\xff\x00\xe0") + 8  # inside the first item
    path.write_bytes(data[:start] + b"\0" * (4 << 20))
    with pytest.raises(UnreadableError, match="4194304 bytes of zeros or damage follow"):
        reader.read(path)


def test_a_large_file_reads_as_a_small_one(write_dicom: Callable[..., Path]) -> None:
    ds = make_dataset((np.arange(1500 * 1500, dtype=np.uint16) % 4001).reshape(1500, 1500))
    block = ds.private_block(0x0029, "ACME BLOB", create=True)
    block.add_new(0x10, "OB", b"\0" * 100_000)
    path = write_dicom(ds)
    assert path.stat().st_size > 4 << 20
    read = reader.read(path)
    assert reader.deferred(read._dict[reader.PIXEL_DATA])
    assert read[0x00291010].value == b"\0" * 100_000
    assert read.PixelData == ds.PixelData


def test_native_pixel_data_far_longer_than_declared_is_refused(
    write_dicom: Callable[..., Path],
) -> None:
    ds = _big(rows=10)
    ds.PixelData = bytes(3 << 20)
    with pytest.raises(UnreadableError, match="holds 3145728 bytes where the header declares 6000"):
        reader.read(write_dicom(ds))


def test_a_deflated_file_reads_as_pydicom_reads_it() -> None:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    path = Path(str(get_testdata_file("image_dfl.dcm")))
    ours, theirs = reader.read(path), dcmread(path)
    assert ours == theirs and ours.PixelData == theirs.PixelData
    assert ours.original_encoding == theirs.original_encoding
    assert pixels.decode(ours, str(path)).shape == (1, 512, 512)
    assert "PixelData" not in reader.read(path, stop_before_pixels=True)
