"""Finding the input files: folders walked in a stable order, the output folder left out.

Whether a file is DICOM is decided later by its content. An output folder inside an input
folder is never read back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from deid.errors import UsageError
from deid.output import TEMP_PREFIX


def discover(inputs: Iterable[Path], out_dir: Path | None = None) -> list[Path]:
    """Every regular file under the inputs, sorted, without the output folder's files."""
    skip = out_dir.resolve() if out_dir is not None else None
    found: list[Path] = []
    for item in inputs:
        if not item.exists():
            raise UsageError(f"input not found: {item}")
        if item.is_file():
            found.append(item)
            continue
        for root, dirs, files in os.walk(item):
            here = Path(root)
            dirs[:] = sorted(d for d in dirs if skip is None or (here / d).resolve() != skip)
            found.extend(here / name for name in sorted(files) if not name.startswith(TEMP_PREFIX))
    return found
