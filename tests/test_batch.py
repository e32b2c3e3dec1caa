"""Batch runs: worker processes give what one process gives; one bad file stops nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_ct_dataset, safe_harbor_settings

from deid import batch, inputs
from deid.errors import ExitCode
from deid.manifest import Manifest, RunInfo
from deid.record import FileRecord
from deid.settings import Settings
from deid.stages import STAGES


def _settings(out: Path) -> Settings:
    return safe_harbor_settings(
        out, "test-batch", formats=frozenset({"dicom"}), tree=True, detect_text=False
    )


@pytest.fixture
def study(write_dicom: Callable[..., Path]) -> list[Path]:
    paths = []
    for index in range(6):
        ds = make_ct_dataset()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.3.4.{index + 1}"
        ds.InstanceNumber = index + 1
        paths.append(write_dicom(ds, f"IM{index}"))
    broken = paths[2].with_name("BROKEN")
    broken.write_bytes(paths[2].read_bytes()[:300])
    notes = paths[2].with_name("notes.txt")
    notes.write_text("not an image")
    return inputs.discover([paths[0].parent])


@pytest.mark.parametrize("jobs", [2, 3])
def test_workers_write_what_one_process_writes(
    tmp_path: Path, study: list[Path], jobs: int
) -> None:
    one = batch.run_paths(study, _settings(tmp_path / "one"), jobs=1)
    many = batch.run_paths(study, _settings(tmp_path / "many"), jobs=jobs)
    assert one.line() == many.line() == "8 files: 6 written, 1 skipped as not DICOM, 1 failed"
    assert one.exit_code == many.exit_code != 0

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    written = tree(tmp_path / "one")
    assert len(written) == 6
    assert written == tree(tmp_path / "many")
    assert {r.path for r in many.problems} == {
        str(study[0].with_name(n)) for n in ("BROKEN", "notes.txt")
    }


def _inputs(paths: list[Path]) -> list[batch.Input]:
    return [batch.Input(p, p.name, f"id-{p.name}") for p in paths]


def _outputs(root: Path) -> dict[str, float]:
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith("deid-manifest")
    }


def _manifest(out: Path) -> Manifest:
    out.mkdir(parents=True, exist_ok=True)
    return Manifest.open(out, RunInfo("safe-harbor", "sha256:x", "k-1", "given"))


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_interrupted_run_resumes_where_it_stopped(
    tmp_path: Path, study: list[Path], jobs: int
) -> None:
    out = tmp_path / "out"
    settings = _settings(out)
    seen: list[str] = []

    def stop_after_three(record: FileRecord) -> None:
        seen.append(record.input_id)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with _manifest(out) as manifest:
        first = batch.run(
            batch.plan(_inputs(study), manifest),
            settings,
            jobs=jobs,
            manifest=manifest,
            on_result=stop_after_three,
        )
        assert first.interrupted and first.exit_code == ExitCode.INTERRUPTED
        assert set(manifest.finished()) | {
            r.input_id for r in manifest.records() if r.status == "failed"
        } == set(seen)
    written_before = _outputs(out)
    assert not list(out.rglob(".deid-partial*"))

    with _manifest(out) as manifest:
        work = batch.plan(_inputs(study), manifest)
        assert work.done_before == len(set(seen) & set(manifest.finished()))
        second = batch.run(work, settings, jobs=jobs, manifest=manifest)
        assert not second.interrupted
        assert len(list(manifest.records())) == len(study)
    after = _outputs(out)
    assert len(after) == 6
    assert all(after[name] == mtime for name, mtime in written_before.items())


def test_copies_of_an_input_are_duplicates_not_failures(tmp_path: Path, study: list[Path]) -> None:
    first = next(p for p in study if p.name == "IM0")
    copy = first.with_name("COPY_OF_IM0")
    copy.write_bytes(first.read_bytes())
    out = tmp_path / "out"
    with _manifest(out) as manifest:
        summary = batch.run(
            batch.plan(_inputs([first, copy]), manifest), _settings(out), manifest=manifest
        )
        assert (
            summary.line() == "2 files: 1 written, 1 duplicates, 0 skipped as not DICOM, 0 failed"
        )
        assert summary.exit_code == ExitCode.OK
        records = {r.input_id: r for r in manifest.records()}
    assert records["id-COPY_OF_IM0"].status == "duplicate"
    assert records["id-COPY_OF_IM0"].duplicate_of == "id-IM0"
    with _manifest(out) as manifest:
        third = first.with_name("THIRD_COPY")
        third.write_bytes(first.read_bytes())
        work = batch.plan(_inputs([first, copy, third]), manifest)
    assert work.done_before == 2 and not work.todo
    assert [r.duplicate_of for r in work.duplicates] == ["id-IM0"]


def test_records_time_every_stage_and_name_actions_not_values(
    tmp_path: Path, study: list[Path]
) -> None:
    summary_records: list[FileRecord] = []
    batch.run_paths(
        [p for p in study if p.name == "IM0"],
        _settings(tmp_path / "o"),
        on_result=summary_records.append,
    )
    (record,) = summary_records
    assert record.status == "written" and record.digest.startswith("sha256:")
    assert set(record.seconds) == {stage.name for stage in STAGES}
    assert {"path": "PatientName", "action": "pseudonymize"} in [
        {"path": a.path, "action": a.action} for a in record.actions
    ]
    assert "DOE" not in str(record.stored())
