"""Limits checked before work: how big an image may say it is, and what a file may make
the program inflate, decode or hold.

A hostile or damaged file is small and cheap to make (a 2 KB JPEG claiming 65500 x 65500
pixels, a deflated dataset that inflates a thousandfold, a valid header followed by
megabytes of zeros) and would cost gigabytes and minutes if taken at its word. So each
claim is checked before the work it asks for: the image size the header declares against
`Limits`, each codestream's size against the header (`deid.codestreams`), inflation
against the header, and the file's tail; deflated data is first inflated into nothing
and counted, and refused if it grows far more than real images do. A refusal names what
was declared and the limit, never a patient's value. The defaults are data in
`profile_schema.toml`, beside the `[limits]` keys.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, BinaryIO

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from deid.errors import TooLargeError, UnreadableError

__all__ = [
    "Declared",
    "Limits",
    "PixelStop",
    "apply_memory_cap",
    "check_declared",
    "check_pixel_element",
    "check_tail",
    "count_inflated",
    "inflate",
    "out_of_memory",
    "raw_value",
    "zeros_error",
]

MIB = 1 << 20
# Bytes a file may run on past what its header accounts for (odd-length padding, a
# trailing padding element) before the rest counts as damage.
SLACK = 1 * MIB
_PIXEL_DATA = 0x7FE00010
# Where pydicom's reader is asked to look: pixel data (float, double, integer) and zeros.
_STOPS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008, 0})


@cache
def _defaults() -> dict[str, int]:
    from deid.schema import profile_schema

    spec = profile_schema()["sections"]["limits"]
    return {key: int(entry["default"]) for key, entry in spec.items()}


def _default(key: str) -> Any:
    return field(default_factory=lambda: _defaults()[key])


@dataclass(frozen=True)
class Limits:
    """The most a file may ask for; set in a profile's `[limits]` table.

    `max_frame_pixels` bounds Rows x Columns, `max_frames` the Number of Frames,
    `max_pixel_mib` the decoded pixel data (and what deflated data may inflate to),
    `max_header_mib` everything but the pixel data, `max_inflate_ratio` how many times
    its deflated size a deflated dataset may inflate to (beyond `INFLATE_ALLOWANCE`),
    and `memory_cap_mib` the address space of a worker process (0: no cap).
    """

    max_frame_pixels: int = _default("max_frame_pixels")
    max_frames: int = _default("max_frames")
    max_pixel_mib: int = _default("max_pixel_mib")
    max_header_mib: int = _default("max_header_mib")
    max_inflate_ratio: int = _default("max_inflate_ratio")
    memory_cap_mib: int = _default("memory_cap_mib")

    @classmethod
    def from_profile(cls, section: Mapping[str, Any], **overrides: int | None) -> Limits:
        """Limits from a profile's `[limits]` table, then overrides that are not None."""
        names = {f.name for f in fields(cls)}
        values = {k: int(v) for k, v in section.items() if k in names}
        values.update({k: int(v) for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def pixel_bytes(self) -> int:
        return self.max_pixel_mib * MIB

    @property
    def header_bytes(self) -> int:
        return self.max_header_mib * MIB


# ---- what the header declares ----------------------------------------------------------


_ROWS, _COLUMNS, _BITS_ALLOCATED = 0x00280010, 0x00280011, 0x00280100
_SAMPLES, _FRAMES, _PHOTOMETRIC = 0x00280002, 0x00280008, 0x00280004


def raw_value(ds: Dataset, tag: int) -> Any:
    """An attribute's value: a little-endian US or a string's bytes straight from a raw
    element, else as pydicom reads it (None when absent)."""
    elem = ds._dict.get(tag)  # type: ignore[call-overload]
    if elem is None:
        return None
    if isinstance(elem, RawDataElement) and elem.is_little_endian and elem.value is not None:
        if elem.VR == "US" and len(elem.value) == 2:
            return int.from_bytes(elem.value, "little")
        if elem.VR in ("IS", "CS"):
            return elem.value.strip(b" \0")
    return ds[tag].value


@dataclass(frozen=True)
class Declared:
    """The Image Pixel attributes that say how big the pixel data is."""

    rows: int
    columns: int
    samples: int
    frames: int
    bits_allocated: int
    photometric: str

    @classmethod
    def of(cls, ds: Dataset) -> Declared | None:
        """What `ds` declares, or None where an attribute is missing or invalid (decoding
        reports that in its own words). Values are read from their raw bytes where they
        can be, so the elements stay as they were read."""
        try:
            rows, columns = int(raw_value(ds, _ROWS)), int(raw_value(ds, _COLUMNS))
            bits = int(raw_value(ds, _BITS_ALLOCATED))
            samples = int(raw_value(ds, _SAMPLES) or 1)
        except (TypeError, ValueError):
            return None
        try:
            frames = max(int(raw_value(ds, _FRAMES) or 1), 1)
        except (TypeError, ValueError):
            frames = 1
        if min(rows, columns, bits, samples) <= 0:
            return None
        photometric = raw_value(ds, _PHOTOMETRIC)
        if isinstance(photometric, bytes):
            photometric = photometric.decode("ascii", "replace")
        return cls(rows, columns, samples, frames, bits, str(photometric or "").strip(" \0"))

    @property
    def frame_pixels(self) -> int:
        return self.rows * self.columns

    @property
    def sample_bytes(self) -> int:
        return max(1, math.ceil(self.bits_allocated / 8))

    @property
    def decoded_bytes(self) -> int:
        """Bytes of the decoded frames (1-bit pixels decode to a byte each)."""
        return self.frame_pixels * self.samples * self.frames * self.sample_bytes

    @property
    def native_bytes(self) -> int:
        """Bytes of uncompressed pixel data (YBR_FULL_422 stores two samples a pixel)."""
        length = -(-self.frame_pixels * self.samples * self.frames * self.bits_allocated // 8)
        return length // 3 * 2 if self.photometric == "YBR_FULL_422" else length


def check_declared(declared: Declared, limits: Limits, path: str) -> None:
    """Refuse an image whose header asks for more pixels, frames or bytes than allowed."""
    if declared.frame_pixels > limits.max_frame_pixels:
        raise TooLargeError(
            f"the header declares {declared.rows} x {declared.columns} pixels per frame; "
            f"the limit is {limits.max_frame_pixels} ([limits] max_frame_pixels)",
            path,
        )
    if declared.frames > limits.max_frames:
        raise TooLargeError(
            f"the header declares {declared.frames} frames; "
            f"the limit is {limits.max_frames} ([limits] max_frames)",
            path,
        )
    if declared.decoded_bytes > limits.pixel_bytes:
        raise TooLargeError(
            f"the header declares {_mib(declared.decoded_bytes)} MiB of decoded pixels; "
            f"the limit is {limits.max_pixel_mib} MiB ([limits] max_pixel_mib)",
            path,
        )


def check_pixel_element(
    declared: Declared | None, length: int, available: int, path: str, *, native: bool
) -> None:
    """Refuse a Pixel Data element that runs past the end of the file, or that holds far
    more than the header declares (a header followed by a download's worth of zeros)."""
    if length > available:
        raise UnreadableError(f"pixel data is truncated: {available} of {length} bytes", path)
    if native and declared is not None:
        expected = declared.native_bytes
        if length - expected > max(expected, SLACK):
            raise UnreadableError(
                f"pixel data holds {length} bytes where the header declares {expected}; "
                "the file is damaged",
                path,
            )


def _mib(size: int) -> int:
    return -(-size // MIB)


# ---- reading: where to stop, and inflating deflated datasets ---------------------------


class PixelStop:
    """The `stop_when` of pydicom's reader (`when`): it notes where Pixel Data starts,
    stops there if asked, and stops where an element of zeros starts (a file padded with
    zeros would otherwise be parsed eight bytes at a time, for minutes).

    `when` is a plain function that looks further only at those few tags: pydicom calls
    it for every element of the file.
    """

    def __init__(self, fp: BinaryIO, *, before_pixels: bool) -> None:
        self.fp = fp
        self.before_pixels = before_pixels
        self.pixel: tuple[int, int] | None = None  # where its value starts, its length
        self.zeros = False

        def when(tag: int, vr: str | None, length: int) -> bool:
            return tag in _STOPS and self._stop(int(tag), length)

        self.when = when

    def _stop(self, tag: int, length: int) -> bool:
        if tag == 0:
            self.zeros = True
            return True
        if tag == _PIXEL_DATA:
            self.pixel = (self.fp.tell(), length)
        return self.before_pixels


def check_tail(fp: BinaryIO, size: int, path: str) -> None:
    """After a stop at an element of zeros: a little zero padding is let pass, anything
    more is refused without being read."""
    rest = size - fp.tell()
    if rest <= SLACK and not fp.read(rest).strip(b"\0"):
        return
    raise zeros_error(rest, path)


def zeros_error(rest: int, path: str) -> UnreadableError:
    return UnreadableError(
        f"{rest} bytes of zeros or damage follow the last element, as an interrupted "
        "download leaves; the file is damaged",
        path,
    )


_INPUT_STEP = 64 * 1024
_OUTPUT_STEP = 1 * MIB
# What a deflated dataset may inflate to whatever its ratio: a small image of zeros
# deflates a thousandfold and is no bomb. Counting this much costs about a tenth of a
# second and no memory.
INFLATE_ALLOWANCE = 32 * MIB


def count_inflated(fp: BinaryIO, limits: Limits, path: str) -> int:
    """Inflate the rest of `fp` into nothing and return how many bytes it makes; `fp` is
    left where it was.

    A deflated file can say truthfully that it holds gigabytes of pixels and hold them
    in a few megabytes of zeros: every check of the header passes, and reading it would
    take gigabytes and a minute. Real images inflate to well under a hundred times their
    deflated size, zeros to a thousand times, so the inflated bytes may be at most
    `limits.max_inflate_ratio` times the deflated bytes read so far, plus
    `INFLATE_ALLOWANCE`, and never more than `limits.max_header_mib +
    limits.max_pixel_mib`; past either the file is refused (TooLargeError) at once.
    Each step's output is dropped, so memory stays constant.
    """
    start = fp.tell()
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    cap = limits.header_bytes + limits.pixel_bytes
    read = inflated = 0
    while not inflater.eof:
        data = inflater.unconsumed_tail
        if not data:
            data = fp.read(_INPUT_STEP)
            read += len(data)
            if not data:
                break
        try:
            inflated += len(inflater.decompress(data, _OUTPUT_STEP))
        except zlib.error:
            raise UnreadableError("the deflated dataset is corrupt", path) from None
        deflated = read - len(inflater.unconsumed_tail) - len(inflater.unused_data)
        if inflated > limits.max_inflate_ratio * deflated + INFLATE_ALLOWANCE:
            raise TooLargeError(
                f"the deflated dataset inflates past {_mib(inflated)} MiB from "
                f"{_kib(deflated)} KiB ({inflated // max(deflated, 1)} times); the limit is "
                f"{limits.max_inflate_ratio} times plus {INFLATE_ALLOWANCE // MIB} MiB "
                "([limits] max_inflate_ratio)",
                path,
            )
        if inflated > cap:
            raise _past_cap(cap, path)
    fp.seek(start)
    return inflated


def _past_cap(cap: int, path: str) -> TooLargeError:
    return TooLargeError(
        f"the deflated dataset inflates past {_mib(cap)} MiB; the limit is "
        "[limits] max_header_mib + max_pixel_mib",
        path,
    )


def _kib(size: int) -> int:
    return -(-size // 1024)


def inflate(
    fp: BinaryIO,
    limits: Limits,
    path: str,
    header_end: Callable[[bytes], int | None],
    out: io.BytesIO,
) -> None:
    """Inflate the rest of `fp` into `out` (left at its start), refused as soon as it
    grows past what is allowed.

    `count_inflated` goes over the stream first, holding nothing, so a bomb is refused
    before any of it is kept. Inflation then goes in steps of at most a megabyte.
    `header_end(prefix)` tells, from the inflated bytes so far, the length the whole
    dataset may have (its header's declared pixel data, which it checks against
    `limits`), or None while it cannot tell yet; until it can, the header may grow to
    `limits.max_header_mib`. Nothing may exceed `limits.max_header_mib +
    limits.max_pixel_mib`. A dataset that does not fit in the memory a worker may use
    is refused as too large, not as an unexpected error.
    """
    count_inflated(fp, limits, path)
    try:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        cap = limits.header_bytes + limits.pixel_bytes
        allowed: int | None = None
        next_look = 64 * 1024
        while not inflater.eof:
            data = inflater.unconsumed_tail or fp.read(_INPUT_STEP)
            if not data:
                break
            try:
                out.write(inflater.decompress(data, _OUTPUT_STEP))
            except zlib.error:
                raise UnreadableError("the deflated dataset is corrupt", path) from None
            size = out.tell()
            if allowed is None and (
                size >= next_look or size > limits.header_bytes or inflater.eof
            ):
                with out.getbuffer() as view:
                    allowed = header_end(bytes(view))
                next_look = size * 2
            if allowed is not None and size > allowed + SLACK:
                raise UnreadableError(
                    f"the deflated dataset inflates past the {allowed} bytes its header "
                    "declares; the file is damaged or hostile",
                    path,
                )
            if allowed is None and size > limits.header_bytes:
                raise TooLargeError(
                    f"the deflated dataset inflates past {limits.max_header_mib} MiB before "
                    "its pixel data; the limit is [limits] max_header_mib",
                    path,
                )
            if size > cap:
                raise _past_cap(cap, path)
    except MemoryError:
        raise out_of_memory("the inflated dataset", path) from None
    out.seek(0)


# ---- a memory cap for worker processes ---------------------------------------------------


def apply_memory_cap(limits: Limits) -> bool:
    """Cap this process's address space at `limits.memory_cap_mib` (0: leave it).

    Meant for a batch worker's initializer: an allocation past the cap fails in that
    worker (numpy raises MemoryError; a native codec may abort) instead of driving the
    machine into swap, and the batch goes on with the next file. The hard limit is left
    as it is. Returns whether a cap was set; False also where the platform has no such
    limit.
    """
    if limits.memory_cap_mib <= 0:
        return False
    try:
        import resource
    except ImportError:
        return False
    cap = limits.memory_cap_mib * MIB
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return True


def _memory_cap() -> int | None:
    """The address-space cap of this process in bytes, or None where there is none."""
    try:
        import resource
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def out_of_memory(what: str, path: str) -> TooLargeError:
    """The refusal of a file whose `what` did not fit in memory: it names the worker's
    cap and the limit to raise where a cap is set (a MemoryError alone says neither)."""
    cap = _memory_cap()
    if cap is None:
        return TooLargeError(f"{what} does not fit in this machine's memory", path)
    return TooLargeError(
        f"{what} does not fit in the {cap // MIB} MiB a worker may use; "
        "the limit is [limits] memory_cap_mib",
        path,
    )
