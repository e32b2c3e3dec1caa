"""Tests for deid.pixels on real datasets: built with make_dataset or shipped by pydicom."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import (
    encoded_keeping_every_bit,
    make_dataset,
    overlay_in_bit_12,
    safe_harbor_settings,
    signed_with_garbage,
)
from pydicom import dcmread, dcmwrite
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import apply_windowing, convert_color_space
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, RLELossless

from deid import output, pipeline, reader
from deid import pixels as px
from deid.boxes import Box
from deid.errors import ExitCode, MissingCodecError, UnreadableError, UsageError
from deid.pixels import RenderOptions
from deid.pixels import bits as px_bits
from deid.pixels import frames as px_frames
from deid.pixels import framewise as px_framewise
from deid.pixels import rendering as px_rendering
from deid.reader import PIXEL_DATA, deferred


def shipped(name: str) -> str:
    """Path of a test file pydicom ships locally; skip rather than download."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed with pydicom")
    return str(path)


def read(name: str) -> tuple[Dataset, str]:
    path = shipped(name)
    return dcmread(path), path


def grey(values: list[list[int]] | np.ndarray, dtype: Any = np.uint16, **kw: Any) -> Dataset:
    return make_dataset(np.asarray(values, dtype=dtype), **kw)


DEFAULT = RenderOptions()


def render_values(ds: Dataset, values: list[int], options: RenderOptions = DEFAULT) -> list[int]:
    frame = np.asarray([values], dtype=px.decode(ds, "x").dtype)
    return [int(v) for v in px.render(ds, frame, options)[0]]


# --- frames -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "spec", "expected"),
    [
        (5, "all", [0, 1, 2, 3, 4]),
        (1, "all", [0]),
        (5, "middle", [2]),
        (4, "middle", [2]),
        (1, "middle", [0]),
        (5, "1", [0]),
        (5, "5", [4]),
        (5, " 3 ", [2]),
        (5, "ALL", [0, 1, 2, 3, 4]),
    ],
)
def test_select_frames(count: int, spec: str, expected: list[int]) -> None:
    assert px.select_frames(count, spec) == expected


@pytest.mark.parametrize(
    ("count", "spec"),
    [(5, "0"), (5, "6"), (5, "-1"), (5, "first"), (5, ""), (5, "1.5"), (5, "+2"), (0, "all")],
)
def test_select_frames_rejects(count: int, spec: str) -> None:
    with pytest.raises(UsageError) as caught:
        px.select_frames(count, spec)
    assert f"'{spec}'" in caught.value.message
    assert f"{count} frame" in caught.value.message
    assert caught.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(("value", "expected"), [(None, 1), (3, 3), ("", 1), (0, 1)])
def test_frame_count(value: Any, expected: int) -> None:
    ds = grey(np.zeros((2, 2)))
    if value is not None:
        ds.NumberOfFrames = value
    assert px.frame_count(ds) == expected


@pytest.mark.parametrize(
    ("shape", "photometric", "expected"),
    [
        ((8, 9), "MONOCHROME2", (1, 8, 9)),
        ((3, 8, 9), "MONOCHROME2", (3, 8, 9)),
        ((8, 9, 3), "RGB", (1, 8, 9, 3)),
        ((2, 8, 9, 3), "RGB", (2, 8, 9, 3)),
    ],
)
def test_decode_always_has_a_frame_axis(
    shape: tuple[int, ...], photometric: str, expected: tuple[int, ...]
) -> None:
    pixels = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    frames = px.decode(make_dataset(pixels, photometric=photometric), "x.dcm")
    assert frames.shape == expected
    assert np.array_equal(frames.reshape(shape), pixels)


# --- stored values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("true_value", "garbage", "signed", "dtype"),
    [
        (1234, 0xF000, False, np.uint16),
        (4095, 0x5000, False, np.uint16),
        (5, 0xA000, True, np.int16),
        (-5, 0x5000, True, np.int16),
        (-2048, 0x3000, True, np.int16),
    ],
)
def test_bits_above_bits_stored_are_ignored(
    true_value: int, garbage: int, signed: bool, dtype: Any
) -> None:
    raw = (true_value & 0x0FFF) | garbage
    pixels = np.full((4, 4), raw, dtype=np.uint16).view(dtype)
    ds = make_dataset(pixels, bits_stored=12, signed=signed)
    frames = px.decode(ds, "x.dcm")
    assert frames.dtype == np.dtype(dtype)
    assert (frames == true_value).all()
    again = px.decode(make_dataset(frames[0], bits_stored=12, signed=signed), "x.dcm")
    assert np.array_equal(again, frames)


def test_ybr_full_native_comes_back_rgb() -> None:
    ybr = np.array([[[76, 85, 255], [150, 44, 21], [29, 255, 107], [255, 128, 128], [0, 128, 128]]])
    frames = px.decode(make_dataset(ybr.astype(np.uint8), photometric="YBR_FULL"), "x.dcm")
    expected = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]]
    assert np.abs(frames[0, 0].astype(int) - expected).max() <= 2


def test_ybr_full_422_native_comes_back_rgb() -> None:
    ybr, _ = read("SC_ybr_full_422_uncompressed.dcm")
    rgb, _ = read("SC_rgb_rle.dcm")
    frames = px.decode(ybr, "x.dcm")
    reference = px.decode(rgb, "y.dcm")
    assert frames.shape == (1, 100, 100, 3)
    assert np.abs(frames.astype(int) - reference).max() <= 6


