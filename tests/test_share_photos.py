"""Photos and screenshots: opened upright and in sRGB, with nothing of their metadata.

Every photo here is made by Pillow (and pillow-heif) in the test, loaded with what a
phone writes: EXIF with GPS, make, model, dates and a maker note, an EXIF thumbnail, XMP,
IPTC, a comment, an ICC profile, maker APPn segments and data after the end. None of it
may reach the bytes that are sent.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from deid import jpegmeta
from deid.errors import DeidError, RefusedError, TooLargeError, UnreadableError
from deid.phitext import Matcher
from deid.pngmeta import chunk_findings
from deid.share.encode import encode
from deid.share.photos import Photo, open_photo, sniff_photo

NAME = "DOE^JANE"
DATE = "2023:03:14 10:22:33"
MAKE, MODEL = "ACMEPHONE", "MODEL-X1"
MAKER_NOTE = b"ACME\0MAKERNOTE serial 4471 owner DOE^JANE"
LATITUDE = [(40, 1), (26, 1), (46302, 1000)]
LONGITUDE = [(79, 1), (58, 1), (56118, 1000)]
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="DOE^JANE" '
    b'dc:description="XMPSECRET-7731"/></rdf:RDF></x:xmpmeta>'
)
IPTC_TEXT = b"IPTCSECRET DOE^JANE"
COMMENT = b"COMMENTSECRET DOE^JANE"
MAKER_APP = b"APPSECRET DOE^JANE"
TAIL = b"TAILSECRET DOE^JANE"
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
MATCHER = Matcher({NAME: "patient name"})
# What must never be found in anything sent: the text values and the GPS coordinates'
# and the ICC profile's own bytes.
PLANTED = [
    NAME.encode(),
    b"DOE",
    MAKE.encode(),
    MODEL.encode(),
    DATE.encode(),
    b"MAKERNOTE",
    b"XMPSECRET",
    b"xmpmeta",
    b"IPTCSECRET",
    b"COMMENTSECRET",
    b"APPSECRET",
    b"TAILSECRET",
    b"THUMBSECRET",
    b"Exif\0",
    b"ICC_PROFILE",
    struct.pack("<II", 46302, 1000),
    struct.pack("<II", 56118, 1000),
    SRGB[:128],
]


# --- Building photos as phones write them ----------------------------------------------


def _tiff_value(kind: str, value: object) -> tuple[int, int, bytes]:
    """(type, count, bytes) of one TIFF field value, little-endian."""
    if kind == "ascii":
        data = str(value).encode("latin-1") + b"\0"
        return 2, len(data), data
    if kind == "undefined":
        assert isinstance(value, bytes)
        return 7, len(value), value
    assert isinstance(value, list)
    if kind == "short":
        return 3, len(value), b"".join(struct.pack("<H", v) for v in value)
    if kind == "long":
        return 4, len(value), b"".join(struct.pack("<I", v) for v in value)
    return 5, len(value), b"".join(struct.pack("<II", n, d) for n, d in value)


class Tiff:
    """A little-endian TIFF structure built by hand, as EXIF holds it: IFDs written in
    any order, each one's offset known when it is written, so later ones can point to it."""

    def __init__(self) -> None:
        self.buf = bytearray(b"II*\0\0\0\0\0")

    def blob(self, data: bytes) -> int:
        at = len(self.buf)
        self.buf += data + b"\0" * (len(data) % 2)
        return at

    def ifd(self, entries: dict[int, tuple[str, object]], next_ifd: int = 0) -> int:
        start = len(self.buf)
        data_at = start + 2 + 12 * len(entries) + 4
        head, extra = struct.pack("<H", len(entries)), b""
        for tag, (kind, value) in sorted(entries.items()):
            typ, count, data = _tiff_value(kind, value)
            if len(data) <= 4:
                field = data.ljust(4, b"\0")
            else:
                field = struct.pack("<I", data_at + len(extra))
                extra += data + b"\0" * (len(data) % 2)
            head += struct.pack("<HHI", tag, typ, count) + field
        self.buf += head + struct.pack("<I", next_ifd) + extra
        return start

    def exif(self, ifd0: int) -> bytes:
        self.buf[4:8] = struct.pack("<I", ifd0)
        return b"Exif\0\0" + bytes(self.buf)


