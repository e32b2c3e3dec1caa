"""Writing: PNG and DICOM outputs, named by pseudonyms, committed all at once.

Every output of one input is first written under a temporary name in its final folder;
only when all are complete are they renamed into place, without replacing an existing
file unless asked. A failure removes what was written, so no partial output is left.
"""

from __future__ import annotations

import filecmp
import io
import os
import secrets
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import cast

import numpy as np
from PIL import Image
from pydicom import dcmwrite
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.valuerep import PersonName

from deid.chunks import Chunk, FileRange, Source
from deid.errors import OutputExistsError
from deid.reader import deferred

isal_zlib: ModuleType | None
try:
    from isal import isal_zlib
except ImportError:  # a platform without an ISA-L wheel: zlib, slower, same files
    isal_zlib = None

TEMP_PREFIX = ".deid-partial-"


def png_bytes(image: np.ndarray, *, compress_level: int = 1, max_size: int = 0) -> bytes:
    """Encode a rendered uint8 grey or RGB image as PNG: IHDR, IDAT and IEND, nothing else.

    No text, EXIF or time chunk can carry anything out. Rows use the Sub filter, and
    level 1 (the default) is deflated by ISA-L, which on a 2500x2000 radiograph is about
    five times faster than zlib's own level 1 for a file no larger; 0 stores and 2-9 are
    zlib's levels. Pillow's encoder tries every filter on every row, which costs more
    than the rest of a DICOM-to-PNG run on large images.
    """
    if max_size and max(image.shape[:2]) > max_size:
        picture = Image.fromarray(image)
        picture.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
        image = np.asarray(picture)
    if image.dtype != np.uint8 or not (
        image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
    ):
        raise TypeError(
            f"PNG needs a uint8 (H, W) or (H, W, 3) image, not {image.dtype} {image.shape}"
        )
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else 3
    rows = image.reshape(height, width * channels)
    filtered = np.empty((height, width * channels + 1), dtype=np.uint8)
    filtered[:, 0] = 1  # Sub: each byte minus the same channel of the pixel before
    filtered[:, 1 : channels + 1] = rows[:, :channels]
    np.subtract(rows[:, channels:], rows[:, :-channels], out=filtered[:, channels + 1 :])
    header = struct.pack(">IIBBBBB", width, height, 8, 0 if channels == 1 else 2, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", _deflate(filtered.tobytes(), compress_level)),
            _png_chunk(b"IEND", b""),
        )
    )


def _deflate(data: bytes, level: int) -> bytes:
    if level == 1 and isal_zlib is not None:
        return bytes(isal_zlib.compress(data, 1))
    return zlib.compress(data, level)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
# VRs whose value is text: encoded here, and read and written raw by the tag step.
TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
_ITEM = b"\xfe\xff\x00\xe0"


def dicom_bytes(ds: Dataset) -> bytes:
    """Serialize a dataset as a DICOM Part 10 file, byte for byte as `dcmwrite` would.

    Elements still raw as read are copied as bytes, and ASCII text values and their
    sequences are encoded here; only the rest goes through pydicom's encoders. Headers
    the profile rewrote heavily cost a fraction of a full `dcmwrite`. The preamble is
    always zeros: vendors hide data there too.
    """
    return serialize(ds).joined()


@dataclass
class Serialized:
    """A DICOM file as pieces: the pixel data value stays one uncopied piece."""

    chunks: list[Chunk]
    pixel_value: int | None = None

    def header(self) -> bytes:
        """Everything but the pixel data value: what a leak check must read."""
        return b"".join(
            c for i, c in enumerate(self.chunks) if i != self.pixel_value and isinstance(c, bytes)
        )

    def joined(self) -> bytes:
        """The whole file in memory."""
        return b"".join(c if isinstance(c, bytes) else c.read() for c in self.chunks)


def serialize(ds: Dataset) -> Serialized:
    """`dicom_bytes` in pieces, so large pixel data is never copied to join it."""
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    if syntax.is_deflated or not syntax.is_little_endian:
        return Serialized([_plain(ds)])
    result = Serialized([_file_meta(ds.file_meta)])
    _encode_into(result, ds, syntax.is_implicit_VR)
    return result


def _file_meta(meta: FileMetaDataset) -> bytes:
    """Preamble, DICM and the group 2 elements with their group length."""
    version = b"\x02\x00\x01\x00OB\0\0" + struct.pack("<I", 2) + b"\x00\x01"
    body = [version]
    for tag in sorted(meta.keys()):
        if tag in (0x00020000, 0x00020001):
            continue
        data = _encode(meta.get_item(tag), implicit=False)
        if data is None:
            fp = DicomBytesIO()
            fp.write(b"\0" * 128 + b"DICM")
            write_file_meta_info(fp, meta, enforce_standard=True)
            return fp.getvalue()
        body.append(data)
    group = b"".join(body)
    length = b"\x02\x00\x00\x00UL\x04\x00" + struct.pack("<I", len(group))
    return b"\0" * 128 + b"DICM" + length + group