def test_ybr_round_trip_through_pydicom_conversion() -> None:
    rgb = np.random.default_rng(3).integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    frames = px.decode(make_dataset(ybr, photometric="YBR_FULL"), "x.dcm")
    assert np.abs(frames[0].astype(int) - rgb).max() <= 2


def test_planar_configuration_1() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, size=(2, 4, 5, 3), dtype=np.uint8)
    ds = make_dataset(pixels, photometric="RGB")
    ds.PlanarConfiguration = 1
    ds.PixelData = pixels.transpose(0, 3, 1, 2).tobytes()
    assert np.array_equal(px.decode(ds, "x.dcm"), pixels)


# --- compressed files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shape", "reference"),
    [
        ("MR_small_RLE.dcm", (1, 64, 64), "MR_small.dcm"),
        ("MR_small_jpeg_ls_lossless.dcm", (1, 64, 64), "MR_small.dcm"),
        ("MR_small_jp2klossless.dcm", (1, 64, 64), "MR_small.dcm"),
        ("MR_small_bigendian.dcm", (1, 64, 64), "MR_small.dcm"),
        ("SC_rgb_jpeg_gdcm.dcm", (1, 100, 100, 3), "SC_rgb_rle.dcm"),
        ("SC_rgb_rle_2frame.dcm", (2, 100, 100, 3), None),
        ("SC_rgb_rle_16bit_2frame.dcm", (2, 100, 100, 3), None),
        ("SC_rgb_jpeg_dcmtk.dcm", (1, 100, 100, 3), None),
        ("JPEG2000.dcm", (1, 1024, 256), None),
        ("JPGExtended.dcm", (1, 1024, 256), None),
        ("examples_jpeg2k.dcm", (1, 480, 640, 3), None),
    ],
)
def test_compressed_files_decode(name: str, shape: tuple[int, ...], reference: str | None) -> None:
    ds, path = read(name)
    frames = px.decode(ds, path)
    assert frames.shape == shape
    assert frames.dtype.byteorder in ("=", "|")
    if reference:
        ref, ref_path = read(reference)
        assert np.array_equal(frames, px.decode(ref, ref_path))


def test_lossy_jpeg_ybr_is_close_to_the_lossless_original() -> None:
    lossy, path = read("SC_rgb_jpeg_dcmtk.dcm")
    original, original_path = read("SC_rgb_rle.dcm")
    diff = px.decode(lossy, path).astype(int) - px.decode(original, original_path)
    assert np.abs(diff).mean() < 2
    assert px.is_compressed(lossy)
    assert px.is_compressed(original)
    assert not px.is_compressed(read("MR_small.dcm")[0])
    assert not px.is_compressed(read("image_dfl.dcm")[0])


def test_rle_two_frames_differ_as_shipped() -> None:
    ds, path = read("SC_rgb_rle_2frame.dcm")
    frames = px.decode(ds, path)
    assert np.array_equal(frames[1], 255 - frames[0])


@pytest.mark.parametrize(
    ("name", "syntax", "packages"),
    [
        (
            "JPEG2000.dcm",
            "JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91)",
            "pylibjpeg-openjpeg",
        ),
        ("MR_small_jpeg_ls_lossless.dcm", "(1.2.840.10008.1.2.4.80)", "pylibjpeg-libjpeg"),
        ("SC_rgb_jpeg_dcmtk.dcm", "JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50)", "libjpeg"),
        ("MR_small_RLE.dcm", "RLE Lossless (1.2.840.10008.1.2.5)", "pylibjpeg-rle"),
    ],
)
def test_missing_codec_names_syntax_and_package(
    monkeypatch: pytest.MonkeyPatch, name: str, syntax: str, packages: str
) -> None:
    monkeypatch.setattr(px_frames, "_decoder_available", lambda uid: False)
    ds, path = read(name)
    with pytest.raises(MissingCodecError) as caught:
        px.decode(ds, path)
    message = caught.value.message
    assert syntax in message
    assert "pip install pylibjpeg " in message
    assert packages in message
    assert caught.value.path == path
    assert caught.value.exit_code == ExitCode.MISSING_CODEC


@pytest.mark.parametrize(
    ("uid", "named"),
    [
        (
            "1.2.840.10008.1.2.4.102",
            "MPEG-4 AVC/H.264 High Profile / Level 4.1 (1.2.840.10008.1.2.4.102)",
        ),
        ("1.2.840.10008.1.2.4.110", "JPEG XL Lossless (1.2.840.10008.1.2.4.110)"),
        ("1.2.3.4", "an unknown transfer syntax (1.2.3.4)"),
    ],
)
def test_syntax_without_any_decoder(uid: str, named: str) -> None:
    ds = grey(np.zeros((4, 4)))
    ds.file_meta.TransferSyntaxUID = UID(uid)
    assert px.is_compressed(ds)
    with pytest.raises(MissingCodecError) as caught:
        px.decode(ds, "video.dcm")
    assert named in caught.value.message
    assert caught.value.path == "video.dcm"


