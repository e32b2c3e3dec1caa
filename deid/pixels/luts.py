"""DICOM lookup tables: Modality and VOI LUTs, and the RGB palette of PALETTE COLOR.

Read leniently, as viewers do: 8-bit data in OW, first-mapped values read with the
wrong sign, 0 entries meaning 65536, 16-bit palettes holding 8-bit colours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut

from deid.pixels.frames import Array, transfer_syntax

__all__ = ["Palette", "first_lut", "load_palette"]


@dataclass(frozen=True)
class _Lut:
    """A DICOM lookup table: values below `first` map to entry 0, above the end to the last."""

    first: int
    table: Array
    bits: int

    def apply(self, values: Array) -> Array:
        index = np.rint(values).astype(np.int64) - self.first
        return np.asarray(self.table[np.clip(index, 0, len(self.table) - 1)])


def first_lut(ds: Dataset, keyword: str) -> _Lut | None:
    items = ds.get(keyword)
    if not items:
        return None
    item = items[0]
    descriptor, data = item.get("LUTDescriptor"), item.get("LUTData")
    if descriptor is None or data is None:
        return None
    return _make_lut(descriptor, data, _little_endian(ds))


def _make_lut(descriptor: Any, data: Any, little_endian: bool) -> _Lut | None:
    """Build a LUT from a descriptor (entries, first mapped, bits) and its data.

    Data may be US values or OW bytes; OW holding exactly one byte per entry is 8-bit.
    The first-mapped value may have been read as US when it is really SS, or vice versa;
    entries of 0 mean 65536.
    """
    parsed = _descriptor(descriptor)
    if parsed is None:
        return None
    entries, first, bits = parsed
    if isinstance(data, bytes | bytearray):
        width = 1 if len(data) in (entries, entries + 1) else 2
        dtype = np.dtype("u1") if width == 1 else np.dtype("<u2" if little_endian else ">u2")
        table = np.frombuffer(data[: len(data) - len(data) % width], dtype=dtype)
    elif isinstance(data, int):
        table = np.array([data])
    else:
        table = np.asarray(list(data))
    table = table[:entries].astype(np.int64)
    if table.size == 0:
        return None
    return _Lut(first, table, bits)


def _descriptor(descriptor: Any) -> tuple[int, int, int] | None:
    """LUT Descriptor as (entries, first mapped value, bits); 0 or SS-negative entries fixed."""
    try:
        entries, first, bits = (int(v) for v in list(descriptor)[:3])
    except (TypeError, ValueError):
        return None
    if entries <= 0:
        entries += 1 << 16
    return entries, first, bits


def _little_endian(ds: Dataset) -> bool:
    uid = transfer_syntax(ds)
    return bool(uid.is_little_endian) if uid.is_transfer_syntax else True


@dataclass(frozen=True)
class Palette:
    """8-bit RGB colours indexed by stored value minus `first`."""

    first: int
    table: Array


def load_palette(ds: Dataset) -> Palette | None:
    """Red/green/blue palette LUTs as one (entries, 3) uint8 table.

    pydicom's `apply_color_lut` is used only for segmented palettes: for plain ones it
    indexes through a uint8 array, which wraps for 8-bit palettes with over 256 entries.
    16-bit palettes whose entries all fit in 8 bits (a common encoder mistake) are read
    as 8-bit.
    """
    descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
    parsed = None if descriptor is None else _descriptor(descriptor)
    if parsed is None:
        return None
    entries, first, _ = parsed
    little = _little_endian(ds)
    channels: list[Array] = []
    if "RedPaletteColorLookupTableData" in ds:
        for colour in ("Red", "Green", "Blue"):
            data = ds.get(f"{colour}PaletteColorLookupTableData")
            lut = None if data is None else _make_lut(descriptor, data, little)
            if lut is None:
                return None
            channels.append(lut.table)
        if len({c.size for c in channels}) != 1:
            return None
        table = np.stack(channels, axis=-1)
    elif "SegmentedRedPaletteColorLookupTableData" in ds:
        try:
            table = apply_color_lut(np.arange(first, first + entries), ds)[..., :3]
        except (ValueError, AttributeError, IndexError):
            return None
        table = table.astype(np.int64)
    else:
        return None
    if table.max() > 255:
        table = table >> 8
    return Palette(first, table.astype(np.uint8))