def _plain(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _encode_dataset(ds: Dataset, implicit: bool) -> bytes:
    result = Serialized([])
    _encode_into(result, ds, implicit)
    return result.joined()


def _encode_into(result: Serialized, ds: Dataset, implicit: bool) -> None:
    parts = result.chunks
    encodings = None
    elements = ds._dict
    # pydicom's map (`get_item` would read deferred values), sorted as plain ints.
    for number, tag in sorted((int(t), t) for t in elements):
        elem = elements[tag]
        if number == 0x7FE00010:
            pieces = _pixel_pieces(ds, elem, implicit)
            if pieces is not None:
                head, value, tail = pieces
                parts.append(head)
                result.pixel_value = len(parts)
                parts.append(value)
                if tail:
                    parts.append(tail)
                continue
        data = _encode(elem, implicit)
        if data is None:
            one = DicomBytesIO()
            one.is_little_endian, one.is_implicit_VR = True, implicit
            if encodings is None:
                encodings = ds._character_set
            write_data_element(one, ds[tag], encodings)
            data = one.getvalue()
        parts.append(data)


def _header(tag: int, vr: str, length: int, implicit: bool) -> bytes | None:
    if implicit:
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, length)
    if vr in _LONG_VRS:
        return struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr.encode(), length)
    if length > 0xFFFF:
        return None
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), length)


_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _pixel_pieces(ds: Dataset, elem: object, implicit: bool) -> tuple[bytes, Chunk, bytes] | None:
    """Pixel data as (tag and length, value, end): native or encapsulated, raw or not.

    A value still in the input file becomes a `FileRange`, copied when written; a
    `Source` value is written as it makes itself.
    """
    value = getattr(elem, "value", None)
    if isinstance(elem, DataElement) and isinstance(value, Source):
        head = _header(0x7FE00010, elem.VR, value.length, implicit)
        return None if head is None else (head, value, b"")
    filename = getattr(ds, "filename", None)
    if deferred(elem) and isinstance(filename, str):
        raw = cast(RawDataElement, elem)
        head = _header(0x7FE00010, raw.VR or "OW", raw.length, implicit)
        if raw.is_little_endian and raw.is_implicit_VR == implicit and not raw.length % 2 and head:
            where = FileRange(filename, raw.value_tell, raw.length, getattr(ds, "timestamp", None))
            return head, where, b""
    if isinstance(elem, RawDataElement):
        if not elem.is_little_endian or elem.is_implicit_VR != implicit:
            return None
        value, vr, undefined = elem.value, elem.VR or "OW", elem.length == 0xFFFFFFFF
    elif isinstance(elem, DataElement):
        value, vr, undefined = elem.value, elem.VR, elem.is_undefined_length
    else:
        return None
    if not isinstance(value, bytes) or vr not in ("OB", "OW") or len(value) % 2:
        return None
    if undefined:
        if not value.startswith(b"\xfe\xff\x00\xe0"):
            return None
        head = (
            struct.pack("<HHI", 0x7FE0, 0x0010, 0xFFFFFFFF)
            if implicit
            else (b"\xe0\x7f\x10\x00" + vr.encode() + b"\0\0\xff\xff\xff\xff")
        )
        return head, value, _SEQUENCE_END
    native = _header(0x7FE00010, vr, len(value), implicit)
    return None if native is None else (native, value, b"")


def _raw_head(elem: RawDataElement, implicit: bool) -> bytes | None:
    """The tag and length of an untouched raw element that can be copied as it is."""
    value = elem.value
    if (
        value is None
        or not elem.is_little_endian
        or elem.is_implicit_VR != implicit
        or elem.length == 0xFFFFFFFF
        or len(value) % 2
        or (not implicit and (not elem.VR or elem.VR == "SQ"))
    ):
        return None
    return _header(int(elem.tag), str(elem.VR), len(value), implicit)