def test_codec_table_covers_every_pydicom_decoder() -> None:
    text = (Path(px.__file__).parent.parent / "data" / "codecs.toml").read_text(encoding="utf-8")
    table = tomllib.loads(text)["transfer_syntax"]
    decodable = [uid for uid in map(UID, table) if px_frames._decoder_available(uid)]
    assert len(decodable) >= 12
    for uid in decodable:
        assert table[str(uid)]["packages"], uid
        assert table[str(uid)]["name"] == uid.name


def test_truncated_native_pixel_data() -> None:
    ds = grey(np.zeros((64, 64)))
    ds.PixelData = ds.PixelData[:-100]
    with pytest.raises(UnreadableError) as caught:
        px.decode(ds, "scans/ct.dcm")
    assert caught.value.message == "pixel data is truncated: 8092 of 8192 bytes"
    assert str(caught.value).startswith("scans/ct.dcm: ")


def test_truncated_shipped_file() -> None:
    ds, path = read("MR_truncated.dcm")
    with pytest.raises(UnreadableError, match="truncated: 8130 of 8192 bytes") as caught:
        px.decode(ds, path)
    assert caught.value.path == path


def test_undecodable_compressed_data_is_one_line() -> None:
    ds, path = read("JPEG-lossy.dcm")
    with pytest.raises(UnreadableError) as caught:
        px.decode(ds, path)
    assert not isinstance(caught.value, MissingCodecError)
    assert caught.value.message.startswith("pixel data cannot be decoded: ")
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("keyword", ["Rows", "Columns", "BitsAllocated"])
def test_missing_geometry(keyword: str) -> None:
    ds = grey(np.zeros((4, 4)))
    delattr(ds, keyword)
    with pytest.raises(UnreadableError, match=f"attribute {keyword} is missing"):
        px.decode(ds, "x.dcm")


def test_check_pixel_data_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    ds, path = read("JPEG2000.dcm")
    px.check_pixel_data(ds, path)
    truncated = grey(np.zeros((8, 8)))
    truncated.PixelData = truncated.PixelData[:10]
    with pytest.raises(UnreadableError, match="truncated: 10 of 128 bytes"):
        px.check_pixel_data(truncated, "t.dcm")
    monkeypatch.setattr(px_frames, "_decoder_available", lambda uid: False)
    with pytest.raises(MissingCodecError, match="pip install pylibjpeg pylibjpeg-openjpeg"):
        px.check_pixel_data(ds, path)


def test_no_pixel_data() -> None:
    ds = grey(np.zeros((4, 4)))
    del ds.PixelData
    with pytest.raises(UnreadableError, match="no pixel data"):
        px.decode(ds, "x.dcm")


# --- rendering ----------------------------------------------------------------------------


def ct(values: list[int], **extra: Any) -> Dataset:
    """Unsigned 12-bit CT with rescale -1024 and the given extra attributes."""
    ds = grey([values], bits_stored=12, extra={"RescaleSlope": 1, "RescaleIntercept": -1024})
    for key, value in extra.items():
        setattr(ds, key, value)
    return ds


@pytest.mark.parametrize(
    ("hu", "shade"),
    [(-1024, 0), (-161, 0), (-160, 0), (40, 128), (239, 255), (240, 255), (1000, 255), (-60, 64)],
)
def test_window_arithmetic(hu: int, shade: int) -> None:
    ds = ct([hu + 1024], WindowCenter=40, WindowWidth=400)
    assert render_values(ds, [hu + 1024]) == [shade]


def test_first_of_several_windows() -> None:
    values = [0, 864, 1000, 1064, 1200, 1264, 3000]
    several = ct(values, WindowCenter=[40, 400], WindowWidth=[400, 2000])
    single = ct(values, WindowCenter=40, WindowWidth=400)
    assert render_values(several, values) == render_values(single, values)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_window_functions_match_pydicom(function: str) -> None:
    values = np.arange(256, dtype=np.uint8)
    extra = {"WindowCenter": 100, "WindowWidth": 60, "VOILUTFunction": function}
    ds = make_dataset(values.reshape(16, 16), extra=extra)
    ours = px.render(ds, values.reshape(16, 16))
    theirs = np.rint(apply_windowing(values.reshape(16, 16), ds))
    assert np.array_equal(ours, theirs)


def test_rescale_with_negative_slope() -> None:
    extra = {"RescaleSlope": -1, "RescaleIntercept": 1000, "WindowCenter": 500, "WindowWidth": 101}
    ds = grey([[0, 400, 500, 600, 1000]], extra=extra)
    assert render_values(ds, [400, 450, 500, 550, 551, 600]) == [255, 255, 129, 1, 0, 0]
    assert px.darkest_value(ds, px.decode(ds, "x")) == 1000


def test_signed_data_renders_through_window() -> None:
    ds = grey(
        [[-1000, 0, 1000]],
        dtype=np.int16,
        signed=True,
        extra={"WindowCenter": 0, "WindowWidth": 2001},
    )
    assert render_values(ds, [-1000, 0, 1000]) == [0, 128, 255]


def test_percentile_window_when_no_window() -> None:
    pixels = np.arange(1000, dtype=np.uint16).reshape(10, 100)
    pixels[0, 0] = 60000
    ds = make_dataset(pixels)
    image = px.render(ds, pixels)
    assert image.dtype == np.uint8 and image.shape == (10, 100)
    assert image[0, 1] == 0
    assert image[0, 0] == 255
    assert abs(int(image.reshape(-1)[500]) - 128) <= 1
    assert image.reshape(-1)[996] == 255
    low, high = np.percentile(np.arange(1000), [0.5, 99.5])
    plain = px.render(ds, np.arange(1000, dtype=np.uint16).reshape(10, 100)).reshape(-1)
    assert plain[500] == round((500 - low) / (high - low) * 255) == 128
    assert plain[4] == 0 and plain[995] == 255


