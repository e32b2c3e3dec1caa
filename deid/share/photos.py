"""Photos and screenshots opened as pixels only: upright, in sRGB, without their metadata.

A phone photo carries far more than its picture: where it was taken (GPS), when, on
which phone, a thumbnail of the picture as it was before any edit, maker notes, XMP edit
history, IPTC captions, comments and colour profiles naming a device. `open_photo`
decodes the picture as a viewer shows it (the EXIF orientation applied, the colour
profile converted to sRGB, transparency on white, the first frame of an animation) and
keeps only the pixel array: nothing of the file reaches what is sent. It says which
kinds of metadata were there and dropped, by name, never their values.

The format is found by content, never by the file's name; a file that is not a photo (a
DICOM file, a video, a document) is refused. A file whose header declares more pixels
than `MAX_PIXELS` is refused before it is decoded, as a decompression bomb must be, and
a truncated or damaged file is refused with the reason.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageOps, features

from deid import jpegmeta
from deid.errors import (
    InputChangedError,
    MissingCodecError,
    RefusedError,
    TooLargeError,
    UnreadableError,
)

MAX_PIXELS = 100_000_000  # a frame's declared pixels: no phone camera's default makes more
MAX_FILE_BYTES = 512 << 20
_HEAD = 132  # enough for every signature, and for DICOM's "DICM" at byte 128

# Format: (the name messages use, Pillow's format name).
FORMATS = {
    "jpeg": ("JPEG", "JPEG"),
    "png": ("PNG", "PNG"),
    "webp": ("WebP", "WEBP"),
    "heic": ("HEIC", "HEIF"),
    "avif": ("AVIF", "AVIF"),
    "gif": ("GIF", "GIF"),
    "tiff": ("TIFF", "TIFF"),
    "bmp": ("BMP", "BMP"),
}
# ISO base media brands (the `ftyp` box) of HEIF images (HEIC) and of AVIF images.
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"mif2"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_BMP_HEADERS = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
# What Pillow's `info` keys hold, as the names `Photo.dropped` uses.
_INFO_KINDS = {
    "exif": "EXIF",
    "xmp": "XMP",
    "XML:com.adobe.xmp": "XMP",
    "icc_profile": "ICC profile",
    "comment": "comment",
    "photoshop": "IPTC",
    "iptc": "IPTC",
    "mp": "extra images",
    "thumbnails": "thumbnail",
    "depth_images": "depth map",
    "aux": "auxiliary images",
    "metadata": "other metadata",
}
# What each kind of JPEG segment (`deid.jpegmeta`) holds, as `Photo.dropped` names it.
_SEGMENT_KINDS = {
    "EXIF metadata": "EXIF",
    "XMP metadata": "XMP",
    "ICC profile": "ICC profile",
    "IPTC or Photoshop metadata": "IPTC",
    "comment": "comment",
    "multi-picture data": "extra images",
    "JFIF thumbnail": "thumbnail",
    "data after the image end": "data after the image end",
}
# TIFF tags beyond the image's own: descriptive text (make, model, software, date,
# artist, host, copyright, description, document and page name) and the blocks.
_TIFF_TAGS = {
    **dict.fromkeys((269, 270, 271, 272, 285, 305, 306, 315, 316, 33432), "EXIF"),
    34665: "EXIF",
    34853: "GPS",
    700: "XMP",
    33723: "IPTC",
    34377: "IPTC",
    34675: "ICC profile",
}
_MAKER_NOTE = 0x927C


@dataclass
class Photo:
    """A photo's pixels as a viewer shows them, and the kinds of metadata left behind.

    `image` is (H, W, 3) uint8 RGB, upright and in sRGB. `format` is `sniff_photo`'s
    name for the file's format. `dropped` names each kind of metadata the file held
    ("EXIF", "GPS", "XMP", "IPTC", "comment", "ICC profile", "thumbnail", "maker
    notes" ...), never a value.
    """

    image: np.ndarray
    format: str
    dropped: list[str] = field(default_factory=list)


def sniff_photo(path: Path) -> str | None:
    """The format of a photo or screenshot by its content ("jpeg", "png", "webp",
    "heic", "avif", "gif", "tiff", "bmp"), or None for anything else: DICOM files,
    videos and documents are no photos, whatever their names. AVIF only where Pillow
    reads it."""
    try:
        with path.open("rb") as f:
            head = f.read(_HEAD)
    except OSError:
        return None
    return _sniff(head)


def _sniff(head: bytes) -> str | None:
    if head[128:132] == b"DICM":
        return None  # DICOM, whatever its preamble holds (a TIFF header, for one)
    if head.startswith(jpegmeta.SOI + b"\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(jpegmeta.WEBP_RIFF) and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return _iso_brand(head)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "tiff"
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADERS:
        return "bmp"
    return None


def _iso_brand(head: bytes) -> str | None:
    """HEIC or AVIF from an `ftyp` box's brands; None for videos and the rest."""
    size = min(int.from_bytes(head[:4], "big"), len(head))
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, size - 3, 4)]
    avif = "avif" if features.check("avif") else None
    if brands[0] in _HEIC_BRANDS:
        return "heic"
    if brands[0] in _AVIF_BRANDS:
        return avif
    if any(b in _HEIC_BRANDS for b in brands):
        return "heic"
    if any(b in _AVIF_BRANDS for b in brands):
        return avif
    return "heic" if brands[0] in _HEIF_BRANDS else None


