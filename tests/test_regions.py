"""Fixed regions: chosen by modality, manufacturer, model and size; US regions' outside."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_dataset
from pydicom.dataset import Dataset
from pydicom.uid import UltrasoundImageStorage

from deid.boxes import Box
from deid.errors import ProfileError
from deid.settings import Settings
from deid.text.regions import (
    fixed_boxes,
    fixed_regions,
    outside_ultrasound_regions,
    starter_regions,
)


def dataset(
    modality: str = "US",
    rows: int = 480,
    columns: int = 640,
    manufacturer: str = "ACME Medical",
    model: str = "Sonic 5",
) -> Dataset:
    ds = Dataset()
    ds.Modality = modality
    ds.Rows, ds.Columns = rows, columns
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    return ds


def covered(ds: Dataset, boxes: list[Box]) -> np.ndarray:
    mask = np.zeros((int(ds.Rows), int(ds.Columns)), dtype=bool)
    for b in boxes:
        mask[b.top : b.bottom, b.left : b.right] = True
    return mask


BANNER: dict[str, Any] = {"modality": "US", "boxes": [[0, 0, 640, 40]]}


@pytest.mark.parametrize(
    ("entry", "ds", "applies"),
    [
        (BANNER, dataset(), True),
        (BANNER, dataset(modality="CT"), False),
        ({**BANNER, "modality": "us"}, dataset(), True),
        ({**BANNER, "manufacturer": "acme"}, dataset(), True),
        ({**BANNER, "manufacturer": "Other"}, dataset(), False),
        ({**BANNER, "model": "SONIC"}, dataset(), True),
        ({**BANNER, "model": "Echo"}, dataset(), False),
        ({**BANNER, "rows": 480, "columns": 640}, dataset(), True),
        ({**BANNER, "rows": 600, "columns": 800}, dataset(), False),
        ({**BANNER, "columns": 640}, dataset(rows=512), True),
    ],
    ids=[
        "modality",
        "other-modality",
        "modality-any-case",
        "manufacturer-prefix",
        "other-manufacturer",
        "model-prefix",
        "other-model",
        "size",
        "other-size",
        "columns-only",
    ],
)
def test_entries_are_chosen_by_device_and_size(
    entry: dict[str, Any], ds: Dataset, applies: bool
) -> None:
    mask = covered(ds, fixed_boxes(ds, {"fixed": [entry]}))
    assert mask[:40].all() == applies
    assert not mask[40:].any()


def test_boxes_are_clipped_and_count_back_from_negative_edges() -> None:
    ds = dataset()
    boxes = fixed_boxes(ds, {"fixed": [{"modality": "US", "boxes": [[-100, -30, 9999, 9999]]}]})
    mask = covered(ds, boxes)
    assert mask[450:, 540:].all()
    assert mask.sum() == 100 * 30


def test_regions_carry_the_fixed_reason() -> None:
    (region,) = fixed_regions(dataset(), {"fixed": [BANNER]})
    assert (region.decision, region.reason, region.marker) == ("redact", "fixed region", None)


def ultrasound(regions: list[tuple[int, int, int, int]]) -> Dataset:
    ds = dataset()
    items = []
    for x0, y0, x1, y1 in regions:
        item = Dataset()
        item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
        item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
        items.append(item)
    ds.SequenceOfUltrasoundRegions = items
    return ds


@pytest.mark.parametrize(
    "regions",
    [[(100, 50, 539, 429)], [(20, 60, 300, 400), (320, 60, 620, 400)], [(0, 0, 639, 479)]],
    ids=["one", "two-side-by-side", "whole-image"],
)
def test_outside_ultrasound_regions_covers_exactly_the_rest(
    regions: list[tuple[int, int, int, int]],
) -> None:
    ds = ultrasound(regions)
    inside = np.zeros((480, 640), dtype=bool)
    for x0, y0, x1, y1 in regions:
        inside[y0 : y1 + 1, x0 : x1 + 1] = True
    mask = covered(ds, outside_ultrasound_regions(ds))
    assert (mask == ~inside).all()
    via_profile = covered(ds, fixed_boxes(ds, {"outside_ultrasound_regions": True}))
    assert (via_profile == mask).all()


def test_no_ultrasound_regions_nothing_outside() -> None:
    ds = dataset()
    assert outside_ultrasound_regions(ds) == []
    assert fixed_boxes(ds, {"outside_ultrasound_regions": True}) == []


def test_starter_set_covers_a_banner_of_common_ultrasound_sizes() -> None:
    section = {"fixed": starter_regions()}
    for rows, columns in [(480, 640), (600, 800), (768, 1024)]:
        ds = dataset(rows=rows, columns=columns)
        mask = covered(ds, fixed_boxes(ds, section))
        assert mask[:30].all() and not mask[rows // 2 :].any()
    assert fixed_boxes(dataset(modality="CT"), section) == []


@pytest.mark.parametrize(
    "section",
    [
        {"fixed": {"modality": "US"}},
        {"fixed": [{"boxes": [[0, 0, 1, 1]]}]},
        {"fixed": [{"modality": "US"}]},
        {"fixed": [{"modality": "US", "boxes": [[0, 0, 1]]}]},
        {"fixed": [{"modality": "US", "boxes": [[0, 0, 1.5, 1]]}]},
        {"fixed": [{"modality": "US", "rows": "480", "boxes": [[0, 0, 1, 1]]}]},
        {"outside_ultrasound_regions": "yes"},
    ],
)
def test_malformed_sections_are_profile_errors(section: dict[str, Any]) -> None:
    with pytest.raises(ProfileError):
        fixed_boxes(dataset(), section)


@pytest.mark.parametrize("detect", ["never", "always"])
@pytest.mark.parametrize("formats", [{"dicom"}, {"png"}, {"dicom", "png"}])
def test_fixed_regions_are_covered_with_or_without_a_text_search(
    tmp_path: Path,
    write_dicom: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    detect: str,
    formats: set[str],
) -> None:
    from PIL import Image
    from pydicom import dcmread

    from deid import pipeline, profiles, text
    from deid.pseudonym import Pseudonymizer

    monkeypatch.setattr(text, "search_image", lambda *args, **kwargs: [])  # no search here
    pixels = np.random.default_rng(3).integers(100, 250, size=(48, 64), dtype=np.uint8)
    window = {"WindowCenter": 128, "WindowWidth": 256}
    ds = make_dataset(pixels, modality="US", sop_class=UltrasoundImageStorage, extra=window)
    source = write_dicom(ds)
    profile_file = tmp_path / "banner.toml"
    profile_file.write_text(
        'extends = "safe-harbor"\n'
        f'[text]\ndetect = "{detect}"\n'
        '[[regions.fixed]]\nmodality = "US"\nboxes = [[0, 0, 64, 12]]\n'
    )
    settings = Settings.for_profile(
        profiles.load(str(profile_file)),
        Pseudonymizer.from_passphrase("t").key,
        tmp_path / "out",
        formats=frozenset(formats),
    )
    result = pipeline.process(source, settings)
    assert result.status == "written", result.reason
    for output in map(Path, result.outputs):
        if output.suffix == ".png":
            shown = np.asarray(Image.open(output))
        else:
            shown = dcmread(output).pixel_array
        assert (shown[:12] == 0).all(), output.suffix  # the banner band is black
        assert (shown[12:] != 0).all()  # nothing else is