def test_voi_off_falls_back_to_percentiles() -> None:
    pixels = np.arange(1000, dtype=np.uint16).reshape(10, 100)
    windowed = make_dataset(pixels, extra={"WindowCenter": 10, "WindowWidth": 10})
    plain = make_dataset(pixels)
    off = RenderOptions(voi="off")
    assert np.array_equal(px.render(windowed, pixels, off), px.render(plain, pixels))
    assert not np.array_equal(px.render(windowed, pixels), px.render(plain, pixels))


def test_modality_off_windows_stored_values() -> None:
    ds = ct([1064], WindowCenter=40, WindowWidth=400)
    assert render_values(ds, [1064], RenderOptions(modality_lut="off")) == [255]


@pytest.mark.parametrize("field", ["modality_lut", "voi", "palette"])
def test_render_options_reject_unknown_switches(field: str) -> None:
    with pytest.raises(UsageError, match=f"render option {field} must be"):
        RenderOptions(**{field: "yes"})


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (RenderOptions(voi="on"), "voi='on'"),
        (RenderOptions(modality_lut="on"), "modality_lut='on'"),
    ],
)
def test_switch_on_requires_the_attributes(options: RenderOptions, words: str) -> None:
    ds = grey([[1, 2, 3]])
    with pytest.raises(UnreadableError, match=words):
        px.render(ds, np.asarray([[1, 2, 3]], dtype=np.uint16), options)


def test_voi_lut_sequence_is_applied() -> None:
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.LUTData = list(range(255, -1, -1))
    ds = grey([[0, 100, 255, 300]], extra={"WindowCenter": 128, "WindowWidth": 256})
    ds.VOILUTSequence = Sequence([item])
    assert render_values(ds, [0, 100, 255, 300]) == [255, 155, 0, 0]


def test_modality_lut_sequence_is_applied() -> None:
    item = Dataset()
    item.LUTDescriptor = [4, 10, 12]
    item.LUTData = [0, 1000, 2000, 4095]
    item.ModalityLUTType = "US"
    ds = grey([[0, 10, 11, 12, 13, 99]], extra={"WindowCenter": 2048, "WindowWidth": 4096})
    ds.ModalityLUTSequence = Sequence([item])
    assert render_values(ds, [0, 10, 11, 12, 13, 99]) == [0, 0, 62, 125, 255, 255]


def test_shared_functional_groups_carry_rescale_and_window() -> None:
    values = [0, 864, 1064, 1264]
    flat = ct(values, WindowCenter=40, WindowWidth=400)
    enhanced = grey([values], bits_stored=12)
    transform, voi, shared = Dataset(), Dataset(), Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = 1, -1024
    voi.WindowCenter, voi.WindowWidth = 40, 400
    shared.PixelValueTransformationSequence = Sequence([transform])
    shared.FrameVOILUTSequence = Sequence([voi])
    enhanced.SharedFunctionalGroupsSequence = Sequence([shared])
    assert render_values(enhanced, values) == render_values(flat, values) == [0, 0, 128, 255]


def test_monochrome1_inverted_after_voi() -> None:
    pixels = np.arange(1000, dtype=np.uint16).reshape(10, 100)
    extra = {"WindowCenter": 500, "WindowWidth": 400}
    mono1 = make_dataset(pixels, photometric="MONOCHROME1", extra=extra)
    mono2 = make_dataset(pixels, extra=extra)
    image = px.render(mono1, pixels)
    assert image[0, 0] == 255
    assert image[-1, -1] == 0
    assert np.array_equal(image, 255 - px.render(mono2, pixels))
    plain = px.render(mono1, pixels, RenderOptions(invert_monochrome1=False))
    assert np.array_equal(plain, px.render(mono2, pixels))


@pytest.mark.parametrize(
    ("dtype", "bits", "values", "expected"),
    [
        (np.uint8, 8, [0, 7, 128, 255], [0, 7, 128, 255]),
        (np.uint16, 16, [0, 257, 32896, 65535], [0, 1, 128, 255]),
        (np.uint16, 12, [0, 2048, 4095, 4095], [0, 128, 255, 255]),
    ],
)
def test_rgb_rendering(dtype: Any, bits: int, values: list[int], expected: list[int]) -> None:
    pixels = np.repeat(np.asarray(values, dtype=dtype)[None, :, None], 3, axis=2)
    ds = make_dataset(pixels, photometric="RGB", bits_stored=bits)
    image = px.render(ds, px.decode(ds, "x")[0])
    assert image.dtype == np.uint8 and image.shape == (1, 4, 3)
    assert image[0, :, 1].tolist() == expected


def test_rgb_8bit_passes_through() -> None:
    ds, path = read("SC_rgb_rle.dcm")
    frame = px.decode(ds, path)[0]
    assert np.array_equal(px.render(ds, frame), frame)


