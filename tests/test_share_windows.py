"""`deid.share.windows`: the windows a series is shown in, and rendering through them."""

from __future__ import annotations

import tomllib
from importlib import resources

import numpy as np
import pytest
from conftest import make_dataset

from deid.errors import UsageError
from deid.pixels import RenderOptions, render
from deid.share.windows import WINDOW_CHOICES, Window, choose, names, options, render_window
from deid.text.decide import tokenize


@pytest.mark.parametrize(
    ("modality", "part", "expected"),
    [
        ("CT", "CHEST", ["lung", "mediastinum"]),
        ("CT", "thorax", ["lung", "mediastinum"]),
        ("CT", "LUNG", ["lung", "mediastinum"]),
        ("CT", "HEAD", ["brain", "bone"]),
        ("CT", "BRAIN", ["brain", "bone"]),
        ("CT", "ABDOMEN", ["soft-tissue"]),
        ("CT", "PELVIS", ["soft-tissue"]),
        ("CT", "CHEST_ABDOMEN_PELVIS", ["soft-tissue"]),  # not a defined term: default
        ("CT", "CHESTABDPELVIS", ["lung", "soft-tissue"]),
        ("CT", "L-SPINE", ["bone", "soft-tissue"]),
        ("CT", "KNEE", ["bone", "soft-tissue"]),
        ("CT", None, ["soft-tissue"]),
        ("CT", "NECK", ["soft-tissue"]),
    ],
)
def test_ct_defaults_by_body_part(modality: str, part: str | None, expected: list[str]) -> None:
    chosen = choose(modality, part)
    assert [w.name for w in chosen] == expected
    assert all(not w.automatic and w.note is None for w in chosen)


@pytest.mark.parametrize(
    ("modality", "part", "expected"),
    [
        ("MR", "BRAIN", "brain"),
        ("MR", "HEAD", "brain"),
        ("MR", "KNEE", "auto"),
        ("CR", "CHEST", "auto"),
        ("DX", None, "auto"),
        ("US", "ABDOMEN", "auto"),
        ("PT", "CHEST", "auto"),
        (None, None, "auto"),
    ],
)
def test_other_modalities_show_their_own_window(
    modality: str | None, part: str | None, expected: str
) -> None:
    (window,) = choose(modality, part)
    assert window == Window(expected, None, None)
    assert window.automatic and window.value is None


def test_a_preset_asked_for_ct_is_used_alone() -> None:
    assert choose("CT", "CHEST", "bone") == [Window("bone", 400.0, 1800.0)]
    assert choose("ct", "HEAD", "Soft_Tissue") == [Window("soft-tissue", 40.0, 400.0)]
    assert choose("CT", "HEAD", "auto") == choose("CT", "HEAD")


def test_a_preset_asked_for_another_modality_falls_back_with_a_note() -> None:
    (window,) = choose("MR", "BRAIN", "lung")
    assert window.automatic and window.name == "brain"
    assert window.note is not None and "lung" in window.note and "CT only" in window.note


def test_an_unknown_window_names_the_valid_ones() -> None:
    with pytest.raises(UsageError) as caught:
        choose("CT", "CHEST", "abdomen")
    for name in ("auto", "lung", "mediastinum", "bone", "brain", "soft-tissue"):
        assert name in caught.value.message


def test_names_come_from_the_data_file() -> None:
    raw = (resources.files("deid") / "data" / "window_presets.toml").read_text("utf-8")
    assert names() == ["auto", *tomllib.loads(raw)["presets"]] == list(WINDOW_CHOICES)
    assert {"lung", "mediastinum", "bone", "brain", "soft-tissue"} <= set(names())


def test_every_window_label_is_kept_by_the_text_search() -> None:
    raw = (resources.files("deid") / "data" / "text_vocabulary.toml").read_text("utf-8")
    table = tomllib.loads(raw)
    words = {w.upper() for key in ("markers", "anatomy", "technical") for w in table[key]}
    for name in names():
        label = Window(name, None, None).label
        assert all(token in words for token in tokenize(label)), label
    for words_line in ("slice 3 of 9", "frame 12 of 30", "image 2 of 4", "lung slice 1 of 3"):
        assert all(t in words or t.isdigit() for t in tokenize(words_line))


def _ct(values_hu: list[int]) -> tuple[object, np.ndarray]:
    """A CT slice holding `values_hu` (rescale intercept -1024) and a soft-tissue window
    of its own, which a chosen window must override."""
    stored = np.array([values_hu], dtype=np.int64) + 1024
    ds = make_dataset(
        stored.astype(np.uint16),
        bits_stored=12,
        extra={"RescaleSlope": 1, "RescaleIntercept": -1024, "WindowCenter": 40},
    )
    ds.WindowWidth = 400
    return ds, stored.astype(np.uint16)


def test_lung_and_mediastinum_windows_render_hounsfield_units() -> None:
    lung, mediastinum = choose("CT", "CHEST")
    ds, frame = _ct([-600, 50, -1000, 400])
    # LINEAR: ((x - (c - 0.5)) / (w - 1) + 0.5) * 255; -600 HU sits mid-grey in the lung
    # window (air, -1000 HU, dark grey), black in the mediastinum window; +50 HU the
    # reverse.
    assert render_window(ds, frame, lung).tolist() == [[128, 238, 60, 255]]
    assert render_window(ds, frame, mediastinum).tolist() == [[0, 128, 0, 255]]
    # The file's own window (40 / 400) when none is chosen.
    own = render_window(ds, frame, Window("auto", None, None))
    assert own.tolist() == render(ds, frame).tolist() == [[0, 134, 0, 255]]


def test_a_window_beats_the_voi_switch_and_keeps_monochrome1_inverted() -> None:
    ds, frame = _ct([-600])
    lung = options(choose("CT", "CHEST")[0], RenderOptions(voi="off"))
    assert lung.voi == "off" and lung.window == (-600.0, 1500.0)
    assert render(ds, frame, lung).tolist() == [[128]]
    ds.PhotometricInterpretation = "MONOCHROME1"
    assert render(ds, frame, lung).tolist() == [[127]]


def test_render_options_window_is_checked_and_hashable() -> None:
    assert hash(RenderOptions(window=(40, 400))) == hash(RenderOptions(window=(40.0, 400.0)))
    assert RenderOptions(window=[40, 400]).window == (40.0, 400.0)  # type: ignore[arg-type]
    for bad in ((40, 0), (40, float("nan")), (1, 2, 3), "wide"):
        with pytest.raises(UsageError, match="window"):
            RenderOptions(window=bad)  # type: ignore[arg-type]
