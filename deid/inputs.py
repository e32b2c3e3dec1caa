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
    return [path for path, _ in discover_named(inputs, out_dir)]


def discover_named(
    inputs: Iterable[Path], out_dir: Path | None = None, refused: list[str] | None = None
) -> list[tuple[Path, str]]:
    """Every input file with the name messages show for it.

    The name is the path relative to the folder given on the command line (a file given
    itself is named by its file name): folders above it on a patient's disc often carry
    the patient's name, and they are nobody's business in a log. Links to folders are
    not followed (no loops), and a link to a file outside the folder given is not read:
    its name goes to `refused`, if given.
    """
    skip = out_dir.resolve() if out_dir is not None else None
    found: list[tuple[Path, str]] = []
    for item in inputs:
        if not item.exists():
            raise UsageError(f"input not found: {shown(item.name or str(item))}")
        if item.is_file():
            found.append((item, shown(item.name)))
            continue
        root_real = item.resolve()
        for root, dirs, files in os.walk(item):
            here = Path(root)
            dirs[:] = sorted(d for d in dirs if skip is None or (here / d).resolve() != skip)
            for name in sorted(files):
                if name.startswith(TEMP_PREFIX):
                    continue
                path = here / name
                shown_name = shown(path.relative_to(item).as_posix())
                if path.is_symlink() and not path.resolve().is_relative_to(root_real):
                    if refused is not None:
                        refused.append(shown_name)
                    continue
                found.append((path, shown_name))
    return found


def shown(name: str) -> str:
    """A name safe to print: control characters escaped, so no name can forge a line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
