"""Pseudonym keys: where they come from, how they are named, where a run's own one is kept.

A key that lasts is a file made by `deid keygen`: 256 random bits, mode 0600, kept
apart from the images (never inside an input or output folder, which get copied and
shared). `--key-file` refuses one that others can read. A passphrase (`--key`,
`DEID_KEY`) is derived into a key each time. Without either, a run draws a random key
so its pseudonyms cannot be linked to any other run's; that key is kept, mode 0600, in
the user's state folder under the output folder's run id, so a killed run can resume
with the same pseudonyms. Records and reports name a key only by its id.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

from deid.errors import UsageError
from deid.manifest import MANIFEST_NAME
from deid.reader import sniff

KEY_BYTES = 32
_FORMAT = "deid-key-v1"


def key_id(key: bytes) -> str:
    """A short public name for a key: a hash that cannot be turned back into it."""
    return "k-" + hashlib.sha256(b"deid-key-id\0" + key).hexdigest()[:12]


def state_dir() -> Path:
    """Where a run's random keys are kept: `$XDG_STATE_HOME/deid/run-keys`."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "deid" / "run-keys"


def save_run_key(run_id: str, key: bytes) -> None:
    """Keep a run's random key for its resumption, readable by the user alone."""
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{run_id}.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)


def load_run_key(run_id: str) -> bytes | None:
    """The random key of a run, if this user's state folder still has it."""
    try:
        return (state_dir() / f"{run_id}.key").read_bytes()
    except OSError:
        return None


def write_key_file(path: Path) -> str:
    """Write a new random key to `path`, mode 0600; return its id.

    Refuses an existing file (replacing a key unlinks every pseudonym made with it) and a
    folder that holds images or a run's outputs.
    """
    if path.exists() or path.is_symlink():
        raise UsageError(
            "a file is already there; a key is never replaced (remove it first if you mean it)",
            str(path),
        )
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError("no such folder for the key file", str(path))
    refuse_image_folder(folder.resolve(), str(path))
    key = secrets.token_bytes(KEY_BYTES)
    text = f"# {_FORMAT} {key_id(key)}: keep secret, keep a copy\n{key.hex()}\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot write the key file: {exc.strerror}", str(path)) from None
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)
    return key_id(key)


def read_key_file(path: Path, folders: Sequence[Path] = ()) -> bytes:
    """The key in a file made by `deid keygen`, refused if others can read it or it lies
    inside one of `folders` (the run's inputs and output)."""
    where = str(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise UsageError(f"cannot read the key file: {exc.strerror}", where) from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError("the key file is not a regular file", where)
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise UsageError(
            f"the key file can be read by others (mode {mode:04o}); make it yours alone: chmod 600",
            where,
        )
    resolved = path.resolve()
    for folder in folders:
        if resolved.is_relative_to(folder.resolve()):
            raise UsageError(
                "the key file lies inside an input or output folder, which get copied and "
                "shared; move it elsewhere",
                where,
            )
    lines = [
        line.strip()
        for line in path.read_text("ascii", errors="replace").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    try:
        key = bytes.fromhex(lines[0]) if len(lines) == 1 else b""
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise UsageError("not a deid key file (make one with: deid keygen KEYFILE)", where)
    return key


def refuse_image_folder(folder: Path, where: str) -> None:
    """Refuse a folder inside a run's output, or one that (or whose parent) holds DICOM.

    Only files directly in the folder and its parent are looked at: a home or download
    folder with a scan somewhere in it is no image folder. The run itself refuses a key
    file inside any of its inputs (`read_key_file`).
    """
    for above in (folder, *folder.parents):
        if (above / MANIFEST_NAME).is_file():
            raise UsageError(
                "that folder is inside a de-identified output folder, which gets shared; "
                "keep the key elsewhere",
                where,
            )
    for above in (folder, folder.parent):
        if _holds_dicom(above):
            raise UsageError(
                "that folder holds DICOM files, which get copied and shared; "
                "keep the key elsewhere",
                where,
            )


def _holds_dicom(folder: Path, most: int = 200) -> bool:
    """Whether one of the first `most` files directly in `folder` is DICOM or a DICOMDIR."""
    try:
        names = sorted(os.listdir(folder))[:most]
    except OSError:
        return False
    for name in names:
        path = folder / name
        if name.upper() == "DICOMDIR" or (path.is_file() and sniff(path)):
            return True
    return False