def thumbnail_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 30, 30)).save(out, "JPEG", comment=b"THUMBSECRET")
    return out.getvalue()


def exif_bytes(orientation: int = 1, *, full: bool = True) -> bytes:
    """EXIF as a phone writes it: make, model, date, artist and orientation in IFD0, a
    maker note and dates in the Exif IFD, GPS latitude and longitude, and a thumbnail in
    IFD1. `full=False`: the orientation alone."""
    tiff = Tiff()
    if not full:
        return tiff.exif(tiff.ifd({0x0112: ("short", [orientation])}))
    gps = tiff.ifd(
        {
            1: ("ascii", "N"),
            2: ("rational", LATITUDE),
            3: ("ascii", "W"),
            4: ("rational", LONGITUDE),
        }
    )
    sub = tiff.ifd(
        {
            0x9003: ("ascii", DATE),
            0x927C: ("undefined", MAKER_NOTE),
            0x9286: ("undefined", b"ASCII\0\0\0" + NAME.encode()),
        }
    )
    thumb = thumbnail_jpeg()
    at = tiff.blob(thumb)
    ifd1 = tiff.ifd(
        {0x0103: ("short", [6]), 0x0201: ("long", [at]), 0x0202: ("long", [len(thumb)])}
    )
    ifd0 = tiff.ifd(
        {
            0x010F: ("ascii", MAKE),
            0x0110: ("ascii", MODEL),
            0x0112: ("short", [orientation]),
            0x0132: ("ascii", DATE),
            0x013B: ("ascii", NAME),
            0x8769: ("long", [sub]),
            0x8825: ("long", [gps]),
        },
        next_ifd=ifd1,
    )
    return tiff.exif(ifd0)


def segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def iptc_segment() -> bytes:
    """APP13 as Photoshop writes IPTC: an 8BIM resource 0x0404 holding IIM records."""
    record = b"\x1c\x02\x50" + struct.pack(">H", len(IPTC_TEXT)) + IPTC_TEXT  # By-line
    resource = b"8BIM\x04\x04\0\0" + struct.pack(">I", len(record)) + record
    return segment(0xED, b"Photoshop 3.0\0" + resource)


def with_segments(jpeg: bytes, *extra: bytes, tail: bytes = b"") -> bytes:
    """`jpeg` with `extra` segments inserted after SOI and `tail` after EOI."""
    return jpeg[:2] + b"".join(extra) + jpeg[2:] + tail


