"""Bombs and damaged files, made in memory: a 2 KB JPEG whose frame header claims
65500 x 65500 pixels, an RLE image whose header claims 65535 x 65535, deflated datasets
that inflate far past what their header declares, a 2 MB deflated file whose header
truthfully declares 2 GiB of pixels, and valid headers followed by megabytes of zeros.
The tests of `deid.limits` and `benchmarks/limits.py` use them.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from collections.abc import Sequence as Seq
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from conftest import make_dataset
from pydicom.dataset import Dataset, FileDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
)


def jpeg(rows: int, columns: int, components: int = 1, precision: int = 8) -> bytes:
    """A 2 KB baseline JPEG codestream whose frame header declares `rows` x `columns`."""
    sof = struct.pack(">HBHHB", 8 + 3 * components, precision, rows, columns, components)
    sof += b"".join(bytes([i + 1, 0x11, 0]) for i in range(components))
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes(range(1, 65))
    dht = b"\xff\xc4" + struct.pack(">H", 31) + b"\x00" + bytes([0, 1] + [1] * 10 + [0] * 4)
    dht += bytes(range(12))
    sos = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + dqt + b"\xff\xc0" + sof + dht + sos + bytes(1900) + b"\xff\xd9"


def encapsulated(frames: list[bytes], uid: str, rows: int, columns: int, **kw: Any) -> FileDataset:
    """An 8-bit image of `rows` x `columns` whose pixel data is `frames`, as `uid`."""
    ds = make_dataset(np.zeros((2, 2), np.uint8), **kw)
    ds.Rows, ds.Columns = rows, columns
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = uid
    return ds


def rle_frame(count: int, offsets: list[int], body: bytes = b"\x81\x00" * 200) -> bytes:
    return struct.pack("<16I", count, *offsets, *[0] * (15 - len(offsets))) + body


ITEM = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"  # the start of an item of undefined length


def deflated(ds: FileDataset, *, tail: bytes = b"", cut_at: bytes = b"") -> bytes:
    """`ds` as a Deflated Explicit VR Little Endian file, `tail` added to the dataset
    (after the first `cut_at` in it, if given) before it is deflated, as a hostile
    writer would."""
    meta, dataset = _meta_and_dataset(ds)
    if cut_at:
        dataset = dataset[: dataset.index(cut_at) + len(cut_at)]
    dataset += tail
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return meta + packer.compress(dataset) + packer.flush()


def _meta_and_dataset(ds: FileDataset) -> tuple[bytes, bytes]:
    """The file meta of `ds` saved as Deflated Explicit VR Little Endian, and its
    dataset inflated again."""
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    data = _saved(ds)
    end = 144 + int.from_bytes(data[140:144], "little")  # after the file meta group
    return data[:end], zlib.decompress(data[end:], -zlib.MAX_WBITS)


def _pixel_element(length: int) -> bytes:
    return b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little")


def deflated_pixels(ds: FileDataset, pixel_data: bytes) -> bytes:
    """`ds` (without pixel data) as a Deflated Explicit VR Little Endian file holding
    `pixel_data`, deflated at level 1: tens of megabytes in a fraction of a second."""
    meta, dataset = _meta_and_dataset(ds)
    packer = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = packer.compress(dataset + _pixel_element(len(pixel_data)))
    return meta + body + packer.compress(pixel_data) + packer.flush()


_ZEROS_PIECE = 16 << 20


def deflated_zeros(ds: FileDataset, pixel_bytes: int) -> bytes:
    """`ds` (without pixel data) as a Deflated Explicit VR Little Endian file whose Pixel
    Data holds `pixel_bytes` zeros (a multiple of 16 MiB), as deflate packs them: about
    a thousandfold.

    The zeros are never made whole: after a full flush the deflater starts afresh, so one
    16 MiB piece is deflated once and its bytes repeated, and a 2 GiB bomb takes a tenth
    of a second and 2 MB to build.
    """
    assert pixel_bytes % _ZEROS_PIECE == 0
    meta, dataset = _meta_and_dataset(ds)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = packer.compress(dataset + _pixel_element(pixel_bytes))
    head += packer.flush(zlib.Z_FULL_FLUSH)
    piece = packer.compress(bytes(_ZEROS_PIECE)) + packer.flush(zlib.Z_FULL_FLUSH)
    return meta + head + piece * (pixel_bytes // _ZEROS_PIECE) + packer.flush()


def truthful_cine(frames: int, rows: int, columns: int) -> FileDataset:
    """The header of a 16-bit multi-frame image of `frames` x `rows` x `columns`, no
    pixel data: what it declares is what `deflated_zeros` then holds."""
    xa = "1.2.840.10008.5.1.4.1.1.12.1"
    ds = make_dataset(np.zeros((2, 4, 4), np.uint16), modality="XA", sop_class=xa)
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    del ds.PixelData
    return ds


def ct(rows: int = 512, columns: int = 512, **kw: Any) -> FileDataset:
    return make_dataset(np.zeros((rows, columns), np.uint16), **kw)


def with_zeros(ds: FileDataset, size: int) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue() + bytes(size)


def _saved(ds: FileDataset) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _headers_only() -> FileDataset:
    ds = ct()
    del ds.PixelData
    return ds


def _file_meta(data: bytes) -> bytes:
    return data[: 144 + int.from_bytes(data[140:144], "little")]


def _with_sequence() -> FileDataset:
    ds = ct()
    ds.ReferencedImageSequence = Sequence([Dataset()])
    ds["ReferencedImageSequence"].is_undefined_length = True
    ds.ReferencedImageSequence[0].is_undefined_length_sequence_item = True
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3"
    return ds


def big_private_value(size: int) -> FileDataset:
    ds = ct(16, 16)
    ds.private_block(0x0029, "ACME BLOB", create=True).add_new(0x10, "OB", bytes(size))
    return ds


# Each bomb: its bytes, and the kind and words of its refusal with the default limits.
BOMBS: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "jpeg-sof-65500-header-65500": (
        lambda: _saved(encapsulated([jpeg(65500, 65500)], JPEGBaseline8Bit, 65500, 65500)),
        "too-large",
        "the header declares 65500 x 65500 pixels per frame; the limit is 100000000",
    ),
    "jpeg-sof-65500-header-512": (
        lambda: _saved(encapsulated([jpeg(65500, 65500)], JPEGBaseline8Bit, 512, 512)),
        "unreadable",
        "frame 1: its JPEG codestream declares 65500 x 65500 pixels where the header "
        "declares 512 x 512; the file is damaged",
    ),
    "rle-header-65535": (
        lambda: _saved(encapsulated([rle_frame(1, [64])], RLELossless, 65535, 65535)),
        "too-large",
        "the header declares 65535 x 65535 pixels per frame",
    ),
    "rle-segments-wrong": (
        lambda: _saved(encapsulated([rle_frame(15, [64] * 15)], RLELossless, 512, 512)),
        "unreadable",
        "frame 1: its RLE header declares 15 segments where the header's samples and bits make 1",
    ),
    # 24 MiB of zeros: under the 32 MiB any deflated data may inflate to whatever its
    # ratio, so the header is what refuses these three.
    "deflated-pixels-longer-than-declared": (
        lambda: deflated(ct(extra={"PixelData": bytes(24 << 20)})),
        "unreadable",
        "pixel data holds 25165824 bytes where the header declares 524288",
    ),
    "deflated-zeros-after-the-pixels": (
        lambda: deflated(ct(), tail=bytes(24 << 20)),
        "unreadable",
        "the deflated dataset inflates past the",
    ),
    "deflated-2-gib-as-declared": (
        lambda: deflated_zeros(truthful_cine(1024, 1024, 1024), 2 << 30),
        "too-large",
        "times); the limit is 100 times plus 32 MiB ([limits] max_inflate_ratio)",
    ),
    "header-then-50-mb-of-zeros": (
        lambda: with_zeros(_headers_only(), 50 << 20),
        "unreadable",
        "52428800 bytes of zeros or damage follow the last element",
    ),
    "file-meta-then-20-mb-of-zeros": (
        lambda: _file_meta(_saved(ct())) + bytes(20 << 20),
        "unreadable",
        "20971520 bytes of zeros or damage follow the last element",
    ),
    "deflated-zeros-in-a-sequence": (
        lambda: deflated(_with_sequence(), tail=bytes(24 << 20), cut_at=ITEM),
        "unreadable",
        "the deflated dataset inflates past the",
    ),
    "image-then-50-mb-of-zeros": (
        lambda: with_zeros(ct(), 50 << 20),
        "unreadable",
        "52428800 bytes of zeros or damage follow the last element",
    ),
}


_REFUSALS = """
import json, resource, sys, time
from pathlib import Path
from deid import pipeline, profiles
from deid.settings import Settings

out, valid, text, *bombs = sys.argv[1:]
settings = Settings.for_profile(
    profiles.load("safe-harbor"), b"k" * 32, Path(out),
    formats=frozenset({"png", "dicom"}), detect_text=text == "text",
)
assert pipeline.process(Path(valid), settings).status == "written"
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = peak()
for path in map(Path, bombs):
    start = time.perf_counter()
    record = pipeline.process(path, settings)
    seconds = time.perf_counter() - start
    print(json.dumps({"name": path.name, "status": record.status, "kind": record.kind,
                      "seconds": seconds, "grown_mb": peak() - base}))
"""


def refusals(
    out: Path, valid: Path, bombs: Seq[Path], *, text: bool = False
) -> list[dict[str, Any]]:
    """Each bomb through `pipeline.process` in a fresh process, after one valid file:
    its record's status and kind, its seconds, and how far the process's peak resident
    memory (ru_maxrss, native allocations included) grew above its peak after the
    valid file. The peak only grows, so each figure bounds its bomb and every bomb
    before it."""
    done = subprocess.run(
        [sys.executable, "-c", _REFUSALS, str(out), str(valid), "text" if text else "-"]
        + [str(b) for b in bombs],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return [json.loads(line) for line in done.stdout.splitlines()]