@functools.cache
def _heif_opener() -> bool:
    """Teach Pillow HEIC through pillow-heif, once; False if it is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def open_photo(path: Path, where: str, *, max_pixels: int = MAX_PIXELS) -> Photo:
    """The pixels of the photo at `path`, upright and in sRGB, and what metadata it held.

    `where` names the file in messages (never its absolute path). Raises `RefusedError`
    for a file that is not a photo, `TooLargeError` for one that declares more than
    `max_pixels` pixels or is larger than `MAX_FILE_BYTES` (before decoding),
    `MissingCodecError` for HEIC without pillow-heif, and `UnreadableError` for a
    truncated or damaged one, each with a one-line reason.
    """
    data = _read(path, where)
    fmt = _sniff(data[:_HEAD])
    if fmt is None:
        raise RefusedError(
            "not a photo or screenshot (JPEG, PNG, WebP, HEIC, GIF, TIFF or BMP)", where
        )
    label, pillow_format = FORMATS[fmt]
    if fmt == "heic" and not _heif_opener():
        raise MissingCodecError("HEIC photos need pillow-heif, which is not installed", where)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's warnings quote what they complain about
        try:
            opened = Image.open(io.BytesIO(data), formats=[pillow_format])
        except Image.DecompressionBombError:
            raise _too_large(None, max_pixels, where) from None
        except Exception as exc:  # Pillow raises many types on damaged input
            raise _damaged(exc, label, where) from None
        with opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise _too_large((width, height), max_pixels, where)
            try:
                animated = bool(getattr(opened, "is_animated", False))  # seeks: before load
                opened.seek(0)
                opened.load()
            except Exception as exc:
                raise _damaged(exc, label, where) from None
            dropped = _dropped(opened, data if fmt == "jpeg" else b"")
            dropped += ["other frames"] if animated else []
            icc = opened.info.get("icc_profile")
            try:
                upright = ImageOps.exif_transpose(opened)
            except Exception:  # a damaged EXIF block: the pixels as stored
                upright = opened.copy()
    image = _rgb(upright, icc if isinstance(icc, bytes) else None, label, where)
    pixels = np.array(image, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or not pixels.size:
        raise UnreadableError(f"damaged {label}: the image has no pixels", where)
    return Photo(pixels, fmt, dropped)


def _read(path: Path, where: str) -> bytes:
    try:
        with path.open("rb") as f:
            size = f.seek(0, io.SEEK_END)
            if size > MAX_FILE_BYTES:
                raise TooLargeError(
                    f"the file is {size >> 20} MiB, more than the {MAX_FILE_BYTES >> 20} MiB "
                    "a photo may be; refused before reading",
                    where,
                )
            f.seek(0)
            return f.read()
    except FileNotFoundError:
        raise InputChangedError("the file is gone", where) from None
    except OSError as exc:
        raise UnreadableError(
            f"cannot read the file ({exc.strerror or 'I/O error'})", where
        ) from None


def _too_large(size: tuple[int, int] | None, limit: int, where: str) -> TooLargeError:
    declared = f"declares {size[0]} x {size[1]} pixels" if size else "declares too many pixels"
    return TooLargeError(
        f"the image {declared}, more than the {limit / 1e6:g} megapixels allowed; "
        "refused before decoding",
        where,
    )


def _damaged(exc: Exception, label: str, where: str) -> UnreadableError:
    """The reason, in words of ours: Pillow's messages can hold the file's path."""
    if "truncated" in str(exc).lower() or isinstance(exc, EOFError):
        return UnreadableError(f"truncated {label}: the file ends before the image does", where)
    return UnreadableError(f"damaged or truncated {label}: the image cannot be decoded", where)


def _dropped(image: Image.Image, jpeg: bytes) -> list[str]:
    """The kinds of metadata `image` (opened and loaded) carries, each once."""
    found: list[str] = []
    for key, value in image.info.items():
        if isinstance(key, str) and key in _INFO_KINDS and value:
            found.append(_INFO_KINDS[key])
    text = getattr(image, "text", None)
    if isinstance(text, dict):  # PNG text chunks
        found += [_text_kind(str(key)) for key in text]
    tags = getattr(image, "tag_v2", None)
    if tags is not None:
        found += [kind for tag, kind in _TIFF_TAGS.items() if tag in tags]
    if "exif" in image.info or tags is not None:
        found += _exif_parts(image, thumbnail=tags is None)
    if jpeg:
        walked = jpegmeta.segments(jpeg) or []
        kinds = [segment.kind() for segment in walked]
        found += [_SEGMENT_KINDS.get(k, "maker data") for k in kinds if k is not None]
    return list(dict.fromkeys(found))


def _text_kind(key: str) -> str:
    """What a PNG text chunk holds, by its keyword: XMP, a block ImageMagick wrote as
    text ("Raw profile type exif"), or text."""
    if key == "XML:com.adobe.xmp":
        return "XMP"
    if key.startswith("Raw profile type "):
        kind = key.removeprefix("Raw profile type ").upper()
        return {"8BIM": "IPTC", "ICC": "ICC profile", "ICM": "ICC profile"}.get(kind, kind)
    return "text"


def _exif_parts(image: Image.Image, *, thumbnail: bool) -> list[str]:
    """GPS, maker notes and a thumbnail in an image's EXIF, where present (`thumbnail`:
    look for one; a TIFF's next directory is its next page instead)."""
    try:
        exif = image.getexif()
        found = ["GPS"] if exif.get(ExifTags.IFD.GPSInfo) is not None else []
        if exif.get_ifd(ExifTags.IFD.Exif).get(_MAKER_NOTE):
            found.append("maker notes")
        if thumbnail and exif.get_ifd(ExifTags.IFD.IFD1):
            found.append("thumbnail")
    except Exception:  # damaged EXIF is dropped all the same
        return []
    return found


