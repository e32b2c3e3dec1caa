"""Files that ask for too much are refused before the work, in a moment and little memory.

The bombs are made in `bombs`.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bombs import (
    BOMBS,
    big_private_value,
    ct,
    deflated,
    deflated_pixels,
    deflated_zeros,
    encapsulated,
    jpeg,
    refusals,
    rle_frame,
    truthful_cine,
)
from conftest import make_dataset, safe_harbor_settings
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)
from typer.testing import CliRunner

from deid import limits, pipeline, pixels, profiles, reader
from deid.cli import app
from deid.errors import ExitCode, TooLargeError, UnreadableError
from deid.limits import Limits
from deid.settings import Settings
from deid.validate import validate_file

SAMPLES = Path(__file__).resolve().parents[1] / "sample_dicom"


@pytest.fixture(scope="module")
def bomb_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    made = {}
    for name, (make, _, _) in BOMBS.items():
        made[name] = folder / name
        made[name].write_bytes(make())
    return made


# ---- refused by the pipeline, with the right kind and reason --------------------------


@pytest.mark.parametrize("name", list(BOMBS))
def test_each_bomb_is_refused_by_the_pipeline(
    name: str, bomb_files: dict[str, Path], tmp_path: Path
) -> None:
    _, kind, words = BOMBS[name]
    settings = safe_harbor_settings(tmp_path / "out", "bombs", formats=frozenset({"png", "dicom"}))
    record = pipeline.process(bomb_files[name], settings)
    assert (record.status, record.kind) == ("failed", kind), record.reason
    assert words in record.reason
    assert "DOE" not in record.reason and "\n" not in record.reason
    assert not record.outputs and not list((tmp_path / "out").rglob("*.dcm"))


def test_the_jpeg_bomb_is_2_kb() -> None:
    assert len(jpeg(65500, 65500)) < 2100


def test_bombs_take_under_a_second_and_200_mb(
    bomb_files: dict[str, Path], ct_file: Path, tmp_path: Path
) -> None:
    results = refusals(tmp_path / "out", ct_file, [bomb_files[name] for name in BOMBS])
    assert [r["name"] for r in results] == list(BOMBS)
    for result in results:
        assert (result["status"], result["kind"]) == ("failed", BOMBS[result["name"]][1])
        assert result["seconds"] < 1.0, result
        assert result["grown_mb"] < 200, result


def test_a_bomb_alone_exits_with_the_too_large_code(
    bomb_files: dict[str, Path], tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["anonymize", str(bomb_files["rle-header-65535"]), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == ExitCode.TOO_LARGE == 12, result.output
    assert "too large" in result.output or "65535 x 65535" in result.output


# ---- limits on what the header declares -----------------------------------------------


def _read(path: Path, **limits_set: int) -> Any:
    return reader.read(path, limits=Limits(**limits_set))


def test_frames_over_the_limit_are_refused(write_dicom: Callable[..., Path]) -> None:
    path = write_dicom(make_dataset(np.zeros((12, 4, 4), np.uint8)))
    assert _read(path, max_frames=12).NumberOfFrames == 12
    with pytest.raises(TooLargeError) as caught:
        _read(path, max_frames=11)
    assert caught.value.message == (
        "the header declares 12 frames; the limit is 11 ([limits] max_frames)"
    )
    assert caught.value.kind == "too-large" and caught.value.exit_code == 12


def test_decoded_bytes_over_the_limit_are_refused(write_dicom: Callable[..., Path]) -> None:
    path = write_dicom(make_dataset(np.zeros((3, 512, 512, 3), np.uint16), photometric="RGB"))
    with pytest.raises(TooLargeError) as caught:
        _read(path, max_pixel_mib=4)
    assert caught.value.message == (
        "the header declares 5 MiB of decoded pixels; the limit is 4 MiB ([limits] max_pixel_mib)"
    )
    assert _read(path, max_pixel_mib=5).Rows == 512


def test_pixels_per_frame_over_the_limit_are_refused(write_dicom: Callable[..., Path]) -> None:
    path = write_dicom(ct(64, 64))
    with pytest.raises(TooLargeError, match="declares 64 x 64 pixels per frame; the limit is 4000"):
        _read(path, max_frame_pixels=4000)


def test_a_header_only_read_checks_no_pixel_limit(write_dicom: Callable[..., Path]) -> None:
    path = write_dicom(ct(64, 64))
    ds = reader.read(path, stop_before_pixels=True, limits=Limits(max_frame_pixels=1))
    assert ds.Rows == 64


def test_large_header_values_over_the_limit_are_refused_unread(
    write_dicom: Callable[..., Path],
) -> None:
    path = write_dicom(big_private_value(3 << 20))
    with pytest.raises(TooLargeError, match=r"3145728 bytes of large values; the limit is 2 MiB"):
        _read(path, max_header_mib=2)
    assert len(_read(path, max_header_mib=4)[0x00291010].value) == 3 << 20


def test_the_defaults_pass_real_scan_sizes() -> None:
    defaults = Limits()
    mammogram = limits.Declared(5625, 4096, 1, 1, 16, "MONOCHROME2")
    cine = limits.Declared(512, 512, 3, 3000, 8, "RGB")
    big_cine = limits.Declared(512, 512, 1, 3000, 16, "MONOCHROME2")
    for declared in (mammogram, cine, big_cine):
        limits.check_declared(declared, defaults, "x.dcm")
    assert big_cine.decoded_bytes == 1_572_864_000


# ---- deflated data inflates no further than allowed -------------------------------------


def test_deflated_data_past_a_small_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "blob.dcm"
    path.write_bytes(deflated(big_private_value(6 << 20)))
    with pytest.raises(TooLargeError) as caught:
        _read(path, max_header_mib=2)
    assert caught.value.message == (
        "the deflated dataset inflates past 2 MiB before its pixel data; "
        "the limit is [limits] max_header_mib"
    )
    assert len(_read(path, max_header_mib=8)[0x00291010].value) == 6 << 20


def test_deflated_data_whose_header_declares_too_much_is_refused_early(tmp_path: Path) -> None:
    path = tmp_path / "big.dcm"
    path.write_bytes(deflated(ct(2048, 2048)))
    with pytest.raises(TooLargeError, match="declares 8 MiB of decoded pixels; the limit is 1"):
        _read(path, max_pixel_mib=1)
    assert _read(path).Rows == 2048


def test_a_deflated_file_with_a_corrupt_stream_is_unreadable(tmp_path: Path) -> None:
    data = deflated(ct(64, 64))
    path = tmp_path / "corrupt.dcm"
    path.write_bytes(data[:-300] + b"\xff" * 300)
    with pytest.raises(UnreadableError):
        pixels.decode(reader.read(path), str(path))


def test_a_truthful_deflate_bomb_is_refused_by_its_ratio(tmp_path: Path) -> None:
    """48 MiB of zeros in 48 KiB: the header declares exactly what the file holds, so
    only the ratio tells it from an image."""
    path = tmp_path / "zeros.dcm"
    path.write_bytes(deflated_zeros(truthful_cine(24, 1024, 1024), 48 << 20))
    assert path.stat().st_size < 64 << 10
    with pytest.raises(TooLargeError) as caught:
        _read(path)
    assert caught.value.kind == "too-large" and caught.value.exit_code == 12
    assert caught.value.message.startswith("the deflated dataset inflates past 36 MiB from ")
    assert caught.value.message.endswith(
        " times); the limit is 100 times plus 32 MiB ([limits] max_inflate_ratio)"
    )
    assert str(caught.value).startswith(f"{path}: ")
    assert reader.pixel_length(_read(path, max_inflate_ratio=1100)) == 48 << 20


def test_the_inflate_ratio_is_set_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "in" / "zeros.dcm"
    path.parent.mkdir()
    path.write_bytes(deflated_zeros(truthful_cine(24, 1024, 1024), 48 << 20))
    command = ["anonymize", str(path.parent), "--no-ocr", "-f", "dicom", "-j", "1"]
    refused = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "a")])
    assert refused.exit_code == ExitCode.TOO_LARGE, refused.output
    assert "FAILED zeros.dcm: the deflated dataset inflates past 36 MiB from" in refused.output
    raised = ["--limit", "max_inflate_ratio=1100", "--out", str(tmp_path / "b")]
    let_in = CliRunner().invoke(app, [*command, *raised])
    assert let_in.exit_code == ExitCode.OK, let_in.output
    assert len(list((tmp_path / "b").rglob("*.dcm"))) == 1


def test_count_inflated_holds_nothing_and_leaves_the_file_where_it_was(tmp_path: Path) -> None:
    data = deflated_zeros(truthful_cine(8, 1024, 1024), 16 << 20)
    start = 144 + int.from_bytes(data[140:144], "little")  # after the file meta group
    stream = io.BytesIO(data)
    stream.seek(start)
    inflated = limits.count_inflated(stream, Limits(), "x.dcm")
    assert stream.tell() == start
    assert inflated == len(zlib.decompress(data[start:], -zlib.MAX_WBITS)) > 16 << 20
    small = Limits(max_pixel_mib=1, max_header_mib=1)
    with pytest.raises(TooLargeError, match=r"inflates past 2 MiB; the limit is \[limits\] max_h"):
        limits.count_inflated(io.BytesIO(data[start:]), small, "x.dcm")


def test_real_deflated_pixels_past_the_allowance_pass_the_ratio(tmp_path: Path) -> None:
    """48 MiB of a radiograph-like cine (a body with noise, black around it) deflates
    about 4 to 1: far from the ratio, and read whole; the ratio is still checked."""
    size = 1024
    yy, xx = np.mgrid[:size, :size]
    body = ((xx - size / 2) / (size * 0.35)) ** 2 + ((yy - size / 2) / (size * 0.45)) ** 2 < 1
    noise = np.random.default_rng(5).integers(0, 64, (size, size))
    frame = np.where(body, 1800 + noise, 0).astype("<u2")
    frames = 24
    path = tmp_path / "cine.dcm"
    path.write_bytes(deflated_pixels(truthful_cine(frames, size, size), frame.tobytes() * frames))
    assert path.stat().st_size < (48 << 20) // 3
    ds = reader.read(path)
    decoded = pixels.Frames(ds, str(path))
    assert len(decoded) == frames and np.array_equal(decoded[frames - 1], frame)
    with pytest.raises(TooLargeError, match=r"\(\d times\); the limit is 1 times plus 32 MiB"):
        _read(path, max_inflate_ratio=1)


def test_deflated_padding_is_let_pass(tmp_path: Path) -> None:
    path = tmp_path / "padded.dcm"
    path.write_bytes(deflated(ct(64, 64), tail=bytes(100)))
    assert pixels.decode(reader.read(path), str(path)).shape == (1, 64, 64)


# ---- codestreams must declare what the header declares --------------------------------


def _testdata(name: str) -> FileDataset:
    from pydicom import dcmread

    return dcmread(str(get_testdata_file(name)))


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("JPEG2000.dcm", "JPEG 2000"),
        ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS"),
        ("JPGExtended.dcm", "JPEG"),
    ],
)
def test_a_codestream_of_another_size_than_the_header_is_refused(name: str, codec: str) -> None:
    ds = _testdata(name)
    pixels.check_pixel_data(ds, name)
    rows, columns = ds.Rows, ds.Columns
    ds.Rows = rows * 2
    with pytest.raises(UnreadableError) as caught:
        pixels.decode(ds, name)
    assert caught.value.message == (
        f"frame 1: its {codec} codestream declares {rows} x {columns} pixels where the "
        f"header declares {rows * 2} x {columns}; the file is damaged"
    )


def test_a_jp2_file_in_a_frame_is_looked_into() -> None:
    ds = _testdata("MR_small_jp2klossless.dcm")
    assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
    from pydicom.encaps import generate_frames

    codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
    header = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00\x00\x00\x14ftypjp2 \x00\x00\x00\x00jp2 "
    box = struct.pack(">I", 8 + len(codestream)) + b"jp2c" + codestream
    ds.PixelData = encapsulate([header + box])
    pixels.check_pixel_data(ds, "jp2.dcm")
    ds.Columns = 32
    with pytest.raises(UnreadableError, match="declares 64 x 64 pixels where the header"):
        pixels.check_pixel_data(ds, "jp2.dcm")


def test_components_and_precision_must_fit_the_header() -> None:
    colour = encapsulated([jpeg(8, 8, components=3)], JPEGBaseline8Bit, 8, 8)
    with pytest.raises(UnreadableError, match="declares 3 components where the header declares 1"):
        pixels.check_pixel_data(colour, "c.dcm")
    deep = encapsulated([jpeg(8, 8, precision=12)], JPEGBaseline8Bit, 8, 8)
    with pytest.raises(UnreadableError, match="declares 12-bit samples where the header alloc"):
        pixels.check_pixel_data(deep, "d.dcm")


def test_every_frame_is_checked_not_only_the_first() -> None:
    ds = encapsulated([jpeg(8, 8), jpeg(8, 8), jpeg(9000, 9000)], JPEGBaseline8Bit, 8, 8)
    with pytest.raises(UnreadableError, match=r"f\.dcm: frame 3: its JPEG codestream"):
        pixels.check_pixel_data(ds, "f.dcm")


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (rle_frame(1, [80]), "segment offsets do not fit"),
        (rle_frame(2, [64, 64]), "declares 2 segments"),
        (rle_frame(1, [64])[:40], "RLE header is cut short"),
        (rle_frame(1, [9000]), "segment offsets do not fit"),
    ],
)
def test_rle_headers_must_fit_the_declared_image(frame: bytes, problem: str) -> None:
    ds = encapsulated([frame], RLELossless, 20, 20)
    with pytest.raises(UnreadableError, match=problem):
        pixels.check_pixel_data(ds, "r.dcm")


def test_jpeg_ls_is_read_from_its_own_frame_header() -> None:
    ds = encapsulated([jpeg(8, 8).replace(b"\xff\xc0", b"\xff\xf7", 1)], JPEGLSLossless, 8, 9)
    with pytest.raises(UnreadableError, match="its JPEG-LS codestream declares 8 x 8 pixels"):
        pixels.check_pixel_data(ds, "ls.dcm")


SHIPPED = [
    "693_J2KI.dcm",
    "GDCMJ2K_TextGBR.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "JPEG2000.dcm",
    "JPEGLSNearLossless_16.dcm",
    "JPGExtended.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "SC_rgb_jls_lossy_line.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_rle_32bit_2frame.dcm",
    "examples_jpeg2k.dcm",
    "image_dfl.dcm",
    "rtdose_rle.dcm",
]


@pytest.mark.parametrize("name", SHIPPED)
def test_real_files_pass_every_check(name: str) -> None:
    path = Path(str(get_testdata_file(name)))
    ds = reader.read(path)
    frames = pixels.decode(ds, str(path))
    assert frames.shape[1:3] == (ds.Rows, ds.Columns)


def test_the_samples_pass_every_check() -> None:
    paths = [p for p in sorted(SAMPLES.rglob("*")) if p.is_file() and reader.sniff(p)]
    assert paths
    for path in paths:
        ds = reader.read(path)
        if "PixelData" in ds:
            pixels.check_pixel_data(ds, str(path))


# ---- the limits come from the profile -------------------------------------------------


def test_settings_take_the_limits_from_the_profile_then_the_options(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(
        'extends = "safe-harbor"\n\n[limits]\nmax_frames = 20\nmemory_cap_mib = 4096\n'
        "max_inflate_ratio = 500\n"
    )
    profile = profiles.load(str(tmp_path / "p.toml"))
    settings = Settings.for_profile(
        profile, b"k" * 32, tmp_path, max_pixel_mib=64, max_frames=None, max_inflate_ratio=600
    )
    assert settings.limits == Limits(
        max_frames=20, max_pixel_mib=64, memory_cap_mib=4096, max_inflate_ratio=600
    )
    settings = Settings.for_profile(profile, b"k" * 32, tmp_path)
    assert settings.limits.max_inflate_ratio == 500
    assert Settings.for_profile(profiles.load(), b"k" * 32, tmp_path).limits == Limits()


def test_the_limits_table_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('extends = "safe-harbor"\n\n[limits]\nmax_frame = 20\nmax_pixel_mib = 0\n')
    messages = [p.message for p in validate_file(path)]
    assert messages == [
        'unknown key "max_frame" in [limits]; did you mean "max_frames"?',
        "[limits] max_pixel_mib = 0 is out of range; use 1 or more",
    ]


def test_the_defaults_are_the_schema_s() -> None:
    assert Limits() == Limits(
        max_frame_pixels=100_000_000,
        max_frames=10_000,
        max_pixel_mib=4096,
        max_header_mib=256,
        max_inflate_ratio=100,
        memory_cap_mib=8192,
    )


# ---- a memory cap for workers ---------------------------------------------------------

_CAPPED = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from deid.limits import Limits, apply_memory_cap
    assert not apply_memory_cap(Limits(memory_cap_mib=0))
    assert apply_memory_cap(Limits())
    print(resource.getrlimit(resource.RLIMIT_AS)[0] >> 20)
    assert apply_memory_cap(Limits(memory_cap_mib=int(sys.argv[1])))
    print(resource.getrlimit(resource.RLIMIT_AS)[0] >> 20)
    import numpy as np
    try:
        np.ones(3 << 30, dtype=np.uint8)
    except MemoryError:
        print("MemoryError")
    from deid import pipeline, profiles
    from deid.settings import Settings
    settings = Settings.for_profile(profiles.load("safe-harbor"), b"k" * 32, Path(sys.argv[3]))
    record = pipeline.process(Path(sys.argv[2]), settings)
    print(record.status, record.boxes and "boxes")
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is Linux's")
def test_a_capped_worker_still_runs_the_text_search(burned_in_file: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CAPPED, "2048", str(burned_in_file), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:4] == ["8192", "2048", "MemoryError", "written boxes"]


_BATCH_OVER_THE_CAP = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from deid import batch, pipeline, profiles
    from deid.settings import Settings

    out, *paths = map(Path, sys.argv[1:])
    def settings(folder, **limits):
        return Settings.for_profile(
            profiles.load("safe-harbor"), b"k" * 32, out / folder,
            formats=frozenset({"png", "dicom"}), detect_text=False, **limits,
        )
    # A first file in this process, so that what the worker inherits is all there.
    assert pipeline.process(paths[-1], settings("warm")).status == "written"
    size = next(int(line.split()[1]) >> 10 for line in open("/proc/self/status")
                if line.startswith("VmSize:"))
    capped = settings("out", memory_cap_mib=size + 64, max_inflate_ratio=2000)
    summary = batch.run_paths(paths, capped, jobs=1, on_result=lambda r: print(json.dumps(
        {"name": Path(r.path).name, "status": r.status, "kind": r.kind,
         "exit_code": r.exit_code, "reason": r.reason})))
    print(json.dumps({"exit_code": summary.exit_code, "cap": size + 64}))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is Linux's")
def test_a_worker_over_its_memory_cap_fails_that_file_and_the_batch_goes_on(
    ct_file: Path, tmp_path: Path
) -> None:
    """A batch with one worker capped 64 MiB above what it starts with: a deflated file
    of 128 MiB (let through the ratio) cannot be held, a native frame of 128 MiB cannot
    be decoded, each fails alone as too large, and the same worker then writes the CT
    (files go to a single worker in order; records come back as tasks end)."""
    inflating = tmp_path / "a-inflating.dcm"
    inflating.write_bytes(deflated_zeros(truthful_cine(64, 1024, 1024), 128 << 20))
    native = tmp_path / "b-native.dcm"
    header = truthful_cine(1, 8192, 8192)
    header.save_as(native, enforce_file_format=True)
    with native.open("ab") as f:  # the pixel data, 128 MiB of zeros, sparse on disk
        f.write(b"\xe0\x7f\x10\x00OW\x00\x00" + (128 << 20).to_bytes(4, "little"))
        f.truncate(f.tell() + (128 << 20))
    paths = [inflating, native, ct_file]
    done = subprocess.run(
        [sys.executable, "-c", _BATCH_OVER_THE_CAP, str(tmp_path / "out"), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    *records, summary = [json.loads(line) for line in done.stdout.splitlines()]
    by_name = {r["name"]: r for r in records}
    assert sorted(by_name) == sorted(p.name for p in paths), done.stdout
    for name in (inflating.name, native.name):
        failed = by_name[name]
        assert (failed["status"], failed["kind"]) == ("failed", "too-large")
        assert failed["exit_code"] == ExitCode.TOO_LARGE
    assert by_name[inflating.name]["reason"] == (
        f"the inflated dataset does not fit in the {summary['cap']} MiB a worker may use; "
        "the limit is [limits] memory_cap_mib"
    )
    assert "do not fit in the memory allowed" in by_name[native.name]["reason"]
    assert by_name[ct_file.name]["status"] == "written"
    assert summary["exit_code"] == ExitCode.TOO_LARGE
    written = list((tmp_path / "out" / "out").rglob("*.dcm"))
    assert len(written) == 1 and len(list((tmp_path / "out" / "out").rglob("*.png"))) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is Linux's")
def test_the_default_cap_lets_the_text_search_through(burned_in_file: Path, tmp_path: Path) -> None:
    """`deid anonymize` as a user runs it, every worker under the default cap: the
    burned-in name is found and covered."""
    assert Limits().memory_cap_mib == 8192
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from deid.cli import main; main()",
            "anonymize",
            str(burned_in_file),
            "--out",
            str(tmp_path / "out"),
            "--format",
            "dicom,png",
            "--json",
            "-j",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (record,) = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert record["status"] == "written" and record["boxes"], record
