"""The output folder of a run: checked before the first file, then bound to its manifest.

An output folder that cannot be written, or that is an input folder, stops the run
before any file is read. A folder that already holds a run is resumed if the profile
and key match, and refused if they do not.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from deid import keys
from deid.errors import DiskFullError, UsageError
from deid.inputs import shown
from deid.manifest import MANIFEST_NAME, Manifest, RunInfo
from deid.output import TEMP_PREFIX
from deid.profiles import Profile
from deid.pseudonym import Pseudonymizer


def prepare(out_dir: Path, inputs: Sequence[Path]) -> None:
    """Make the output folder, or say in one line why it cannot be used."""
    target = out_dir.resolve()
    where = shown(str(out_dir))
    for item in inputs:
        if item.is_dir() and item.resolve() == target:
            raise UsageError(
                "--out is an input folder: outputs would be read back as inputs; "
                "give a folder of its own"
            )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError("--out names a file, not a folder", where) from None
    except NotADirectoryError:
        raise UsageError("--out lies under a file, not a folder", where) from None
    except PermissionError:
        raise UsageError("cannot create the output folder: permission denied", where) from None
    except OSError as exc:
        raise UsageError(
            f"cannot create the output folder: {exc.strerror or type(exc).__name__}", where
        ) from None
    try:
        probe_writable(out_dir)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise UsageError(
                "the output folder is read-only; give one you can write", where
            ) from None
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError("the disk holding the output folder is full", where) from None
        raise UsageError(
            f"cannot write in the output folder: {exc.strerror or type(exc).__name__}", where
        ) from None


def probe_writable(out_dir: Path) -> None:
    """Create and remove an empty file in `out_dir`; raises the `OSError` of a folder
    that cannot be written.

    Only a write tells: `os.access` says yes to root in a folder without write
    permission, and root cannot write on a read-only mount either. The probe's name
    is a temporary one, swept if a run dies before removing it and never read as input.
    """
    probe = out_dir / f"{TEMP_PREFIX}probe-{secrets.token_hex(4)}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    probe.unlink()


def profile_digest(profile: Profile) -> str:
    """A digest of the profile files a run used, in the order they were applied."""
    sha = hashlib.sha256()
    for source in profile.sources:
        sha.update(Path(source).read_bytes())
        sha.update(b"\0")
    return "sha256:" + sha.hexdigest()


def open_run(
    out_dir: Path,
    profile: Profile,
    passphrase: str | None,
    file_key: bytes | None = None,
) -> tuple[Pseudonymizer, Manifest]:
    """The key and the manifest of a run into `out_dir`.

    A key read from a key file (`keys.read_key_file`) or a passphrase gives the key.
    Without either, a folder made by an earlier keyless run gets that run's kept key back
    (so a resumed run names its outputs the same way); a new folder gets a fresh random
    key, kept for resuming.
    """
    if file_key is not None and passphrase is not None:
        raise UsageError("give --key-file or --key, not both")
    if file_key is not None:
        pseudo, kind = Pseudonymizer(file_key), "file"
    elif passphrase is not None:
        try:
            pseudo, kind = Pseudonymizer.from_passphrase(passphrase), "given"
        except ValueError as exc:
            raise UsageError(f"--key: {exc}") from None
    else:
        pseudo = Pseudonymizer(_earlier_random_key(out_dir) or secrets.token_bytes(32))
        kind = "random"
    info = RunInfo(
        profile=profile.name,
        profile_digest=profile_digest(profile),
        key_id=keys.key_id(pseudo.key),
        key_kind=kind,
    )
    manifest = Manifest.open(out_dir, info)
    if kind == "random":
        keys.save_run_key(manifest.info.run_id, pseudo.key)
    return pseudo, manifest


def _earlier_random_key(out_dir: Path) -> bytes | None:
    if not (out_dir / MANIFEST_NAME).is_file():
        return None
    with Manifest.read(out_dir) as manifest:
        info = manifest.info
    if info.key_kind != "random":
        raise UsageError(
            f"the output folder was made with the key {info.key_id}: "
            "give the same --key-file (or --key) to resume, or a new --out folder"
        )
    key = keys.load_run_key(info.run_id)
    if key is None:
        raise UsageError(
            "the output folder was made with a random key that this machine no longer "
            "keeps: give a new --out folder (use --key-file to make runs resumable anywhere)"
        )
    return key


def sweep_partials(out_dir: Path) -> int:
    """Remove the temporary files of outputs a stopped run left unfinished; how many.

    A run writes each output under a temporary name and renames it when the whole set is
    written; one killed between the two (a signal, a power cut) leaves the temporary.
    """
    removed = 0
    for root, _, files in os.walk(out_dir):
        for name in files:
            if name.startswith(TEMP_PREFIX):
                (Path(root) / name).unlink(missing_ok=True)
                removed += 1
    return removed
