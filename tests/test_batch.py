"""Batch runs: worker processes give what one process gives; one bad file stops nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_ct_dataset, safe_harbor_settings

from deid import batch, inputs, pipeline


def _settings(out: Path) -> pipeline.Settings:
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
    one = batch.run(study, _settings(tmp_path / "one"), jobs=1)
    many = batch.run(study, _settings(tmp_path / "many"), jobs=jobs)
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
