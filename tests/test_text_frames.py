"""The text search inside the pipeline: frames, ultrasound regions, the DICOM output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import PHI, ct_slice, draw_text, make_dataset, safe_harbor_settings
from pydicom import dcmread
from pydicom.dataset import Dataset

from deid import pipeline, text, verify
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


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """Every image the text search is run on, in order."""
    searched: list[np.ndarray] = []
    real = text.search_image

    def counted(image: np.ndarray, *args: object, **kwargs: object) -> list[text.Region]:
        searched.append(image)
        return real(image, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(text, "search_image", counted)
    return searched


def test_identical_frames_are_read_once(
    write_dicom: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marked, ink = draw_text(ct_slice(), [("DOE, JOHN", (30, 20), 18, 255)])
    ds = make_dataset(np.stack([marked] * 4), sop_class="1.2.840.10008.5.1.4.1.1.12.1")
    ds.NumberOfFrames = 4
    searched = _counting(monkeypatch)
    result = pipeline.process(write_dicom(ds, "xa.dcm"), settings(tmp_path / "out"))
    assert result.status == "written", result.reason
    assert len(searched) == 1
    assert all((frame[ink] == 0).all() for frame in written_frames(result))


def test_a_png_searches_only_the_frames_it_shows(
    write_dicom: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = np.stack([ct_slice(seed=i) for i in range(5)])
    ds = make_dataset(frames, sop_class="1.2.840.10008.5.1.4.1.1.12.1", modality="XA")
    ds.NumberOfFrames = 5
    searched = _counting(monkeypatch)
    png_only = safe_harbor_settings(tmp_path / "png", "test-frames", formats=frozenset({"png"}))
    result = pipeline.process(write_dicom(ds, "xa.dcm"), png_only)
    assert result.status == "written", result.reason
    shown = [p for p in result.outputs if p.endswith(".png")]
    assert len(searched) == len(shown) < 5
    searched.clear()
    result = pipeline.process(write_dicom(ds, "xa2.dcm"), settings(tmp_path / "dicom"))
    assert result.status == "written", result.reason
    assert len(searched) == 5  # a DICOM output needs every frame clean


def test_small_annotations_on_an_original_ct_are_covered(
    write_dicom: Callable[..., Path], tmp_path: Path
) -> None:
    """The cheaper first look of an original slice still finds a 10 px line."""
    image, ink = draw_text(ct_slice(), [("DOE, JOHN 03/14/1952", (20, 470), 10, 255)])
    ds = make_dataset(image, extra={"ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"]})
    assert text.first_look_scale(ds) is not None
    result = pipeline.process(write_dicom(ds, "ct.dcm"), settings(tmp_path / "out"))
    assert result.status == "written", result.reason
    assert (written_frames(result)[ink] == 0).all()


def test_a_name_read_inside_an_ultrasound_region_is_covered(
    write_dicom: Callable[..., Path], tmp_path: Path
) -> None:
    """The image region's anatomy is never covered on suspicion, but text read there
    as a name is covered like anywhere else."""
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    image[80:440, 100:540] = 70
    marked, ink = draw_text(image, [("DOE, JOHN", (200, 300), 20, 255)])
    result = pipeline.process(write_dicom(_ultrasound(marked), "us.dcm"), settings(tmp_path / "o"))
    assert result.status == "written", result.reason
    out = written_frames(result)
    assert (out[ink] == 0).all()
    assert (out[100:200, 120:520] == 70).all()
