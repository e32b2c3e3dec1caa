"""Memory flat on any input: frames decoded, searched and written one at a time.

The streamed DICOM output must be the very bytes the whole-array path (`decode`,
`redact`, `store`) writes; a long cine must come out with each frame's own boxes only;
and a file of hundreds of megabytes must go through in a small fraction of its size.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    draw_text,
    make_dataset,
    overlay_in_bit_12,
    signed_with_garbage,
    write_long_cine,
)
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset
from pydicom.pixels.utils import pack_bits
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless
from typer.testing import CliRunner

from deid import output, pixels, reader
from deid.boxes import Box
from deid.cli import app
from deid.pixels import bits

Boxes = list[list[Box]]
_US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
_runner = CliRunner()


def _cli(*args: str | Path) -> tuple[int, str]:
    result = _runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def _whole_array_bytes(path: Path, shared: list[Box], per_frame: Boxes) -> bytes:
    """What the whole-array path writes: every frame decoded at once, redacted, stored."""
    ds = reader.read(path)
    frames = pixels.decode(ds, str(path))
    if shared or any(per_frame):
        frames = pixels.redact(ds, frames, shared, per_frame=per_frame)
    pixels.store(ds, frames)
    return output.dicom_bytes(ds)


def _streamed_bytes(
    path: Path, shared: list[Box], per_frame: Boxes, out: Path, *, searched: bool
) -> bytes:
    """What the frame-by-frame path writes, through a real output transaction; when
    `searched`, after a first pass over the frames in order, as the text search makes."""
    ds = reader.read(path)
    frames = pixels.Frames(ds, str(path))
    if searched:
        assert sum(1 for _ in frames) == len(frames)
    rewrite = pixels.plan(ds, frames, shared, per_frame)
    pixels.store_streamed(ds, rewrite)
    serialized = output.serialize(ds)
    assert b"".join(c for c in serialized.chunks if isinstance(c, bytes)) == serialized.header()
    txn = output.Transaction(overwrite=True)
    txn.add(out, serialized.chunks)
    txn.commit()
    return out.read_bytes()


def _grey(frames: int, rows: int, cols: int, dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    high = 4000 if np.dtype(dtype).itemsize > 1 else 250
    return rng.integers(0, high, (frames, rows, cols)).astype(dtype)


def _native_u8() -> FileDataset:
    return make_dataset(_grey(3, 64, 80, "u1"), modality="XA")


def _native_u16_no_window() -> FileDataset:
    return make_dataset(_grey(40, 255, 257, "<u2", seed=1), bits_stored=12, modality="XA")


def _native_u16_window() -> FileDataset:
    extra = {"WindowCenter": 1000, "WindowWidth": 1500}
    return make_dataset(_grey(5, 256, 256, "<u2", seed=2), modality="XA", extra=extra)


def _signed() -> FileDataset:
    ds, _ = signed_with_garbage()
    return ds


def _rgb() -> FileDataset:
    rng = np.random.default_rng(3)
    cine = rng.integers(0, 255, (4, 128, 128, 3), dtype=np.uint8)
    return make_dataset(cine, photometric="RGB", modality="US")


def _rle() -> FileDataset:
    ds = make_dataset(_grey(3, 96, 96, "<u2", seed=4), bits_stored=12, modality="XA")
    ds.compress(RLELossless, generate_instance_uid=False)
    return ds


def _one_bit() -> FileDataset:
    frames = np.random.default_rng(5).integers(0, 2, (3, 5, 7), dtype=np.uint8)
    ds = make_dataset(frames, modality="OT")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    packed = pack_bits(frames.reshape(-1), pad=False)
    ds.PixelData = packed + b"\0" * (len(packed) % 2)
    return ds


def _sample(name: str) -> Callable[[], FileDataset]:
    def load() -> FileDataset:
        found = get_testdata_file(name)
        if found is None:
            pytest.skip(f"pydicom does not ship {name}")
        return dcmread(str(found))

    return load


INPUTS: dict[str, Callable[[], FileDataset]] = {
    "native-8": _native_u8,
    "native-16-percentile": _native_u16_no_window,
    "native-16-window": _native_u16_window,
    "signed-12-in-16": _signed,
    "rgb": _rgb,
    "overlay-bit-12": overlay_in_bit_12,
    "rle": _rle,
    "one-bit": _one_bit,
    "jpeg-baseline": _sample("SC_rgb_jpeg_dcmtk.dcm"),
    "us-jpeg-cine-30-frames": _sample("examples_ybr_color.dcm"),
    "big-endian": _sample("MR_small_bigendian.dcm"),
    "rle-rgb-2-frames": _sample("SC_rgb_rle_2frame.dcm"),
    "ybr-422": _sample("SC_ybr_full_422_uncompressed.dcm"),
    "32-bit": _sample("rtdose.dcm"),
}


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # rtdose.dcm's own UIDs
@pytest.mark.parametrize("name", sorted(INPUTS))
@pytest.mark.parametrize("boxed", ["none", "shared", "per-frame"])
def test_streamed_output_is_the_whole_array_output(
    name: str, boxed: str, write_dicom: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_dicom(INPUTS[name](), f"{name}.dcm")
    count = pixels.frame_count(reader.read(path))
    shared = [Box(1, 2, 4, 5)] if boxed == "shared" else []
    per_frame: Boxes = [[] for _ in range(count)]
    if boxed == "per-frame":
        per_frame[count // 2] = [Box(0, 1, 3, 4), Box(2, 2, 60, 40)]
    expected = _whole_array_bytes(path, shared, per_frame)
    for searched in (False, True):
        out = tmp_path / f"out-{searched}.dcm"
        assert _streamed_bytes(path, shared, per_frame, out, searched=searched) == expected


def test_frames_one_at_a_time_are_the_decoded_frames(write_dicom: Callable[..., Path]) -> None:
    for name, make in INPUTS.items():
        try:
            path = write_dicom(make(), f"{name}.dcm")
        except pytest.skip.Exception:
            continue
        whole = pixels.decode(reader.read(path), str(path))
        frames = pixels.Frames(reader.read(path), str(path))
        assert len(frames) == len(whole), name
        for index in [*range(len(whole)), *reversed(range(len(whole)))]:
            assert frames[index].dtype == whole.dtype, name
            assert np.array_equal(frames[index], whole[index]), name


def test_native_frames_are_read_from_the_file(write_dicom: Callable[..., Path]) -> None:
    path = write_dicom(_native_u16_window(), "cine.dcm")
    ds = reader.read(path)
    frames = pixels.Frames(ds, str(path))
    assert frames[3].shape == (256, 256)
    assert reader.deferred(ds._dict[reader.PIXEL_DATA])


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_bits_above_bits_stored_are_cleared_as_the_file_is_copied(
    syntax: str, write_dicom: Callable[..., Path], tmp_path: Path
) -> None:
    ds = overlay_in_bit_12()
    ds.file_meta.TransferSyntaxUID = syntax
    path = write_dicom(ds, "overlay.dcm")
    held = reader.read(path)
    held.PixelData  # noqa: B018 - read into memory: the path that holds it whole
    assert pixels.clear_unused_bits(held, str(path))
    streamed = reader.read(path)
    assert pixels.clear_unused_bits(streamed, str(path))
    assert isinstance(streamed[reader.PIXEL_DATA].value, bits.Cleaned)
    assert output.dicom_bytes(streamed) == output.dicom_bytes(held)
    written = tmp_path / "clean.dcm"
    txn = output.Transaction()
    txn.add(written, output.serialize(streamed).chunks)
    txn.commit()
    assert written.read_bytes() == output.dicom_bytes(held)
    assert int(dcmread(written).pixel_array.max()) < 4096


def test_a_file_changed_under_a_stream_is_refused(
    write_dicom: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_dicom(_native_u16_window(), "cine.dcm")
    ds = reader.read(path)
    rewrite = pixels.plan(ds, pixels.Frames(ds, str(path)), [Box(0, 0, 9, 9)], [])
    pixels.store_streamed(ds, rewrite)
    chunks = output.serialize(ds).chunks
    os.utime(path, (1, 1))
    txn = output.Transaction()
    with pytest.raises(Exception, match="changed"):
        txn.add(tmp_path / "out.dcm", chunks)
    assert not list(tmp_path.glob("*.dcm"))


CINE_FRAMES = 87
NAME_FRAME = 40
BANNER_FRAMES = (0, 1, 2, 3)


def _cine() -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """An ultrasound-like RGB cine (480x640): speckle in a sector that moves every eight
    frames, a banner with the date on the first frames and a name on one frame only.
    Returns the frames and the text mask of each frame that has text."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[:480, :640]
    angle = np.arctan2(xx - 320.0, yy + 40.0)
    sector = (np.abs(angle) < 0.6) & (np.hypot(yy + 40.0, xx - 320.0) < 470) & (yy > 60)
    speckle = rng.gamma(2.0, 30.0, (480 + CINE_FRAMES * 2, 640)).clip(0, 255).astype(np.uint8)
    frames = np.zeros((CINE_FRAMES, 480, 640, 3), dtype=np.uint8)
    masks: dict[int, np.ndarray] = {}
    for index in range(CINE_FRAMES):
        step = index // 8 * 8  # a new picture every eighth frame, as a slow sweep gives
        grey = np.where(sector, speckle[step : step + 480], 0).astype(np.uint8)
        frame = np.repeat(grey[..., None], 3, axis=2)
        lines: list[tuple[str, tuple[int, int], int, int]] = []
        if index in BANNER_FRAMES:
            lines.append(("03/14/2023 10:15", (420, 12), 18, 255))
        if index == NAME_FRAME:
            lines.append(("DOE JOHN", (12, 12), 22, 255))
        if lines:
            frame, masks[index] = draw_text(frame, lines)
        frames[index] = frame
    return frames, masks


