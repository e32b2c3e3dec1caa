"""The output folder: checked before the first file, bound to one profile and key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from deid import keys, outfolder, profiles
from deid.errors import UsageError
from deid.output import TEMP_PREFIX


@pytest.mark.parametrize("case", ["input", "file", "under-file"])
def test_unusable_output_folders_are_refused(tmp_path: Path, case: str) -> None:
    source = tmp_path / "in"
    source.mkdir()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = {"input": source, "file": blocker, "under-file": blocker / "out"}[case]
    with pytest.raises(UsageError):
        outfolder.prepare(out, [source])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir(mode=0o500)
    with pytest.raises(UsageError, match="read-only"):
        outfolder.prepare(out, [tmp_path / "in"])


def test_keyless_runs_resume_with_their_own_kept_key(tmp_path: Path) -> None:
    profile = profiles.load("safe-harbor")
    first, manifest = outfolder.open_run(tmp_path, profile, None)
    run_id = manifest.info.run_id
    manifest.close()
    again, manifest = outfolder.open_run(tmp_path, profile, None)
    manifest.close()
    assert again.key == first.key
    kept = keys.state_dir() / f"{run_id}.key"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.key"))
    assert first.key not in (tmp_path / "deid-manifest.sqlite").read_bytes()


def test_a_keyless_folder_needs_its_key_and_a_keyed_one_its_passphrase(tmp_path: Path) -> None:
    profile = profiles.load("safe-harbor")
    for name in ("keyless", "keyed"):
        (tmp_path / name).mkdir()
    _, manifest = outfolder.open_run(tmp_path / "keyless", profile, None)
    manifest.close()
    for kept in keys.state_dir().glob("*.key"):
        kept.unlink()
    with pytest.raises(UsageError, match="random key"):
        outfolder.open_run(tmp_path / "keyless", profile, None)
    _, manifest = outfolder.open_run(tmp_path / "keyed", profile, "secret")
    manifest.close()
    with pytest.raises(UsageError, match="same --key"):
        outfolder.open_run(tmp_path / "keyed", profile, None)
    with pytest.raises(UsageError, match="key"):
        outfolder.open_run(tmp_path / "keyed", profile, "other secret")


def test_a_stopped_runs_temporary_files_are_swept_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "P" / "S").mkdir(parents=True)
    kept = tmp_path / "P" / "S" / "IM1.dcm"
    kept.write_bytes(b"whole")
    (tmp_path / "P" / "S" / f"{TEMP_PREFIX}ab12-IM2.dcm").write_bytes(b"half")
    (tmp_path / f"{TEMP_PREFIX}cd34-IM3.png").write_bytes(b"half")
    assert outfolder.sweep_partials(tmp_path) == 2
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [kept]