def palette_dataset() -> Dataset:
    indices = np.arange(256, dtype=np.uint8).reshape(16, 16)
    ds = make_dataset(indices, photometric="PALETTE COLOR")
    ramp = np.arange(256, dtype=np.uint16) * 257
    for colour, table in (("Red", ramp), ("Green", ramp[::-1]), ("Blue", ramp * 0)):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", table.astype("<u2").tobytes())
    return ds


def test_palette_colour() -> None:
    ds = palette_dataset()
    frames = px.decode(ds, "x")
    assert frames.shape == (1, 16, 16)
    image = px.render(ds, frames[0])
    assert image.shape == (16, 16, 3)
    assert image[0, 10].tolist() == [10, 245, 0]
    assert px.darkest_value(ds, frames) == 255
    assert px.render(ds, frames[0], RenderOptions(palette="off")).shape == (16, 16)


def test_palette_switched_on_without_luts() -> None:
    ds = make_dataset(np.zeros((4, 4), dtype=np.uint8), photometric="PALETTE COLOR")
    with pytest.raises(UnreadableError, match="palette='on'"):
        px.render(ds, np.zeros((4, 4), dtype=np.uint8), RenderOptions(palette="on"))
    assert px.render(ds, np.zeros((4, 4), dtype=np.uint8)).shape == (4, 4)


def test_shipped_palette_file() -> None:
    ds, path = read("examples_palette.dcm")
    frames = px.decode(ds, path)
    image = px.render(ds, frames[0])
    assert image.shape == (350, 800, 3)
    fill = px.darkest_value(ds, frames)
    assert isinstance(fill, int)
    assert px.render(ds, np.full((1, 1), fill, dtype=frames.dtype))[0, 0].tolist() == [0, 0, 0]


# --- redaction ----------------------------------------------------------------------------


BOXES = [Box(2, 3, 6, 8), Box(10, 12, 30, 30)]


