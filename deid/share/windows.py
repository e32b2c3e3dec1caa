"""Display windows: which window a shared slice is shown in, as a viewer would show it.

A CT chest is read in the lung and the mediastinum window, a CT head in the brain and
the bone window; other modalities have no absolute scale, so they are shown in the
file's own window (VOI LUT, else Window Center/Width), else a percentile window. The
presets and the defaults per body part are `deid/data/window_presets.toml`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from deid.errors import UsageError
from deid.pixels import RenderOptions, render

__all__ = ["AUTO", "WINDOW_CHOICES", "Window", "choose", "names", "options", "render_window"]

AUTO = "auto"


@dataclass(frozen=True)
class Window:
    """A display window: a named preset (center and width in Hounsfield units), or the
    file's own / automatic window when `center` and `width` are None.

    `name` is also the label drawn on the image ("lung", "soft-tissue" shown as "soft
    tissue"; an automatic window of an MR head is named "brain"). `note` says why the
    window differs from the one asked for (a CT preset asked for an MR), else None.
    """

    name: str
    center: float | None
    width: float | None
    note: str | None = None

    @property
    def automatic(self) -> bool:
        """True for the file's own window (or a percentile window)."""
        return self.center is None or self.width is None

    @property
    def value(self) -> tuple[float, float] | None:
        """(center, width) for `RenderOptions.window`; None for an automatic window."""
        if self.center is None or self.width is None:
            return None
        return (self.center, self.width)

    @property
    def label(self) -> str:
        """The words drawn on the image: the name, a hyphen read as a space."""
        return self.name.replace("-", " ")


@dataclass(frozen=True)
class _Table:
    presets: dict[str, Window]
    hounsfield: frozenset[str]
    ct_default: tuple[str, ...]
    ct_parts: dict[str, tuple[str, ...]]
    auto_labels: dict[str, str]


@cache
def _table() -> _Table:
    raw = (resources.files("deid") / "data" / "window_presets.toml").read_text("utf-8")
    data: dict[str, Any] = tomllib.loads(raw)
    presets = {
        str(name): Window(str(name), float(entry["center"]), float(entry["width"]))
        for name, entry in data["presets"].items()
    }
    ct = data["ct"]
    table = _Table(
        presets=presets,
        hounsfield=frozenset(str(m).upper() for m in data["hounsfield"]["modalities"]),
        ct_default=tuple(str(n) for n in ct["default"]),
        ct_parts={_part_key(k): tuple(str(n) for n in v) for k, v in ct["parts"].items()},
        auto_labels={_part_key(k): str(v) for k, v in data["auto"]["labels"].items()},
    )
    named = [*table.ct_default, *(n for names in table.ct_parts.values() for n in names)]
    unknown = sorted(set(named) - set(presets))
    if unknown:  # a broken data file is a bug of the program, caught by the tests
        raise ValueError(f"window_presets.toml: [ct] names unknown presets {unknown}")
    return table


def _part_key(part: str | None) -> str:
    """A body part as the table compares it: upper case, letters and digits only."""
    return re.sub(r"[^A-Z0-9]", "", (part or "").upper())


def names() -> list[str]:
    """Every window name `choose` accepts: auto, then the presets in file order."""
    return [AUTO, *_table().presets]


WINDOW_CHOICES: tuple[str, ...] = tuple(names())
"""What `--window` accepts: "auto" and every preset of the data file."""


def choose(modality: str | None, body_part: str | None, wanted: str = AUTO) -> list[Window]:
    """The windows to show a series in, in the order a radiologist reads them.

    `wanted` is "auto" (the defaults of the data file: for CT by body part, else the
    file's own window) or a preset name (case and `_`/`-`/space insensitive). A preset
    asked for an image whose values are not Hounsfield units gives the file's own
    window, with a `note` saying so. An unknown name raises UsageError listing the
    valid ones.
    """
    table = _table()
    key = re.sub(r"[\s_]+", "-", wanted.strip().lower())
    if key != AUTO and key not in table.presets:
        raise UsageError(f"unknown window {wanted!r}; choose one of: {', '.join(names())}")
    hounsfield = (modality or "").strip().upper() in table.hounsfield
    part = _part_key(body_part)
    if hounsfield:
        if key != AUTO:
            return [table.presets[key]]
        chosen = table.ct_parts.get(part, table.ct_default)
        return [table.presets[name] for name in chosen]
    label = table.auto_labels.get(part, AUTO)
    note = None
    if key != AUTO:
        shown = (modality or "").strip().upper() or "this image"
        note = (
            f"the {key} window is in Hounsfield units, for CT only; "
            f"{shown} is shown in its own window"
        )
    return [Window(label, None, None, note)]


def options(window: Window, base: RenderOptions | None = None) -> RenderOptions:
    """Render options that show `window`: the preset's center and width, or `base` (the
    file's own window, else percentiles) for an automatic window."""
    base = base or RenderOptions()
    if window.center is None or window.width is None:
        return replace(base, window=None)
    return replace(base, window=(window.center, window.width))


def render_window(ds: Dataset, frame: np.ndarray, window: Window) -> np.ndarray:
    """One frame of stored values shown in `window`: the uint8 image a viewer shows."""
    return render(ds, frame, options(window))
