"""What a JPEG or WebP holds besides its image: every kind found, by position, no value."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageCms

from deid.jpegmeta import (
    image_planes,
    jpeg_findings,
    segments,
    webp_chunks,
    webp_findings,
)
from deid.phitext import Matcher

NAME = "DOE^JANE"
MATCHER = Matcher({NAME: "patient name"})


def plain_jpeg(mode: str = "RGB", **options: object) -> bytes:
    out = io.BytesIO()
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(out, "JPEG", **options)
    return out.getvalue()


def segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def inserted(jpeg: bytes, extra: bytes) -> bytes:
    """`extra` right after APP0 JFIF (SOI, then APP0 of 16 bytes)."""
    return jpeg[:20] + extra + jpeg[20:]


def test_pillows_own_jpeg_is_bare() -> None:
    data = plain_jpeg(quality=90, optimize=True)
    walked = segments(data)
    assert walked is not None
    assert walked[0].name == "APP0" and walked[0].offset == 2
    assert all(s.kind() is None for s in walked)
    assert jpeg_findings(data, MATCHER) == []
    assert jpeg_findings(plain_jpeg(progressive=True), MATCHER) == []
    assert jpeg_findings(plain_jpeg("L"), MATCHER) == []
    assert jpeg_findings(plain_jpeg("CMYK"), MATCHER) == []  # Adobe APP14: a decoder needs it


EXIF = Image.Exif()
EXIF[0x013B] = NAME  # Artist
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize(
    ("extra", "where", "kinds"),
    [
        (segment(0xE1, EXIF.tobytes()), "APP1", ["EXIF metadata", "patient name"]),
        (
            segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>DOE^JANE</x:xmpmeta>"),
            "APP1",
            ["XMP metadata", "patient name"],
        ),
        (segment(0xE2, b"ICC_PROFILE\0\x01\x01" + ICC), "APP2", ["ICC profile"]),
        (segment(0xE2, b"MPF\0II*\0"), "APP2", ["multi-picture data"]),
        (segment(0xED, b"Photoshop 3.0\08BIM\x04\x04"), "APP13", ["IPTC or Photoshop metadata"]),
        (segment(0xFE, b"taken by DOE^JANE"), "COM", ["comment", "patient name"]),
        (segment(0xEB, b"ACME maker data"), "APP11", ["APP11 data"]),
        (segment(0xE0, b"JFXX\0\x10" + b"\xff\xd8" * 8), "APP0", ["JFIF thumbnail"]),
    ],
    ids=["exif", "xmp", "icc", "mpf", "iptc", "comment", "maker", "jfxx"],
)
def test_each_block_is_a_finding_at_its_offset(extra: bytes, where: str, kinds: list[str]) -> None:
    data = inserted(plain_jpeg(), extra)
    found = jpeg_findings(data, MATCHER)
    assert found == [(f"JPEG {where} segment at byte 20", kind) for kind in kinds]
    assert all(NAME not in f"{place} {kind}" for place, kind in found)


def test_jfif_with_a_thumbnail_is_a_finding() -> None:
    data = plain_jpeg()
    payload = data[6:20]  # JFIF, version, units, density, then the thumbnail's size
    thumb = payload[:12] + b"\x01\x01" + b"\x80\x80\x80"  # a 1 x 1 thumbnail, RGB
    data = b"\xff\xd8" + segment(0xE0, thumb) + data[20:]
    assert jpeg_findings(data, MATCHER) == [("JPEG APP0 segment at byte 2", "JFIF thumbnail")]


def test_pillow_metadata_is_found() -> None:
    data = plain_jpeg(exif=EXIF.tobytes(), icc_profile=ICC, comment=b"hello", xmp=b"<x/>")
    kinds = [kind for _, kind in jpeg_findings(data, MATCHER) or []]
    assert {"EXIF metadata", "ICC profile", "comment", "XMP metadata"} <= set(kinds)


def test_data_after_eoi_is_a_finding() -> None:
    data = plain_jpeg()
    found = jpeg_findings(data + b"DOE^JANE motion photo", MATCHER)
    assert found == [
        (f"after JPEG EOI at byte {len(data)}", "data after the image end"),
        (f"after JPEG EOI at byte {len(data)}", "patient name"),
    ]


@pytest.mark.parametrize("cut", [3, 10, 100, -2])
def test_a_truncated_jpeg_cannot_be_walked(cut: int) -> None:
    data = plain_jpeg()
    assert segments(data[:cut]) is None
    assert jpeg_findings(data[:cut], MATCHER) is None


def test_not_a_jpeg() -> None:
    assert segments(b"\x89PNG\r\n\x1a\n") is None
    assert segments(b"") is None


def test_webp_chunks() -> None:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 30)).save(
        out, "WEBP", exif=EXIF.tobytes(), xmp=b"<x>DOE^JANE</x>", icc_profile=ICC
    )
    data = out.getvalue()
    chunks = webp_chunks(data)
    assert chunks is not None and chunks[0][0] == b"VP8X"
    kinds = [kind for _, kind in webp_findings(data, MATCHER) or []]
    assert {"EXIF metadata", "XMP metadata", "ICC profile", "patient name"} <= set(kinds)
    clean = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 30)).save(clean, "WEBP")
    assert webp_findings(clean.getvalue(), MATCHER) == []
    tail = webp_findings(clean.getvalue() + b"DOE", MATCHER)
    assert tail is not None and tail[0][1] == "data after the image end"
    assert webp_findings(clean.getvalue()[:-4], MATCHER) is None


def test_planes_show_the_image_as_a_viewer_does() -> None:
    pixels = np.zeros((40, 80, 3), dtype=np.uint8)
    pixels[:, :, 0] = 200  # red: its own brightest plane
    exif = Image.Exif()
    exif[0x0112] = 6  # to be turned a quarter clockwise
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", exif=exif.tobytes(), quality=95)
    greys = image_planes(out.getvalue())
    assert len(greys) == 2 and greys[0].shape == (80, 40)
    assert int(greys[1].mean()) > 190 > int(greys[0].mean())
