"""Writing outputs: PNG without metadata, all-or-nothing commits, no clobbering."""

from __future__ import annotations

import io
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    BURNED_LINES,
    KEEPING_SYNTAXES,
    burned_in_pixels,
    encoded_keeping_every_bit,
    make_dataset,
    overlay_in_bit_12,
    safe_harbor_settings,
    signed_with_garbage,
)
from PIL import Image
from pydicom import dcmread, dcmwrite
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.overlays import get_overlay_array
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from typer.testing import CliRunner

from deid import chunks, output, pipeline, stages
from deid.cli import app
from deid.errors import OutputExistsError, UnreadableError
from deid.record import FileRecord
from deid.verify import check_dicom


def test_png_has_no_text_or_exif_chunks() -> None:
    image = (np.arange(256 * 256) % 251).astype(np.uint8).reshape(256, 256)
    data = output.png_bytes(image)
    chunks = _chunk_types(data)
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    assert not {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"} & set(chunks)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), image)


@pytest.mark.parametrize("level", [0, 1, 6, 9])
@pytest.mark.parametrize("shape", [(1, 1), (7, 1), (1, 9), (300, 451), (64, 33, 3), (1, 5, 3)])
def test_png_decodes_to_the_same_pixels(shape: tuple[int, ...], level: int) -> None:
    rng = np.random.default_rng(sum(shape) + level)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    image[..., : shape[1] // 2] //= 7  # runs and wrap-around differences
    data = output.png_bytes(image, compress_level=level)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.mode == ("L" if len(shape) == 2 else "RGB")
    assert np.array_equal(np.asarray(decoded), image)


def test_png_level_one_compresses_and_zero_stores() -> None:
    y, x = np.mgrid[0:400, 0:400]
    image = ((x + y) % 256).astype(np.uint8)
    stored = output.png_bytes(image, compress_level=0)
    assert len(stored) > image.size
    assert len(output.png_bytes(image, compress_level=1)) < image.size // 10


@pytest.mark.parametrize(
    "image",
    [np.zeros((4, 4), np.uint16), np.zeros((4, 4, 4), np.uint8), np.zeros(4, np.uint8)],
)
def test_png_refuses_what_it_cannot_encode(image: np.ndarray) -> None:
    with pytest.raises(TypeError, match="PNG needs a uint8"):
        output.png_bytes(image)


def test_png_size_cap_keeps_aspect() -> None:
    image = np.zeros((1000, 500), dtype=np.uint8)
    picture = Image.open(io.BytesIO(output.png_bytes(image, max_size=200)))
    assert picture.size == (100, 200)


def _chunk_types(data: bytes) -> list[bytes]:
    types, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        types.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return types


def _deferred_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, object]:
    from conftest import make_dataset

    from deid import reader

    monkeypatch.setattr(reader, "_DEFER", 1024)
    pixels = (np.arange(200 * 300, dtype=np.uint16) * 7).reshape(200, 300)
    source = tmp_path / "in.dcm"
    make_dataset(pixels).save_as(source, enforce_file_format=True)
    ds = reader.read(source)
    assert reader.deferred(ds._dict[reader.PIXEL_DATA])
    return source, ds


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_pixel_data_left_in_the_input_is_copied_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_copy: bool
) -> None:
    from pydicom import dcmread

    if not kernel_copy:

        def unsupported(*args: object) -> int:
            raise OSError(95, "Operation not supported")

        monkeypatch.setattr(os, "copy_file_range", unsupported)
    source, ds = _deferred_input(tmp_path, monkeypatch)
    serialized = output.serialize(ds)  # type: ignore[arg-type]
    assert isinstance(serialized.chunks[serialized.pixel_value or 0], output.FileRange)
    assert b"\x07\x00\x0e\x00" not in serialized.header()
    txn = output.Transaction()
    txn.add(tmp_path / "out" / "x.dcm", serialized.chunks)
    (written,) = txn.commit()
    assert dcmread(written).PixelData == dcmread(source).PixelData
    assert written.read_bytes() == serialized.joined()