def _rgb(image: Image.Image, icc: bytes | None, label: str, where: str) -> Image.Image:
    """`image` as 8-bit RGB in sRGB, transparency composited on white."""
    try:
        image = _eight_bit(image)
        if icc:
            image = _to_srgb(image, icc)
        if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            white.alpha_composite(rgba)
            image = white
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise UnreadableError(
            f"{label} in a colour mode that cannot be shown ({image.mode})", where
        ) from exc


def _eight_bit(image: Image.Image) -> Image.Image:
    """Grey images of 16 or 32 bits (and float) as 8-bit grey; other modes unchanged."""
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image).astype(np.float64)
        if image.mode == "I" and values.max(initial=0) <= 255 and values.min(initial=0) >= 0:
            return Image.fromarray(values.astype(np.uint8), mode="L")
        return Image.fromarray(np.rint(np.clip(values, 0, 65535) / 257).astype(np.uint8))
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        low, high = float(values.min(initial=0)), float(values.max(initial=0))
        scaled = (values - low) * (255.0 / (high - low or 1.0))
        return Image.fromarray(np.rint(scaled).astype(np.uint8))
    if "transparency" in image.info or image.mode == "PA":
        return image.convert("RGBA")  # a colour key or palette alpha, as an alpha channel
    if image.mode in ("1", "P"):
        return image.convert("RGB" if image.mode == "P" else "L")
    return image


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """`image` converted from its embedded colour profile to sRGB; unchanged if the
    profile is damaged or does not fit the image's colours."""
    if image.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(
            image,
            source,
            ImageCms.createProfile("sRGB"),
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            outputMode="RGBA" if image.mode == "RGBA" else "RGB",
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image
    return converted if converted is not None else image