def photo_pixels(width: int = 640, height: int = 480) -> np.ndarray:
    """A photo-like picture: smooth colour gradients with sensor noise."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    noisy = base + rng.normal(0, 6, base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def phone_jpeg(path: Path, pixels: np.ndarray | None = None, orientation: int = 1) -> Path:
    """A JPEG with everything a phone (and an editor after it) may leave in it."""
    out = io.BytesIO()
    Image.fromarray(photo_pixels() if pixels is None else pixels).save(
        out,
        "JPEG",
        quality=92,
        exif=exif_bytes(orientation),
        xmp=XMP,
        comment=COMMENT,
        icc_profile=SRGB,
    )
    data = with_segments(out.getvalue(), iptc_segment(), segment(0xEB, MAKER_APP), tail=TAIL)
    path.write_bytes(data)
    return path


def assert_nothing_sent(data: bytes, ext: str) -> None:
    """No planted value anywhere in the bytes, and no metadata block at all."""
    for value in PLANTED:
        assert value not in data, value
    if ext == "png":
        assert chunk_findings(data, MATCHER) == []
    else:
        assert ext == "jpg"
        assert jpegmeta.jpeg_findings(data, MATCHER) == []
        walked = jpegmeta.segments(data)
        assert walked is not None
        assert [s.name for s in walked if 0xE0 <= s.marker <= 0xEF] == ["APP0"]


# --- Sniffing ----------------------------------------------------------------------------


def test_formats_are_found_by_content_not_by_name(tmp_path: Path) -> None:
    image = Image.fromarray(photo_pixels(64, 48))
    for pillow_format, expected in [
        ("JPEG", "jpeg"),
        ("PNG", "png"),
        ("WEBP", "webp"),
        ("GIF", "gif"),
        ("TIFF", "tiff"),
        ("BMP", "bmp"),
    ]:
        path = tmp_path / f"photo-{expected}.dat"  # a name that says nothing
        image.save(path, pillow_format)
        assert sniff_photo(path) == expected
    misnamed = tmp_path / "photo.png"
    image.save(misnamed, "JPEG")
    assert sniff_photo(misnamed) == "jpeg"


@pytest.mark.parametrize(
    "head",
    [
        b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00UL",  # DICOM
        b"II*\0" + b"\0" * 124 + b"DICM" + b"\x02\x00",  # DICOM with a TIFF preamble
        b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2",  # an MP4 video
        b"%PDF-1.7\n",
        b"hello, this is a note\n",
        b"",
    ],
    ids=["dicom", "dicom-tiff-preamble", "video", "pdf", "text", "empty"],
)
def test_what_is_no_photo(tmp_path: Path, head: bytes) -> None:
    path = tmp_path / "IMG_0001.JPG"
    path.write_bytes(head + b"\0" * 64)
    assert sniff_photo(path) is None
    with pytest.raises(RefusedError) as caught:
        open_photo(path, "IMG_0001.JPG")
    assert str(caught.value).startswith("IMG_0001.JPG: not a photo")


def test_heif_brands(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"\0\0\0\x18ftypmif1\0\0\0\0mif1heic" + b"\0" * 32)
    assert sniff_photo(path) == "heic"
    path.write_bytes(b"\0\0\0\x1cftypheic\0\0\0\0mif1heicmiaf" + b"\0" * 32)
    assert sniff_photo(path) == "heic"


# --- Nothing of the metadata is sent -----------------------------------------------------


def test_phone_jpeg_drops_every_block(tmp_path: Path) -> None:
    path = phone_jpeg(tmp_path / "IMG_0001.jpg")
    source = path.read_bytes()
    for value in (NAME.encode(), b"XMPSECRET", b"IPTCSECRET", b"THUMBSECRET", b"MAKERNOTE"):
        assert value in source  # planted, so their absence below means something
    photo = open_photo(path, "IMG_0001.jpg")
    assert photo.format == "jpeg"
    assert photo.image.shape == (480, 640, 3) and photo.image.dtype == np.uint8
    assert set(photo.dropped) >= {
        "EXIF",
        "GPS",
        "maker notes",
        "thumbnail",
        "XMP",
        "IPTC",
        "comment",
        "ICC profile",
        "maker data",
        "data after the image end",
    }
    assert all(NAME not in kind and "DOE" not in kind for kind in photo.dropped)
    for photo_flag in (True, False):
        data, ext = encode(photo.image, 1_000_000, photo=photo_flag)
        assert ext == "jpg"
        assert_nothing_sent(data, ext)


def test_the_pixels_are_a_plain_array(tmp_path: Path) -> None:
    photo = open_photo(phone_jpeg(tmp_path / "a.jpg"), "a.jpg")
    assert isinstance(photo, Photo)
    assert type(photo.image) is np.ndarray and photo.image.flags.c_contiguous
    with Image.open(tmp_path / "a.jpg") as plain:
        stored = np.asarray(plain.convert("RGB")).astype(int)
    assert np.abs(photo.image.astype(int) - stored).max() <= 3  # sRGB to sRGB: as stored


def _png(path: Path) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", NAME)
    info.add_text("Comment", COMMENT.decode(), zip=True)
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    info.add_itxt("Title", "XMPSECRET title", lang="en")
    Image.fromarray(photo_pixels(320, 240)).save(
        path, "PNG", pnginfo=info, exif=exif_bytes(), icc_profile=SRGB
    )
    return path


def _webp(path: Path) -> Path:
    Image.fromarray(photo_pixels(320, 240)).save(
        path, "WEBP", quality=95, exif=exif_bytes(), xmp=XMP, icc_profile=SRGB
    )
    return path


def _heic(path: Path) -> Path:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    try:
        Image.fromarray(photo_pixels(320, 240)).save(
            path, "HEIF", quality=90, exif=exif_bytes(), xmp=XMP
        )
    except Exception as exc:  # no HEVC encoder in this build
        pytest.skip(f"pillow-heif cannot write HEIC here: {type(exc).__name__}")
    return path


def _tiff(path: Path) -> Path:
    tags = {270: COMMENT.decode(), 271: MAKE, 272: MODEL, 306: DATE, 315: NAME}
    Image.fromarray(photo_pixels(320, 240)).save(path, "TIFF", tiffinfo=tags)
    return path


def _gif(path: Path) -> Path:
    frames = [Image.fromarray(photo_pixels(160, 120)).quantize(64) for _ in range(2)]
    frames[1] = frames[1].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], comment=COMMENT)
    return path


@pytest.mark.parametrize(
    ("make", "fmt", "kinds"),
    [
        (_png, "png", {"text", "XMP", "EXIF", "GPS", "thumbnail", "ICC profile"}),
        (_webp, "webp", {"EXIF", "GPS", "maker notes", "XMP", "ICC profile"}),
        (_heic, "heic", {"EXIF", "XMP"}),
        (_tiff, "tiff", {"EXIF"}),
        (_gif, "gif", {"comment", "other frames"}),
    ],
    ids=["png", "webp", "heic", "tiff", "gif"],
)
def test_other_formats_drop_their_metadata(
    tmp_path: Path, make: Callable[[Path], Path], fmt: str, kinds: set[str]
) -> None:
    path = make(tmp_path / f"photo.{fmt}")
    photo = open_photo(path, path.name)
    assert photo.format == fmt
    assert photo.image.ndim == 3 and photo.image.shape[2] == 3
    assert set(photo.dropped) >= kinds
    for photo_flag in (True, False):
        data, ext = encode(photo.image, 2_000_000, photo=photo_flag)
        assert_nothing_sent(data, ext)


def test_an_animation_gives_its_first_frame(tmp_path: Path) -> None:
    path = _gif(tmp_path / "moving.gif")
    photo = open_photo(path, "moving.gif")
    with Image.open(path) as image:
        first = np.asarray(image.convert("RGB"))
    assert (photo.image == first).all()


# --- Upright, in sRGB, on white ----------------------------------------------------------

# How an EXIF orientation stores an upright picture (EXIF 2.3, tag 0x0112): the stored
# rows and columns, from the picture as it is to be seen.
STORED: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left to right
    3: lambda a: np.rot90(a, 2),
    4: lambda a: a[::-1],  # mirrored top to bottom
    5: lambda a: a.transpose(1, 0, 2),  # row 0 is the left side, column 0 the top
    6: lambda a: np.rot90(a, 1),  # row 0 is the right side, column 0 the top
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # row 0 right side, column 0 bottom
    8: lambda a: np.rot90(a, -1),  # row 0 is the left side, column 0 the bottom
}


def upright() -> np.ndarray:
    """Grey, wider than tall, with a red marker in the top-left quadrant."""
    image = np.full((120, 200, 3), 128, dtype=np.uint8)
    image[10:50, 15:80] = (230, 20, 20)
    return image


def assert_upright(image: np.ndarray) -> None:
    assert image.shape == (120, 200, 3)
    quadrants = {
        "top-left": image[:60, :100],
        "top-right": image[:60, 100:],
        "bottom-left": image[60:, :100],
        "bottom-right": image[60:, 100:],
    }
    red = {
        name: float((q[:, :, 0].astype(int) - q[:, :, 1]).max()) for name, q in quadrants.items()
    }
    assert red["top-left"] > 150, red
    assert all(value < 40 for name, value in red.items() if name != "top-left"), red
    assert image[10:50, 15:80, 0].mean() > 180  # where the marker is, exactly


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    stored = np.ascontiguousarray(STORED[orientation](upright()))
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, "JPEG", quality=95, exif=exif_bytes(orientation))
    assert_upright(open_photo(path, "rotated.jpg").image)


@pytest.mark.parametrize("orientation", [3, 6, 8, 2])
@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "HEIF"])
def test_orientation_in_other_formats(tmp_path: Path, fmt: str, orientation: int) -> None:
    if fmt == "HEIF":
        pillow_heif = pytest.importorskip("pillow_heif")
        pillow_heif.register_heif_opener()
    stored = np.ascontiguousarray(STORED[orientation](upright()))
    path = tmp_path / "rotated"
    try:
        Image.fromarray(stored).save(
            path,
            fmt,
            exif=exif_bytes(orientation, full=False),
            **({} if fmt == "PNG" else {"quality": 95}),
        )
    except Exception as exc:
        pytest.skip(f"cannot write {fmt} here: {type(exc).__name__}")
    assert_upright(open_photo(path, "rotated").image)


def test_transparency_lands_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((40, 60, 4), dtype=np.uint8)
    rgba[:, :30] = (255, 0, 0, 255)  # left half opaque red, right half transparent
    path = tmp_path / "shot.png"
    Image.fromarray(rgba, "RGBA").save(path)
    image = open_photo(path, "shot.png").image
    assert image[:, :30].tolist() == [[[255, 0, 0]] * 30] * 40
    assert (image[:, 30:] == 255).all()
    palette = Image.fromarray(rgba, "RGBA").quantize(4)
    palette.info["transparency"] = palette.getpixel((45, 10))
    palette.save(tmp_path / "pal.png", transparency=palette.getpixel((45, 10)))
    image = open_photo(tmp_path / "pal.png", "pal.png").image
    assert (image[:, 30:] == 255).all() and image[5, 5, 0] > 200


def test_sixteen_bit_grey_is_scaled(tmp_path: Path) -> None:
    values = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (16, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    image = open_photo(path, "deep.png").image
    assert image.shape == (16, 256, 3)
    assert np.abs(image[:, :, 0].astype(int) - np.arange(256)).max() <= 1
    assert (image[:, :, 0] == image[:, :, 2]).all()


def test_cmyk_jpeg_comes_out_rgb(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(path, "JPEG", quality=95)  # red
    image = open_photo(path, "print.jpg").image
    assert image.shape == (30, 40, 3)
    assert image[..., 0].mean() > 200 and image[..., 1].mean() < 60


def test_icc_profile_is_applied_then_dropped(tmp_path: Path) -> None:
    pixels = photo_pixels(64, 48)
    path = tmp_path / "srgb.png"
    Image.fromarray(pixels).save(path, icc_profile=SRGB)
    photo = open_photo(path, "srgb.png")
    assert "ICC profile" in photo.dropped
    assert np.abs(photo.image.astype(int) - pixels).max() <= 3  # sRGB to sRGB: the same
    broken = tmp_path / "broken-icc.png"
    Image.fromarray(pixels).save(broken, icc_profile=b"not a profile at all" * 8)
    photo = open_photo(broken, "broken-icc.png")
    assert "ICC profile" in photo.dropped and (photo.image == pixels).all()


# --- Refused before the work, or because it is damaged -----------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (9, 9, 9)).save(out, "JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize(
    "data",
    [png_claiming(12000, 10000), png_claiming(30000, 30000), jpeg_claiming(60000, 60000)],
    ids=["png-120MP", "png-900MP", "jpeg-3.6GP"],
)
def test_decompression_bombs_are_refused_before_decoding(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bomb.img"
    path.write_bytes(data)
    with pytest.raises(TooLargeError) as caught:
        open_photo(path, "holiday/bomb.img")
    message = str(caught.value)
    assert message.startswith("holiday/bomb.img: the image declares")
    assert "\n" not in message and str(tmp_path) not in message


def _truncated(tmp_path: Path, fmt: str) -> Path:
    path = tmp_path / f"cut.{fmt.lower()}"
    if fmt == "HEIF":
        _heic(path)
    else:
        Image.fromarray(photo_pixels(200, 150)).save(path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF", "GIF", "TIFF", "BMP"])
def test_truncated_files_fail_with_their_reason(tmp_path: Path, fmt: str) -> None:
    path = _truncated(tmp_path, fmt)
    with pytest.raises(UnreadableError) as caught:
        open_photo(path, "DCIM/cut")
    message = str(caught.value)
    assert message.startswith("DCIM/cut: ") and "truncated" in message
    assert "\n" not in message and str(tmp_path) not in message


def test_damaged_data_fails_as_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    out = io.BytesIO()
    Image.fromarray(photo_pixels(64, 48)).save(out, "JPEG")
    data = bytearray(out.getvalue())
    data[4:120] = b"\x00" * 116  # the segments after SOI wiped, but for the first marker
    path.write_bytes(bytes(data))
    with pytest.raises(DeidError) as caught:
        open_photo(path, "noise.jpg")
    assert isinstance(caught.value, UnreadableError)
    assert str(caught.value) == "noise.jpg: damaged or truncated JPEG: the image cannot be decoded"