def test_input_changed_after_reading_is_refused_and_nothing_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, ds = _deferred_input(tmp_path, monkeypatch)
    before = source.stat()
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 5_000_000_000))
    txn = output.Transaction()
    with pytest.raises(UnreadableError, match="changed while it was read") as info:
        txn.add(tmp_path / "out" / "x.dcm", output.serialize(ds).chunks)  # type: ignore[arg-type]
    assert str(source) in str(info.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_transaction_commits_all(tmp_path: Path) -> None:
    txn = output.Transaction()
    txn.add(tmp_path / "a" / "one.png", b"1")
    txn.add(tmp_path / "a" / "two.dcm", b"2")
    assert not (tmp_path / "a" / "one.png").exists()
    done = txn.commit()
    assert [p.read_bytes() for p in done] == [b"1", b"2"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["one.png", "two.dcm"]


def test_existing_output_is_not_overwritten_and_nothing_partial_left(tmp_path: Path) -> None:
    (tmp_path / "two.dcm").write_bytes(b"keep me")
    txn = output.Transaction()
    txn.add(tmp_path / "one.png", b"1")
    txn.add(tmp_path / "two.dcm", b"2")
    with pytest.raises(OutputExistsError, match=r"other content.*--overwrite"):
        txn.commit()
    assert (tmp_path / "two.dcm").read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.dcm"]


def test_an_existing_identical_output_counts_as_written(tmp_path: Path) -> None:
    """A run killed after writing a file but before recording it: the rerun takes it."""
    (tmp_path / "two.dcm").write_bytes(b"2")
    txn = output.Transaction()
    txn.add(tmp_path / "one.png", b"1")
    txn.add(tmp_path / "two.dcm", b"2")
    assert txn.commit() == [tmp_path / "one.png", tmp_path / "two.dcm"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png", "two.dcm"]


def test_race_on_commit_rolls_back(tmp_path: Path) -> None:
    txn = output.Transaction()
    txn.add(tmp_path / "one.png", b"1")
    txn.add(tmp_path / "two.dcm", b"2")
    (tmp_path / "two.dcm").write_bytes(b"arrived meanwhile")
    with pytest.raises(OutputExistsError):
        txn.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.dcm"]
    assert (tmp_path / "two.dcm").read_bytes() == b"arrived meanwhile"


def test_overwrite_replaces(tmp_path: Path) -> None:
    (tmp_path / "one.png").write_bytes(b"old")
    txn = output.Transaction(overwrite=True)
    txn.add(tmp_path / "one.png", b"new")
    txn.commit()
    assert (tmp_path / "one.png").read_bytes() == b"new"


def test_output_names_carry_only_pseudonyms(tmp_path: Path) -> None:
    names = output.output_names(
        tmp_path,
        tree=True,
        patient="ANONX",
        study="STY",
        series="SEZ",
        instance="IMQ",
        frames=[0, 2],
        frame_count=3,
    )
    assert names.dicom == tmp_path / "ANONX" / "STY" / "SEZ" / "IMQ.dcm"
    assert [p.name for p in names.png] == ["IMQ-f0001.png", "IMQ-f0003.png"]


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_implicit.dcm",
        "JPEG2000.dcm",
        "SC_rgb_rle.dcm",
        "rtplan.dcm",
        "examples_palette.dcm",
        "JPEG-lossy.dcm",
        "MR_small_bigendian.dcm",
    ],
)
@pytest.mark.parametrize("deidentified", [False, True])
@pytest.mark.parametrize("deferring", [False, True])
def test_dicom_bytes_writes_what_dcmwrite_writes(
    name: str, deidentified: bool, deferring: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydicom import dcmread, dcmwrite
    from pydicom.data import get_testdata_file

    from deid import profiles, reader, tags
    from deid.pseudonym import Pseudonymizer

    path = str(get_testdata_file(name))
    if deferring:  # pixel data left in the input file, as `reader.read` leaves it
        monkeypatch.setattr(reader, "_DEFER", 256)
        ds = reader.read(Path(path))
    else:
        ds = dcmread(path)
    if deidentified:
        tags.deidentify(ds, profiles.load(), Pseudonymizer(b"k" * 32))
    tags.rebuild_file_meta(ds, ds.file_meta.TransferSyntaxUID)
    ours = output.dicom_bytes(ds)
    reference = io.BytesIO()
    dcmwrite(reference, ds, enforce_file_format=True)
    assert ours[:128] == b"\0" * 128
    mine, theirs = dcmread(io.BytesIO(ours)), dcmread(io.BytesIO(reference.getvalue()))
    assert [repr(e) for e in mine.iterall()] == [repr(e) for e in theirs.iterall()]
    assert mine.file_meta == theirs.file_meta


# --- bits above Bits Stored in DICOM outputs ----------------------------------------------


def _anonymize(source: Path, out: Path, formats: str = "dicom", *more: str) -> list[Path]:
    args = ["anonymize", str(source), "--out", str(out), "--format", formats, "--jobs", "1"]
    result = CliRunner().invoke(app, [*args, *more])
    assert result.exit_code == 0, result.output
    return sorted(p for p in out.rglob("*") if p.suffix in (".dcm", ".png"))


def _cells(path: Path, dtype: str = "<u2", count: int | None = None) -> np.ndarray:
    ds = dcmread(path)
    assert ds.file_meta.TransferSyntaxUID.is_little_endian
    return np.frombuffer(ds.PixelData, dtype=dtype, count=count or ds.Rows * ds.Columns)


def test_the_overlay_in_bit_12_does_not_reach_the_dicom_output(
    overlay_bit_file: Path, tmp_path: Path
) -> None:
    (written,) = _anonymize(overlay_bit_file, tmp_path / "out", "dicom", "--no-ocr")
    stored = _cells(written)
    original = dcmread(overlay_bit_file)
    before = np.frombuffer(original.PixelData, dtype="<u2")
    assert (before >> 12).any()
    assert not (stored >> 12).any()
    assert np.array_equal(stored, before & 0x0FFF)
    clean = dcmread(written)
    assert not [e.tag for e in clean if e.tag.group >> 8 == 0x60]
    assert (clean.BitsAllocated, clean.BitsStored, clean.HighBit) == (16, 12, 11)


def test_the_png_is_the_one_without_the_overlay(
    overlay_bit_file: Path, overlay_twin_file: Path, tmp_path: Path
) -> None:
    outputs = _anonymize(overlay_bit_file, tmp_path / "drawn", "dicom,png")
    twins = _anonymize(overlay_twin_file, tmp_path / "twin", "dicom,png")
    png = [p.read_bytes() for p in outputs if p.suffix == ".png"]
    assert png and png == [p.read_bytes() for p in twins if p.suffix == ".png"]
    dicoms = [_cells(p) for p in outputs + twins if p.suffix == ".dcm"]
    assert len(dicoms) == 2 and np.array_equal(dicoms[0], dicoms[1])


def _process(source: Path, out: Path, **settings: object) -> FileRecord:
    chosen = safe_harbor_settings(
        out, "bits", **{"formats": frozenset({"dicom"}), "detect_text": False, **settings}
    )
    record = pipeline.process(source, chosen)
    assert record.status == "written", record.reason
    return record


def test_signed_garbage_comes_out_sign_extended(tmp_path: Path) -> None:
    ds, values = signed_with_garbage()
    source = tmp_path / "signed.dcm"
    ds.save_as(source, enforce_file_format=True)
    record = _process(source, tmp_path / "out")
    (written,) = record.outputs
    assert np.array_equal(_cells(Path(written), "<i2").reshape(values.shape), values)


@pytest.mark.parametrize("encoding", ["implicit little", "explicit big"])
def test_every_native_encoding_is_cleared(encoding: str, tmp_path: Path) -> None:
    ds = overlay_in_bit_12()
    values = np.frombuffer(ds.PixelData, dtype="<u2") & 0x0FFF
    source = tmp_path / "in.dcm"
    if encoding == "explicit big":
        ds.PixelData = np.frombuffer(ds.PixelData, dtype="<u2").astype(">u2").tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        dcmwrite(source, ds, little_endian=False, implicit_vr=False, force_encoding=True)
    else:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        dcmwrite(source, ds, implicit_vr=True, little_endian=True, force_encoding=True)
    record = _process(source, tmp_path / "out")
    (written,) = record.outputs
    clean = dcmread(written)
    order = ">u2" if clean.file_meta.TransferSyntaxUID == ExplicitVRBigEndian else "<u2"
    assert np.array_equal(np.frombuffer(clean.PixelData, dtype=order), values)
    assert np.array_equal(clean.pixel_array.reshape(-1), values)


def test_covered_text_and_the_overlay_bit_both_go(tmp_path: Path) -> None:
    image = burned_in_pixels(BURNED_LINES)
    image[300:340, 40:300] |= 0x1000
    ds = make_dataset(image, bits_stored=12, extra={"WindowCenter": 2048, "WindowWidth": 4096})
    source = tmp_path / "burned.dcm"
    ds.save_as(source, enforce_file_format=True)
    record = _process(source, tmp_path / "out", detect_text=True)
    assert record.boxes
    (written,) = record.outputs
    stored = _cells(Path(written)).reshape(image.shape)
    assert not (stored >> 12).any()
    assert np.array_equal(stored[200:, :], image[200:, :] & 0x0FFF)


def test_the_record_says_the_bits_were_cleared(
    overlay_bit_file: Path, overlay_twin_file: Path, tmp_path: Path
) -> None:
    drawn = _process(overlay_bit_file, tmp_path / "drawn")
    twin = _process(overlay_twin_file, tmp_path / "twin")
    cleared = ("PixelData", "clear-unused-bits")
    assert cleared in [(a.path, a.action) for a in drawn.actions]
    assert cleared not in [(a.path, a.action) for a in twin.actions]


def test_a_clean_input_still_streams_its_pixel_data(
    overlay_twin_file: Path, tmp_path: Path
) -> None:
    settings = safe_harbor_settings(
        tmp_path, "bits", formats=frozenset({"dicom"}), detect_text=False
    )
    work = stages.FileWork(overlay_twin_file, settings, FileRecord("x"))
    for stage in stages.STAGES[:-1]:
        stage.run(work)
    assert work.serialized is not None and work.serialized.pixel_value is not None
    assert isinstance(work.serialized.chunks[work.serialized.pixel_value], output.FileRange)


def _real_attacker(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """pydicom's MR with an overlay plane, the plane moved into bit 12 as old files had it."""
    path = get_testdata_file("examples_overlay.dcm", download=False)
    assert isinstance(path, str)
    ds = dcmread(path)
    values = ds.pixel_array.copy()
    plane = get_overlay_array(ds, 0x6000).astype(np.uint16)
    ds.PixelData = (values | (plane << 12)).astype("<u2").tobytes()
    ds[0x60000102].value = 12
    del ds[0x60003000]
    source = tmp_path / "examples_overlay_bit12.dcm"
    ds.save_as(source, enforce_file_format=True)
    return source, values


@pytest.mark.parametrize(
    "name",
    ["examples_overlay.dcm", "JPGExtended.dcm", "J2K_pixelrep_mismatch.dcm", "693_J2KI.dcm",
     "bit 12 overlay"],
)  # fmt: skip
def test_real_files_keep_every_stored_value(name: str, tmp_path: Path) -> None:
    """pydicom's files with Bits Stored below Bits Allocated, and one made an attacker's."""
    if name == "bit 12 overlay":
        source, values = _real_attacker(tmp_path)
    else:
        source = tmp_path / name
        shutil.copy(str(get_testdata_file(name, download=False)), source)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = dcmread(source).pixel_array
    record = _process(source, tmp_path / "out")
    (written,) = record.outputs
    clean, original = dcmread(written), dcmread(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.array_equal(clean.pixel_array, values)
    if clean.file_meta.TransferSyntaxUID.is_compressed:
        assert clean.PixelData == original.PixelData
    else:
        assert np.array_equal(_cells(Path(written)).reshape(values.shape), values)


def _as_coded(path: Path) -> np.ndarray:
    """The first frame as the codec gives it, nothing masked: what the codestream holds."""
    ds = dcmread(path)
    decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values, _ = decoder.as_array(ds, index=0, raw=True, correct_unused_bits=False)
    return values


def _bit_leaks(path: Path) -> list[str]:
    return [leak.where for leak in check_dicom(path, None) if leak.kind == "bits above BitsStored"]


def _saved(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _by_suffix(record: FileRecord, suffix: str) -> list[Path]:
    return [Path(p) for p in record.outputs if p.endswith(suffix)]


@pytest.mark.parametrize("syntax", list(KEEPING_SYNTAXES))
def test_a_name_above_bits_stored_in_a_codestream_goes_out_native_and_clean(
    syntax: str, tmp_path: Path
) -> None:
    """A lossless codec keeps every bit it was given, so the overlay drawn into bit 12
    comes back from the codestream: the output holds the decoded values, masked."""
    twin = overlay_in_bit_12(drawn=False)
    anatomy = np.frombuffer(twin.PixelData, dtype="<u2").reshape(twin.Rows, twin.Columns)
    source = _saved(
        encoded_keeping_every_bit(overlay_in_bit_12(), syntax), tmp_path / "in" / "DOE.dcm"
    )
    twin_source = _saved(encoded_keeping_every_bit(twin, syntax), tmp_path / "twin" / "DOE.dcm")
    coded = _as_coded(source)
    name = (coded >> 12).astype(bool)
    assert name.any() and np.array_equal(coded & 0x0FFF, anatomy)
    assert _bit_leaks(source) == ["pixel data"]  # verify finds them where they were kept

    both = frozenset({"dicom", "png"})
    record = _process(source, tmp_path / "out", formats=both)
    (written,) = _by_suffix(record, ".dcm")
    clean = dcmread(written)
    assert clean.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (clean.BitsAllocated, clean.BitsStored, clean.HighBit) == (16, 12, 11)
    stored = _cells(written).reshape(anatomy.shape)
    assert not (stored >> 12).any()
    assert np.array_equal(stored, anatomy)  # every anatomy value kept
    assert np.array_equal(stored[name], anatomy[name])  # the name's pixels hold the anatomy
    assert ("PixelData", "clear-unused-bits") in [(a.path, a.action) for a in record.actions]
    assert _bit_leaks(written) == []

    twin_record = _process(twin_source, tmp_path / "twin-out", formats=both)
    png = [p.read_bytes() for p in _by_suffix(record, ".png")]
    assert png and png == [p.read_bytes() for p in _by_suffix(twin_record, ".png")]


@pytest.mark.parametrize("syntax", list(KEEPING_SYNTAXES))
def test_a_codestream_without_them_is_kept_byte_for_byte(syntax: str, tmp_path: Path) -> None:
    source = _saved(
        encoded_keeping_every_bit(overlay_in_bit_12(drawn=False), syntax), tmp_path / "in.dcm"
    )
    record = _process(source, tmp_path / "out")
    (written,) = record.outputs
    clean, original = dcmread(written), dcmread(source)
    assert clean.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert clean.PixelData == original.PixelData
    assert ("PixelData", "clear-unused-bits") not in [(a.path, a.action) for a in record.actions]
    assert _bit_leaks(Path(written)) == []


@pytest.mark.parametrize(
    ("name", "bits_stored"),
    [("MR_small_jpeg_ls_lossless.dcm", 11), ("JPEGLSNearLossless_16.dcm", 12),
     ("SC_rgb_jpeg_gdcm.dcm", 6), ("MR_small_jp2klossless.dcm", 11)],
)  # fmt: skip
def test_a_header_declaring_fewer_bits_than_its_codestream_holds(
    name: str, bits_stored: int, tmp_path: Path
) -> None:
    """pydicom's JPEG-LS, JPEG lossless (process 14) and JPEG 2000 files, their Bits
    Stored lowered as an attacker's header would: what the codestream holds above it
    goes, every value within it stays, as every viewer shows it."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed with pydicom")
    ds = dcmread(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = ds.pixel_array
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    source = _saved(ds, tmp_path / name)
    assert _bit_leaks(source) == ["pixel data"]
    shift = full.dtype.itemsize * 8 - bits_stored
    shown = (full << shift) >> shift if full.dtype.kind == "i" else full & ((1 << bits_stored) - 1)
    assert not np.array_equal(shown, full)

    record = _process(source, tmp_path / "out")
    (written,) = record.outputs
    clean = dcmread(written)
    assert clean.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert clean.BitsStored == bits_stored
    values = np.frombuffer(clean.PixelData, dtype=full.dtype.newbyteorder("<"))
    assert np.array_equal(values.reshape(full.shape), shown)
    assert ("PixelData", "clear-unused-bits") in [(a.path, a.action) for a in record.actions]
    assert _bit_leaks(Path(written)) == []


def test_every_frame_of_a_compressed_cine_is_masked(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    anatomy = rng.integers(0, 4096, size=(4, 48, 40), dtype=np.uint16)
    cells = anatomy.copy()
    cells[2, 10:20, 5:30] |= 0x1000  # one frame carries the name
    ds = make_dataset(cells, bits_stored=12)
    source = _saved(encoded_keeping_every_bit(ds, "j2k lossless"), tmp_path / "cine.dcm")
    assert _bit_leaks(source) == ["pixel data, 1 of 4 frames from frame 3"]
    record = _process(source, tmp_path / "out")
    (written,) = record.outputs
    clean = dcmread(written)
    assert clean.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(_cells(Path(written), count=anatomy.size).reshape(anatomy.shape), anatomy)
    assert _bit_leaks(Path(written)) == []


def test_spilled_outputs_are_written_as_kept_and_cost_one_file(tmp_path: Path) -> None:
    spill = chunks.Spill()
    pieces = [os.urandom(n) for n in (0, 1, 3 << 20, 17)]
    kept = [spill.keep(piece) for piece in pieces]
    txn = output.Transaction()
    for index, item in enumerate(kept):
        txn.add(tmp_path / f"{index}.png", [item])
    txn.commit()
    assert [(tmp_path / f"{i}.png").read_bytes() for i in range(4)] == pieces
    assert [item.read() for item in kept] == pieces
