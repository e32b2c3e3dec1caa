"""Pseudonym keys: where they come from, how they are named, where a run's own one is kept.

A key given by the user (`--key`, `DEID_KEY`) is derived from the passphrase each time.
Without one, a run draws a random key so its pseudonyms cannot be linked to any other
run's; that key is kept, mode 0600, in the user's state folder (never in the output
folder, which is shared) under the output folder's run id, so a killed run can resume
with the same pseudonyms. Records and reports name a key only by its id.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


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
