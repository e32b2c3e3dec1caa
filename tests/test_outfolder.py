"""The output folder: checked before the first file, bound to one profile and key."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import write_series
from typer.testing import CliRunner

from deid import batch, keys, outfolder, profiles
from deid.cli import app
from deid.errors import DeidError, DiskFullError, ExitCode, UsageError
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


def refusing(number: int) -> Callable[[Path], None]:
    """A write probe that meets what the operating system says of a folder it cannot
    write: a read-only mount (EROFS) refuses root too."""

    def probe(out_dir: Path) -> None:
        raise OSError(number, os.strerror(number), str(out_dir / "probe"))

    return probe


@pytest.mark.parametrize(
    ("number", "error", "words"),
    [
        (errno.EACCES, UsageError, "the output folder is read-only; give one you can write"),
        (errno.EPERM, UsageError, "the output folder is read-only; give one you can write"),
        (errno.EROFS, UsageError, "the output folder is read-only; give one you can write"),
        (errno.ENOSPC, DiskFullError, "the disk holding the output folder is full"),
        (errno.EIO, UsageError, "cannot write in the output folder: Input/output error"),
    ],
)
def test_an_output_folder_that_cannot_be_written_is_refused_as_root_too(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    number: int,
    error: type[DeidError],
    words: str,
) -> None:
    monkeypatch.setattr(outfolder, "probe_writable", refusing(number))
    out = tmp_path / "out"
    with pytest.raises(error) as caught:
        outfolder.prepare(out, [tmp_path / "in"])
    assert type(caught.value) is error
    assert str(caught.value) == f"{out}: {words}"


def test_a_read_only_output_folder_is_a_usage_error_before_the_first_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in"
    write_series(source, 2)
    read: list[Path] = []
    monkeypatch.setattr(batch, "process", lambda path, *a, **k: read.append(path))
    monkeypatch.setattr(outfolder, "probe_writable", refusing(errno.EROFS))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["anonymize", str(source), "--out", str(out), "-j", "1"])
    assert result.exit_code == ExitCode.USAGE, result.output
    lines = set(result.output.strip().splitlines())
    assert lines == {f"error: {out}: the output folder is read-only; give one you can write"}
    assert read == [] and list(out.iterdir()) == []


def test_the_write_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "out"
    outfolder.prepare(out, [tmp_path / "in"])
    outfolder.prepare(out, [tmp_path / "in"])
    assert list(out.iterdir()) == []


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
