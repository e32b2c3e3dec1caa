"""One key file, the same outputs byte for byte: locally, on 1 or 4 Dask workers, in any
order, resumed or not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom import dcmread
from typer.testing import CliRunner

from deid import batch, inputs, keys, outfolder, profiles
from deid.cli import app
from deid.manifest import MANIFEST_NAME, Manifest
from deid.record import FileRecord
from deid.settings import Settings
from tests.conftest import write_series

pytest.importorskip("distributed")

runner = CliRunner()
COMMON = ("--format", "dicom", "--layout", "tree", "-q")


@pytest.fixture
def study(tmp_path: Path, burned_in_file: Path) -> Path:
    """Two series of one patient and a radiograph with a name burned in."""
    root = tmp_path / "DOE_JOHN"
    write_series(root / "SERIES1", 4, size=128)
    for number, path in enumerate(write_series(root / "SERIES2", 2, size=96)):
        ds = dcmread(path)
        ds.SeriesInstanceUID = f"{ds.SeriesInstanceUID}.2"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = (
            f"{ds.SOPInstanceUID}.2{number}"
        )
        ds.save_as(path, enforce_file_format=True)
    shutil.copy(burned_in_file, root / "XRAY")
    return root


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "study.key"
    path.parent.mkdir()
    keys.write_key_file(path)
    return path


def anonymize(*args: str | Path) -> None:
    result = runner.invoke(app, ["anonymize", *(str(a) for a in args)])
    assert result.exit_code == 0, result.output


def dicom_outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.dcm"))}


def interrupted_then_resumed(study: Path, out: Path, key_file: Path) -> None:
    """Stop a run after two files, as Ctrl-C does, then run the command again."""
    profile = profiles.load("safe-harbor")
    outfolder.prepare(out, [study])
    pseudo, manifest = outfolder.open_run(out, profile, None, keys.read_key_file(key_file))
    settings = Settings.for_profile(
        profile, pseudo.key, out, formats=frozenset({"dicom"}), tree=True
    )
    items = [
        batch.Input(path, name, pseudo.digest("input", name).hex()[:20])
        for path, name in inputs.discover_named([study], out)
    ]
    done: list[FileRecord] = []

    def stop_after_two(record: FileRecord) -> None:
        done.append(record)
        if len(done) == 2:
            raise KeyboardInterrupt

    with manifest:
        summary = batch.run(
            batch.plan(items, manifest), settings, manifest=manifest, on_result=stop_after_two
        )
    assert summary.interrupted
    with Manifest.read(out) as kept:
        assert len(kept.finished()) == 2
    result = runner.invoke(
        app, ["anonymize", str(study), "--out", str(out), "--key-file", str(key_file), *COMMON[:-1]]
    )
    assert result.exit_code == 0 and "resuming: 2 of 7 inputs were done before" in result.output


def test_one_key_gives_the_same_outputs_however_the_run_is_made(
    tmp_path: Path, study: Path, key_file: Path
) -> None:
    runs = tmp_path / "runs"
    reversed_files = sorted((p for p in study.rglob("*") if p.is_file()), reverse=True)
    anonymize(study, "--out", runs / "local-1", "--key-file", key_file, "-j", "1", *COMMON)
    anonymize(study, "--out", runs / "local-2", "--key-file", key_file, "-j", "2", *COMMON)
    anonymize(*reversed_files, "--out", runs / "reversed", "--key-file", key_file, *COMMON)
    for workers in (1, 4):
        anonymize(
            study,
            "--out",
            runs / f"dask-{workers}",
            "--key-file",
            key_file,
            "--scheduler",
            f"local:{workers}",
            *COMMON,
        )
    interrupted_then_resumed(study, runs / "resumed", key_file)

    reference = dicom_outputs(runs / "local-1")
    assert len(reference) == 7
    for made in ("local-2", "reversed", "dask-1", "dask-4", "resumed"):
        assert dicom_outputs(runs / made) == reference, made
    ids = set()
    for made in runs.iterdir():
        with Manifest.read(made) as manifest:
            ids.add(manifest.info.key_id)
    assert ids == {keys.key_id(keys.read_key_file(key_file))}
    assert all((runs / made / MANIFEST_NAME).is_file() for made in ("dask-1", "resumed"))