def test_a_long_ultrasound_cine_keeps_each_frame_s_own_boxes(
    write_dicom: Callable[..., Path], tmp_path: Path
) -> None:
    frames, masks = _cine()
    ds = make_dataset(frames, photometric="RGB", sop_class=_US_MULTIFRAME, modality="US")
    path = write_dicom(ds, "cine.dcm")
    out = tmp_path / "out"
    options = ("--format", "dicom,png", "--frames", "all", "-j", "1")
    code, text = _cli("anonymize", path, "--out", out, *options)
    assert code == 0, text
    written = dcmread(next(out.rglob("*.dcm")))
    assert int(written.NumberOfFrames) == CINE_FRAMES
    clean = written.pixel_array
    for index in range(CINE_FRAMES):
        if index in masks:
            assert (clean[index][masks[index]] == 0).all(), index
            changed = (clean[index] != frames[index]).any(axis=2)
            assert not changed[200:, :].any(), index  # only the top lines covered
        else:
            assert clean[index].tobytes() == frames[index].tobytes(), index
    name_box = np.s_[10:40, 10:120]
    assert (clean[NAME_FRAME][name_box] == 0).mean() > 0.5
    assert all(np.array_equal(clean[i][name_box], frames[i][name_box]) for i in (39, 41))
    pngs = sorted(out.rglob("*.png"))
    assert len(pngs) == CINE_FRAMES
    shown = np.asarray(Image.open(pngs[NAME_FRAME]).convert("RGB"))
    assert (shown[masks[NAME_FRAME]] == 0).all()
    assert np.array_equal(shown[200:], frames[NAME_FRAME][200:])