def _encode(elem: object, implicit: bool) -> bytes | None:
    """The encoded bytes of one element when they can be made simply, else None."""
    if isinstance(elem, RawDataElement):
        head = _raw_head(elem, implicit)
        return None if head is None or elem.value is None else head + elem.value
    if not isinstance(elem, DataElement):
        return None
    vr = elem.VR
    if vr == "SQ":
        return _encode_sequence(elem, implicit)
    if vr not in TEXT_VRS:
        return None
    value = elem.value
    if value is None or value == "":
        text = ""
    elif isinstance(value, str | PersonName):
        text = str(value)
    elif isinstance(value, MultiValue | list | tuple) and all(
        isinstance(v, str | PersonName) for v in value
    ):
        text = "\\".join(str(v) for v in value)
    else:
        return None
    data = ascii_value(text, vr)
    if data is None:
        return None  # needs the dataset's character set: pydicom encodes it
    head = _header(int(elem.tag), vr, len(data), implicit)
    return None if head is None else head + data


def ascii_value(text: str, vr: str) -> bytes | None:
    """`text` as a padded DICOM value, or None when it needs the character set."""
    if not text.isascii():
        return None
    data = text.encode("ascii")
    return data + (b"\0" if vr == "UI" else b" ") if len(data) % 2 else data


def _encode_sequence(elem: DataElement, implicit: bool) -> bytes | None:
    items = []
    for item in elem.value or []:
        if item.get("SpecificCharacterSet"):
            return None
        body = _encode_dataset(item, implicit)
        items.append(_ITEM + struct.pack("<I", len(body)) + body)
    content = b"".join(items)
    head = _header(int(elem.tag), "SQ", len(content), implicit)
    return None if head is None else head + content


@dataclass
class Transaction:
    """The outputs of one input: all of them land, or none does."""

    overwrite: bool = False
    pending: list[tuple[Path, Path]] = field(default_factory=list)

    def add(self, path: Path, data: bytes | Sequence[Chunk]) -> None:
        """Write `data` (bytes, or pieces written in order) under a temporary name."""
        _make_folder(path.parent)
        temp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(6)}-{path.name}")
        try:
            with temp.open("xb") as f:
                if isinstance(data, bytes | bytearray | memoryview):
                    f.write(data)
                else:
                    for chunk in data:
                        if isinstance(chunk, bytes):
                            f.write(chunk)
                        else:
                            chunk.copy_to(f)
        except BaseException:
            temp.unlink(missing_ok=True)
            self.abort()
            raise
        self.pending.append((temp, path))

    def commit(self) -> list[Path]:
        """Move every temporary file into place; on any failure undo the whole set."""
        done: list[Path] = []
        try:
            for temp, path in self.pending:
                if self.overwrite:
                    os.replace(temp, path)
                else:
                    _link_no_clobber(temp, path)
                done.append(path)
        except BaseException:
            for path in done:
                path.unlink(missing_ok=True)
            self.abort()
            raise
        self.pending.clear()
        return done

    def abort(self) -> None:
        for temp, _ in self.pending:
            temp.unlink(missing_ok=True)
        self.pending.clear()


_MADE: set[Path] = set()


def _make_folder(folder: Path) -> None:
    """mkdir -p, remembered per process: a batch writes many files per folder."""
    if folder not in _MADE:
        folder.mkdir(parents=True, exist_ok=True)
        _MADE.add(folder)


def _link_no_clobber(temp: Path, path: Path) -> None:
    """Put `temp` at `path` unless another file is there.

    A file with the very same bytes is this output already (a run killed after writing
    it, before recording it): that is no clash, so the rerun takes it as written.
    """
    try:
        os.link(temp, path)
    except FileExistsError:
        _same_or_clash(temp, path)
        return
    except OSError:
        if path.exists():
            _same_or_clash(temp, path)
            return
        os.replace(temp, path)
        return
    temp.unlink()


def _same_or_clash(temp: Path, path: Path) -> None:
    if not filecmp.cmp(temp, path, shallow=False):
        raise OutputExistsError(
            f"output exists with other content: {path.name} (give --overwrite to replace it)",
            str(path),
        )
    temp.unlink()


@dataclass(frozen=True)
class OutputNames:
    """Where each output of one instance goes; nothing comes from the input's name."""

    dicom: Path
    png: list[Path]
    context: Path


def output_names(
    out_dir: Path,
    *,
    tree: bool,
    patient: str,
    study: str,
    series: str,
    instance: str,
    frames: Sequence[int],
    frame_count: int,
) -> OutputNames:
    """Paths for every output of one instance, from its pseudonyms."""
    folder = out_dir / patient / study / series if tree else out_dir
    pngs = [
        folder / (f"{instance}.png" if frame_count == 1 else f"{instance}-f{i + 1:04d}.png")
        for i in frames
    ]
    return OutputNames(folder / f"{instance}.dcm", pngs, folder / f"{instance}.txt")
