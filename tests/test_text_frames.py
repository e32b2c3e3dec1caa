"""The text search inside the pipeline: frames, ultrasound regions, the DICOM output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from conftest import PHI, ct_slice, draw_text, make_dataset, safe_harbor_settings
from pydicom import dcmread
from pydicom.dataset import Dataset

from deid import pipeline, verify
from deid.record import FileRecord
from deid.settings import Settings
from deid.text import TextPolicy


def settings(out_dir: Path) -> Settings:
    return safe_harbor_settings(out_dir, "test-frames", formats=frozenset({"dicom"}))


def written_frames(result: FileRecord) -> np.ndarray:
    (dicom,) = [p for p in result.outputs if p.endswith(".dcm")]
    return np.asarray(dcmread(dicom).pixel_array)


def test_text_in_frame_two_is_covered_in_frame_two_only(
    write_dicom: Callable[..., Path], tmp_path: Path
) -> None:
    plain = ct_slice()
    marked, ink = draw_text(plain, [("DOE, JOHN", (30, 20), 18, 255)])
    frames = np.stack([plain, marked, plain])
    ds = make_dataset(frames, sop_class="1.2.840.10008.5.1.4.1.1.12.1", modality="XA")
    ds.NumberOfFrames = 3
    result = pipeline.process(write_dicom(ds, "xa.dcm"), settings(tmp_path / "out"))
    assert result.status == "written", result.reason
    out = written_frames(result)
    assert np.array_equal(out[0], plain) and np.array_equal(out[2], plain)
    assert (out[1][ink] == 0).all()


def _ultrasound(image: np.ndarray) -> Dataset:
    ds = make_dataset(image, photometric="RGB", sop_class="1.2.840.10008.5.1.4.1.1.6.1")
    ds.Modality = "US"
    region = Dataset()
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 100, 80
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 539, 439
    region.RegionDataType = 2
    ds.SequenceOfUltrasoundRegions = [region]
    return ds


def test_a_doppler_colour_region_is_untouched(
    write_dicom: Callable[..., Path], tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    image[80:440, 100:540] = rng.integers(40, 120, (360, 440, 1), dtype=np.uint8)
    for _ in range(40):  # flow: red and blue blobs and streaks
        y, x = int(rng.integers(150, 360)), int(rng.integers(200, 440))
        colour = (230, 30, 20) if rng.random() < 0.5 else (20, 60, 230)
        image[y : y + int(rng.integers(4, 14)), x : x + int(rng.integers(3, 30))] = colour
    banner, ink = draw_text(image, [(f"DOE JOHN {PHI['patient_id']}", (8, 8), 18, 255)])
    result = pipeline.process(write_dicom(_ultrasound(banner), "us.dcm"), settings(tmp_path / "o"))
    assert result.status == "written", result.reason
    out = written_frames(result)
    assert np.array_equal(out[80:440, 100:540], banner[80:440, 100:540])
    assert (out[ink] == 0).all()


def test_verify_flags_readable_text_in_dicom_pixels(
    write_dicom: Callable[..., Path], tmp_path: Path
) -> None:
    marked, _ = draw_text(ct_slice(), [("DOE, JOHN", (30, 20), 20, 255)])
    ds = make_dataset(marked)
    ds.PatientIdentityRemoved = "YES"
    path = write_dicom(ds, "out.dcm")
    policy = TextPolicy(frozenset())
    leaks = verify.check_dicom(path, {PHI["name"]: "patient name"}, policy)
    assert any(leak.where.startswith("pixels") for leak in leaks)
    clean = write_dicom(make_dataset(ct_slice()), "clean.dcm")
    assert not [x for x in verify.check_dicom(clean, None, policy) if x.where.startswith("pixels")]