_PEAK = (
    "import resource, subprocess, sys;"
    "code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL);"
    "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def _peak_rss_mib(*args: str | Path) -> tuple[int, float]:
    """Exit code and peak RSS (MiB) of the largest process of a CLI run, in a fresh
    interpreter whose only children are that run's."""
    deid = Path(sys.executable).with_name("deid")
    command = [sys.executable, "-c", _PEAK, str(deid), *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    code, peak = done.stdout.split()
    return int(code), int(peak) / 1024


def test_a_few_hundred_megabytes_go_through_in_a_few_frames_of_memory(tmp_path: Path) -> None:
    if shutil.disk_usage(tmp_path).free < 2 << 30:
        pytest.skip("needs 2 GiB of free disk")
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir()
    large.mkdir()
    names = {3: "DOE JOHN", 400: "MRN4471923"}
    write_long_cine(small / "cine.dcm", 4, text={3: "DOE JOHN"})
    size = write_long_cine(large / "cine.dcm", 600, text=names)
    assert size > 300 * 10**6
    try:
        options = ("--format", "dicom,png", "-j", "1")
        code, floor = _peak_rss_mib("anonymize", small, "--out", tmp_path / "o1", *options)
        assert code == 0
        code, peak = _peak_rss_mib("anonymize", large, "--out", tmp_path / "o2", *options)
        assert code == 0
        (written,) = (tmp_path / "o2").rglob("*.dcm")
        assert written.stat().st_size > size - 10**6
        ds = reader.read(written)
        frames = pixels.Frames(ds, str(written))
        assert (frames[3][16:40, 20:140] == frames[3][16:40, 20:140].min()).mean() > 0.3
        assert np.array_equal(frames[5], frames[1])
        assert peak < floor + 150, f"peak {peak:.0f} MiB beside {floor:.0f} MiB for 4 frames"
    finally:
        shutil.rmtree(large)
        shutil.rmtree(tmp_path / "o2", ignore_errors=True)
