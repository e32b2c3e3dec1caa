"""Writing: PNG and DICOM outputs, named by pseudonyms, committed all at once.

Every output of one input is first written under a temporary name in its final folder;
only when all are complete are they renamed into place, without replacing an existing
file unless asked. A failure removes what was written, so no partial output is left.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmwrite
from pydicom.dataset import Dataset

from deid.errors import OutputExistsError

TEMP_PREFIX = ".deid-partial-"


def png_bytes(image: np.ndarray, *, compress_level: int = 1, max_size: int = 0) -> bytes:
    """Encode a rendered uint8 image as PNG with no text, EXIF or time chunks.

    zlib level 1 is the default on purpose: on 512x512 CT it is several times faster
    than Pillow's default level for files only slightly larger.
    """
    picture = Image.fromarray(image)
    if max_size and max(picture.size) > max_size:
        picture.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def dicom_bytes(ds: Dataset) -> bytes:
    """Serialize a dataset as a DICOM Part 10 file."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


@dataclass
class Transaction:
    """The outputs of one input: all of them land, or none does."""

    overwrite: bool = False
    pending: list[tuple[Path, Path]] = field(default_factory=list)

    def add(self, path: Path, data: bytes) -> None:
        """Write `data` under a temporary name beside `path`."""
        if not self.overwrite and path.exists():
            self.abort()
            raise OutputExistsError(
                f"output exists: {path} (give --overwrite to replace it)", str(path)
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(6)}-{path.name}")
        try:
            with temp.open("xb") as f:
                f.write(data)
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


def _link_no_clobber(temp: Path, path: Path) -> None:
    try:
        os.link(temp, path)
    except FileExistsError:
        raise OutputExistsError(
            f"output exists: {path} (give --overwrite to replace it)", str(path)
        ) from None
    except OSError:
        if path.exists():
            raise OutputExistsError(
                f"output exists: {path} (give --overwrite to replace it)", str(path)
            ) from None
        os.replace(temp, path)
        return
    temp.unlink()


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
) -> dict[str, Path | list[Path]]:
    """Paths for every output of one instance; nothing comes from the input's name."""
    folder = out_dir / patient / study / series if tree else out_dir
    pngs = [
        folder / (f"{instance}.png" if frame_count == 1 else f"{instance}-f{i + 1:04d}.png")
        for i in frames
    ]
    return {
        "dicom": folder / f"{instance}.dcm",
        "png": pngs,
        "context": folder / f"{instance}.txt",
    }