def box_mask(shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[3:8, 2:6] = True
    mask[12:, 10:] = True
    return mask


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_redact_every_frame_and_nothing_else(photometric: str) -> None:
    pixels = np.random.default_rng(5).integers(100, 4000, size=(3, 16, 16), dtype=np.uint16)
    extra = {"WindowCenter": 2000, "WindowWidth": 1000}
    ds = make_dataset(pixels, photometric=photometric, bits_stored=12, extra=extra)
    frames = px.decode(ds, "x")
    redacted = px.redact(ds, frames, BOXES)
    mask = box_mask((16, 16))
    fill = px.darkest_value(ds, frames)
    for index in range(3):
        assert (redacted[index][mask] == fill).all()
        assert np.array_equal(redacted[index][~mask], pixels[index][~mask])
        assert (px.render(ds, redacted[index])[mask] == 0).all()
    assert np.array_equal(frames, pixels)


def test_monochrome1_fill_is_the_bright_end() -> None:
    pixels = np.random.default_rng(2).integers(100, 4000, size=(16, 16), dtype=np.uint16)
    ds = make_dataset(pixels, photometric="MONOCHROME1", bits_stored=12)
    frames = px.decode(ds, "x")
    fill = px.darkest_value(ds, frames)
    assert fill == pixels.max()
    redacted = px.redact(ds, frames, [Box(0, 0, 4, 4)])
    assert (px.render(ds, redacted[0])[:4, :4] == 0).all()


def test_darkest_prefers_values_near_the_image() -> None:
    ds, path = read("MR_small.dcm")
    frames = px.decode(ds, path)
    fill = px.darkest_value(ds, frames)
    assert isinstance(fill, int)
    assert frames.min() > fill > -1000
    assert px.render(ds, np.full((1, 1), fill, dtype=frames.dtype))[0, 0] == 0
    ct_ds, ct_path = read("CT_small.dcm")
    assert px.darkest_value(ct_ds, px.decode(ct_ds, ct_path)) == 128


def test_redact_rgb() -> None:
    pixels = np.full((2, 16, 16, 3), 200, dtype=np.uint8)
    ds = make_dataset(pixels, photometric="RGB")
    redacted = px.redact(ds, px.decode(ds, "x"), BOXES)
    mask = box_mask((16, 16))
    assert (redacted[:, mask] == 0).all()
    assert (redacted[:, ~mask] == 200).all()


def test_redact_without_boxes_is_a_copy() -> None:
    frames = np.ones((1, 4, 4), dtype=np.uint16)
    out = px.redact(grey(frames[0]), frames, [])
    assert np.array_equal(out, frames) and out is not frames


@pytest.mark.parametrize("shape", [(16, 16), (16, 16, 3)])
def test_black_out(shape: tuple[int, ...]) -> None:
    image = np.full(shape, 77, dtype=np.uint8)
    out = px.black_out(image, [*BOXES, Box(-5, -5, 1, 1), Box(40, 40, 50, 50)])
    mask = box_mask((16, 16))
    mask[0, 0] = True
    assert (out[mask] == 0).all()
    assert (out[~mask] == 77).all()
    assert (image == 77).all()


# --- storing ------------------------------------------------------------------------------


def round_trip(ds: Dataset, tmp_path: Path) -> Dataset:
    path = tmp_path / "out.dcm"
    ds.save_as(path, enforce_file_format=True)
    return dcmread(path)


def test_store_multiframe_round_trip(tmp_path: Path) -> None:
    pixels = np.random.default_rng(9).integers(0, 4096, size=(3, 16, 16), dtype=np.uint16)
    ds = make_dataset(pixels, bits_stored=12)
    redacted = px.redact(ds, px.decode(ds, "x"), BOXES)
    px.store(ds, redacted)
    back = round_trip(ds, tmp_path)
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert back.NumberOfFrames == 3
    assert (back.BitsAllocated, back.BitsStored, back.PixelRepresentation) == (16, 12, 0)
    assert np.array_equal(back.pixel_array, redacted)


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize(
    ("name", "photometric"),
    [
        ("SC_rgb_jpeg_dcmtk.dcm", "RGB"),
        ("SC_ybr_full_422_uncompressed.dcm", "RGB"),
        ("MR_small_RLE.dcm", "MONOCHROME2"),
        ("MR_small_bigendian.dcm", "MONOCHROME2"),
        ("MR_small_implicit.dcm", "MONOCHROME2"),
        ("JPEG2000.dcm", "MONOCHROME2"),
        ("examples_palette.dcm", "PALETTE COLOR"),
        ("rtdose.dcm", "MONOCHROME2"),
        ("SC_rgb_rle_16bit_2frame.dcm", "RGB"),
        ("liver_1frame.dcm", "MONOCHROME2"),
    ],
)
def test_store_shipped_files(name: str, photometric: str, tmp_path: Path) -> None:
    ds, path = read(name)
    lossy = ds.get("LossyImageCompression")
    sop_uid, bits_allocated = ds.SOPInstanceUID, ds.BitsAllocated
    frames = px.decode(ds, path)
    redacted = px.redact(ds, frames, [Box(1, 1, 5, 5)])
    px.store(ds, redacted)
    back = round_trip(ds, tmp_path)
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert not px.is_compressed(back)
    assert back.PhotometricInterpretation == photometric
    assert back.get("LossyImageCompression") == lossy
    assert back.SOPInstanceUID == sop_uid
    assert back.BitsAllocated == bits_allocated
    if redacted.ndim == 4:
        assert back.PlanarConfiguration == 0
    again = px.decode(back, "back.dcm")
    assert again.dtype == redacted.dtype
    assert np.array_equal(again, redacted)


def test_store_keeps_number_of_frames_of_a_single_frame_multiframe(tmp_path: Path) -> None:
    ds, path = read("JPEG2000.dcm")
    px.store(ds, px.decode(ds, path))
    assert round_trip(ds, tmp_path).NumberOfFrames == 1
    single = grey(np.zeros((4, 4)))
    px.store(single, px.decode(single, "x"))
    assert "NumberOfFrames" not in single


def test_big_endian_store_keeps_other_values(tmp_path: Path) -> None:
    ds, path = read("MR_small_bigendian.dcm")
    reference, _ = read("MR_small.dcm")
    px.store(ds, px.decode(ds, path))
    back = round_trip(ds, tmp_path)
    for keyword in ("WindowCenter", "WindowWidth", "Rows", "PatientName", "SliceThickness"):
        assert back.get(keyword) == reference.get(keyword), keyword


def _lut_item(descriptor: list[int], data: list[int]) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = descriptor
    item.LUTData = data
    item.ModalityLUTType = "US"
    return item


@pytest.mark.parametrize(
    ("dtype", "low", "high", "photometric", "extra", "sequence"),
    [
        (np.uint16, 0, 4095, "MONOCHROME2", {"WindowCenter": 1000, "WindowWidth": 900}, None),
        (np.uint16, 300, 3000, "MONOCHROME1", {"WindowCenter": 1500, "WindowWidth": 1000}, None),
        (np.uint16, 0, 4095, "MONOCHROME2", {}, None),  # percentile window over all pixels
        (
            np.int16,
            -2000,
            3000,
            "MONOCHROME2",
            {"RescaleSlope": -1.5, "RescaleIntercept": 24, "WindowCenter": -40,
             "WindowWidth": 400, "VOILUTFunction": "SIGMOID"},
            None,
        ),
        (np.int16, -1024, 3071, "MONOCHROME2", {"RescaleIntercept": -1024}, None),
        (np.uint8, 0, 255, "MONOCHROME2", {"WindowCenter": 100, "WindowWidth": 80}, None),
        (
            np.uint16,
            0,
            4095,
            "MONOCHROME2",
            {"WindowCenter": 2048, "WindowWidth": 4096},
            ("ModalityLUTSequence", _lut_item([2048, 0, 12], list(range(0, 4096, 2)))),
        ),
    ],
)  # fmt: skip
def test_large_frames_render_as_pixel_by_pixel(
    monkeypatch: pytest.MonkeyPatch,
    dtype: Any,
    low: int,
    high: int,
    photometric: str,
    extra: dict[str, Any],
    sequence: tuple[str, Dataset] | None,
) -> None:
    """Big integer frames go through a table of stored values; the pixels must not change."""
    rng = np.random.default_rng(high - low)
    frame = rng.integers(low, high + 1, size=(300, 400)).astype(dtype)
    frame[0, :3] = [low, high, (low + high) // 2]
    ds = make_dataset(frame, photometric=photometric, signed=dtype == np.int16, extra=extra)
    if sequence is not None:
        setattr(ds, sequence[0], Sequence([sequence[1]]))
    table = px.render(ds, frame)
    monkeypatch.setattr(px_rendering, "_TABLE_MIN_PIXELS", frame.size + 1)
    direct = px.render(ds, frame)
    assert table.dtype == np.uint8 and table.shape == frame.shape
    assert np.array_equal(table, direct)
    assert len(np.unique(table)) > 2


# --- bits above Bits Stored ---------------------------------------------------------------


def cells(ds: Dataset, dtype: Any = "<u2") -> np.ndarray:
    """The stored cells of native pixel data, as written: nothing masked."""
    value = ds.PixelData
    return np.frombuffer(value, dtype=dtype, count=len(value) // np.dtype(dtype).itemsize)


def test_overlay_in_bit_12_is_cleared_and_nothing_else() -> None:
    ds = overlay_in_bit_12()
    before = cells(ds).copy()
    assert (before >> 12).any()
    assert px.unused_bit_frames(ds, "x.dcm") == [0]
    assert px.clear_unused_bits(ds, "x.dcm")
    after = cells(ds)
    assert not (after >> 12).any()
    assert np.array_equal(after, before & 0x0FFF)
    assert (ds.BitsStored, ds.HighBit, ds["PixelData"].VR) == (12, 11, "OW")
    assert px.unused_bit_frames(ds, "x.dcm") == []
    assert not px.clear_unused_bits(ds, "x.dcm")


def test_signed_garbage_becomes_the_sign_extension() -> None:
    ds, values = signed_with_garbage()
    assert px.clear_unused_bits(ds, "x.dcm")
    assert np.array_equal(cells(ds, "<i2").reshape(values.shape), values)
    assert np.array_equal(px.decode(ds, "x.dcm")[0], values)


@pytest.mark.parametrize(
    ("dtype", "bits_stored", "signed"),
    [(np.uint8, 6, False), (np.int8, 5, True), (np.uint32, 20, False), (np.int32, 24, True)],
)
def test_every_cell_width(dtype: Any, bits_stored: int, signed: bool) -> None:
    low, high = px_frames.representable_range(bits_stored, signed)
    rng = np.random.default_rng(bits_stored)
    values = rng.integers(low, high + 1, size=(3, 6, 8)).astype(dtype)
    width = np.dtype(dtype).itemsize * 8
    unsigned = np.dtype(f"u{np.dtype(dtype).itemsize}")
    noise = rng.integers(0, 1 << (width - bits_stored), size=values.shape, dtype=np.uint64)
    mask = (1 << bits_stored) - 1
    stored = (values.view(unsigned) & unsigned.type(mask)) | (noise << bits_stored).astype(unsigned)
    stored[1] = values[1].view(unsigned)  # frame 2 already as it should be
    ds = make_dataset(stored.view(dtype), bits_stored=bits_stored, signed=signed)
    assert px.unused_bit_frames(ds, "x.dcm") == [0, 2]
    assert px.clear_unused_bits(ds, "x.dcm")
    assert np.array_equal(
        cells(ds, np.dtype(dtype).newbyteorder("<")).reshape(values.shape), values
    )


def test_frames_are_read_a_piece_at_a_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pixels = np.random.default_rng(4).integers(0, 4096, size=(5, 128, 128), dtype=np.uint16)
    pixels[3, 7, 9] |= 0x2000
    path = tmp_path / "multi.dcm"
    make_dataset(pixels, bits_stored=12).save_as(path, enforce_file_format=True)
    monkeypatch.setattr(px_bits, "_PIECE", 2 * 128 * 128 * 2)
    reads: list[int] = []
    original = os.pread

    def counted(fd: int, length: int, offset: int) -> bytes:
        reads.append(length)
        return original(fd, length, offset)

    monkeypatch.setattr(os, "pread", counted)
    ds = reader.read(path)
    assert px.unused_bit_frames(ds, str(path)) == [3]
    assert reads == [2 * 128 * 128 * 2, 2 * 128 * 128 * 2, 128 * 128 * 2]
    assert deferred(ds._dict[PIXEL_DATA])  # read beside pydicom, not into the dataset


def test_a_clean_file_stays_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "clean.dcm"
    overlay_in_bit_12(drawn=False).save_as(path, enforce_file_format=True)
    ds = reader.read(path)
    assert not px.clear_unused_bits(ds, str(path))
    assert deferred(ds._dict[PIXEL_DATA])


def test_a_dirty_file_changed_since_its_header_was_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "overlay.dcm"
    overlay_in_bit_12().save_as(path, enforce_file_format=True)
    ds = reader.read(path)
    os.utime(path, (1, 1))
    with pytest.raises(UnreadableError, match="changed while it was read"):
        px.clear_unused_bits(ds, str(path))


def test_big_endian_cells_are_cleared_in_their_byte_order(tmp_path: Path) -> None:
    ds = overlay_in_bit_12()
    values = cells(ds) & 0x0FFF
    ds.PixelData = cells(ds).astype(">u2").tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    path = tmp_path / "big.dcm"
    dcmwrite(path, ds, little_endian=False, implicit_vr=False, force_encoding=True)
    back = reader.read(path)
    assert px.clear_unused_bits(back, str(path))
    assert np.array_equal(cells(back, ">u2"), values)
    assert np.array_equal(px.decode(back, "x.dcm").reshape(-1), values)


def test_compressed_data_is_left_alone_but_found() -> None:
    ds = overlay_in_bit_12()
    ds.compress(RLELossless)
    before = ds.PixelData
    assert not px.clear_unused_bits(ds, "x.dcm")
    assert ds.PixelData == before
    assert px.unused_bit_frames(ds, "x.dcm") == [0]
    assert not (px.decode(ds, "x.dcm") >> 12).any()


def test_rewritten_pixels_are_masked_compressed_or_not() -> None:
    for compressed in (False, True):
        ds = overlay_in_bit_12()
        if compressed:
            ds.compress(RLELossless)
        frames = px.decode(ds, "x.dcm")
        px.store(ds, px.redact(ds, frames, [Box(0, 0, 8, 8)]))
        assert not (cells(ds) >> 12).any()
        assert np.array_equal(cells(ds).reshape(frames.shape)[:, 8:], frames[:, 8:])


def test_the_png_never_shows_bits_above_bits_stored() -> None:
    drawn, twin = overlay_in_bit_12(), overlay_in_bit_12(drawn=False)
    assert not np.array_equal(cells(drawn), cells(twin))
    shown = [px.render(ds, px.decode(ds, "x.dcm")[0]) for ds in (drawn, twin)]
    assert output.png_bytes(shown[0]) == output.png_bytes(shown[1])


@pytest.mark.parametrize(
    "name",
    ["examples_overlay.dcm", "JPGExtended.dcm", "J2K_pixelrep_mismatch.dcm", "693_J2KI.dcm"],
)  # fmt: skip
def test_shipped_files_with_unused_bits_are_clean(name: str) -> None:
    ds, path = read(name)
    assert ds.BitsStored < ds.BitsAllocated
    before = ds.PixelData
    assert px.unused_bit_frames(ds, path) == []
    assert not px.clear_unused_bits(ds, path)
    assert ds.PixelData == before


@pytest.mark.parametrize(
    "name",
    ["MR_small_jp2klossless.dcm", "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_jpeg_dcmtk.dcm",
     "MR_small_RLE.dcm", "MR_small.dcm"],
)  # fmt: skip
def test_nothing_is_decoded_where_no_bit_can_be_set(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bits Stored equal to Bits Allocated (every 8-bit JPEG, most 16-bit data) leaves no
    bit to set: those files cost nothing more than before."""
    ds, path = read(name)
    assert ds.BitsStored == ds.BitsAllocated

    def refused(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("decoded")

    monkeypatch.setattr(px_bits, "Frames", refused)
    assert not px.encoded_bits_set(ds, path)
    assert not px.unused_bits_set(ds, path)


def test_compressed_frames_are_checked_one_at_a_time_as_coded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    anatomy = np.random.default_rng(3).integers(0, 4096, size=(5, 48, 40), dtype=np.uint16)
    cells = anatomy.copy()
    cells[1, 4, 4] |= 0x4000
    cells[3, 9:12, 2:20] |= 0x1000
    ds = encoded_keeping_every_bit(make_dataset(cells, bits_stored=12), "j2k lossless")
    decoded: list[int] = []
    original = px_framewise.Frames._raw_frame

    def counted(self: px.Frames, index: int) -> Any:
        decoded.append(index)
        return original(self, index)

    monkeypatch.setattr(px_framewise.Frames, "_raw_frame", counted)
    assert px.encoded_bits_set(ds, "x.dcm")
    assert decoded == [0, 1]  # stopped at the first frame holding one
    decoded.clear()
    assert px.unused_bit_frames(ds, "x.dcm") == [1, 3]
    assert decoded == [0, 1, 2, 3, 4]
    as_coded = px.Frames(ds, "x.dcm", as_stored=True)
    assert np.array_equal(np.stack([as_coded[i].reshape(48, 40) for i in range(5)]), cells)
    assert np.array_equal(px.decode(ds, "x.dcm"), anatomy)  # what is shown and rewritten
    assert not px.clear_unused_bits(ds, "x.dcm")  # a codestream is not cleared in place


@pytest.mark.parametrize("text_search", [False, True])
def test_rle_data_with_a_name_above_bits_stored_goes_out_native_and_clean(
    tmp_path: Path, text_search: bool
) -> None:
    """RLE keeps every bit of a cell: the overlay in bit 12 would survive re-encoding."""
    ds = overlay_in_bit_12()
    stored = np.frombuffer(ds.PixelData, dtype="<u2").reshape(ds.Rows, ds.Columns).copy()
    ds.BitsStored, ds.HighBit = 16, 15
    ds.compress(RLELossless, stored, encoding_plugin="pydicom")
    ds.BitsStored, ds.HighBit = 12, 11
    path = tmp_path / "rle.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert px_bits.unused_bit_frames(dcmread(path), str(path)) == [0]
    settings = safe_harbor_settings(
        tmp_path / "out", "rle", formats=frozenset({"dicom"}), detect_text=text_search
    )
    record = pipeline.process(path, settings)
    assert record.status == "written", record.reason
    written = dcmread(next((tmp_path / "out").glob("*.dcm")))
    assert written.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    values = np.frombuffer(written.PixelData, dtype="<u2").reshape(ds.Rows, ds.Columns)
    assert int(values.max()) < 4096
    if not text_search:
        assert np.array_equal(values, stored & 0x0FFF)
    assert ("PixelData", "clear-unused-bits") in [(a.path, a.action) for a in record.actions]
