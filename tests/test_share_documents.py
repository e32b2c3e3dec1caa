"""Identity documents refused: passports, identity cards, licences and insurance cards are
recognised by what is printed on them; scans, photos and viewer screenshots are not."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_NEGATIVES, anatomy, ct_slice, real_negative_files
from PIL import Image, ImageDraw, ImageFont

from deid import pixels, reader
from deid.boxes import Box
from deid.share import documents
from deid.share.documents import Document, recognise

skimage_data = pytest.importorskip("skimage.data")

# ICAO 9303's specimen: the MRZ of a passport (TD3) and of an identity card (TD1).
TD3 = (
    "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
    "L898902C36UTO7408122F1204159ZE184226B<<<<<10",
)
TD1 = (
    "I<UTOD231458907<<<<<<<<<<<<<<<",
    "7408122F1204159UTO<<<<<<<<<<<6",
    "ERIKSSON<<ANNA<MARIA<<<<<<<<<<",
)
HOLDER = ("ERIKSSON", "ANNA", "MARIA", "UTOPIA", "1974", "L898902C3", "D23145890")
# Everything a `why` may say: the signals, joined by commas and "and".
SIGNAL = (
    r"(machine-readable zone( with matching check digits)?|document words|a portrait"
    r"|a card outline)"
)
WHY = re.compile(rf"{SIGNAL}((, | and ){SIGNAL})*")


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def portrait(width: int, height: int) -> Image.Image:
    """A face to stand in for the holder's photo: the astronaut's head and shoulders."""
    face = Image.fromarray(skimage_data.astronaut()[20:260, 130:330])
    return face.resize((width, height))


def on_table(card: Image.Image, margin: int = 120) -> Image.Image:
    """The card photographed on a grainy brown table: its outline stands out."""
    width, height = card.size[0] + 2 * margin, card.size[1] + 2 * margin
    rng = np.random.default_rng(0)
    wood = np.array([92, 64, 40]) + rng.integers(-12, 12, (height, width, 1))
    table = Image.fromarray(np.clip(wood, 0, 255).astype(np.uint8))
    table.paste(card, (margin, margin))
    return table


def passport_page(*, labels: bool = True, photo: bool = True) -> np.ndarray:
    """A passport's data page: title, photo, labelled fields and a two-line MRZ."""
    page = Image.new("RGB", (1250, 880), (226, 232, 240))
    draw = ImageDraw.Draw(page)
    if labels:
        draw.text((40, 30), "PASSPORT  PASSEPORT", fill=(20, 40, 90), font=font(40))
    draw.text((700, 40), "UTOPIA", fill=(20, 40, 90), font=font(36))
    if photo:
        page.paste(portrait(300, 380), (40, 110))
    fields = [
        ("Type / Type", "P"),
        ("Surname / Nom", "ERIKSSON"),
        ("Given names / Prénoms", "ANNA MARIA"),
        ("Nationality / Nationalité", "UTOPIAN"),
        ("Date of birth / Date de naissance", "12 AUG 1974"),
        ("Sex / Sexe", "F"),
        ("Date of expiry / Date d'expiration", "15 APR 2012"),
    ]
    y = 110
    for label, value in fields:
        if labels:
            draw.text((380, y), label, fill=(70, 70, 90), font=font(20))
        draw.text((380, y + 24), value, fill=(0, 0, 0), font=font(30))
        y += 68
    for i, line in enumerate(TD3):
        draw.text((40, 700 + 60 * i), line, fill=(0, 0, 0), font=font(38))
    return np.asarray(page)


def identity_card(*, mrz: bool = True, photo: bool = True, fields: bool = True) -> np.ndarray:
    """An ID-1 identity card on a table: title, portrait, fields, a three-line MRZ."""
    card = Image.new("RGB", (1016, 640), (236, 228, 214))
    draw = ImageDraw.Draw(card)
    draw.text((30, 20), "REPUBLIC OF UTOPIA", fill=(40, 40, 120), font=font(30))
    draw.text((30, 58), "IDENTITY CARD", fill=(40, 40, 120), font=font(36))
    if photo:
        card.paste(portrait(220, 280), (30, 110))
    rows = [("Surname", "ERIKSSON"), ("Given names", "ANNA MARIA")]
    rows += [("Date of birth", "12.08.1974"), ("Nationality", "UTO")]
    y = 110
    for label, value in rows if fields else [("", "ERIKSSON ANNA MARIA")]:
        draw.text((290, y), label, fill=(90, 90, 90), font=font(18))
        draw.text((290, y + 22), value, fill=(0, 0, 0), font=font(26))
        y += 62
    if mrz:
        for i, line in enumerate(TD1):
            draw.text((30, 460 + 55 * i), line, fill=(0, 0, 0), font=font(40))
    return np.asarray(on_table(card))


def driving_licence() -> np.ndarray:
    """A US-style licence: no MRZ, a title, short field labels and a portrait."""
    card = Image.new("RGB", (1016, 640), (210, 230, 245))
    draw = ImageDraw.Draw(card)
    draw.text((30, 24), "UTOPIA  DRIVER LICENSE", fill=(150, 20, 20), font=font(40))
    card.paste(portrait(240, 300), (30, 110))
    lines = [
        "DL 1234 5678",
        "EXP 04/15/2030",
        "DOB 08/12/1974",
        "ERIKSSON",
        "ANNA MARIA",
        "12 ELM STREET",
        "CLASS C   SEX F   HGT 5-07",
    ]
    for i, line in enumerate(lines):
        draw.text((300, 110 + 50 * i), line, fill=(0, 0, 0), font=font(30))
    return np.asarray(on_table(card))


def insurance_card() -> np.ndarray:
    """A health insurance card: the insurer's banner and member fields, no portrait."""
    card = Image.new("RGB", (1016, 640), (255, 255, 255))
    draw = ImageDraw.Draw(card)
    draw.rectangle((0, 0, 1016, 110), fill=(20, 80, 160))
    draw.text((30, 30), "BLUE RIVER HEALTH INSURANCE", fill=(255, 255, 255), font=font(44))
    lines = [
        "Member Name: ANNA ERIKSSON",
        "Member ID: XQZ 889 231 004",
        "Group Number: 774120",
        "RxBIN 610014   RxPCN ADV",
        "PCP Copay $20   ER $150",
    ]
    for i, line in enumerate(lines):
        draw.text((40, 150 + 70 * i), line, fill=(0, 0, 0), font=font(34))
    return np.asarray(on_table(card, 80))


def title_card() -> np.ndarray:
    """A card with a title and a name only: its outline is what backs the one word."""
    return identity_card(mrz=False, photo=False, fields=False)


def enlarged(image: np.ndarray, factor: float) -> np.ndarray:
    """A phone photo's size: the same picture `factor` times larger."""
    picture = Image.fromarray(image)
    size = (round(picture.width * factor), round(picture.height * factor))
    return np.asarray(picture.resize(size, Image.Resampling.BICUBIC))


def written(
    image: np.ndarray, lines: list[tuple[str, tuple[int, int], int]], fill: int = 255
) -> np.ndarray:
    """`image` (grey or RGB) with each (text, (x, y), size) drawn on it."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    colour = fill if canvas.mode == "L" else (fill, fill, fill)
    for text, xy, size in lines:
        draw.text(xy, text, fill=colour, font=font(size))
    return np.asarray(canvas)


def radiograph_with_banner() -> np.ndarray:
    """A chest film as a viewer exports it: name, DOB and MRN banner, a side marker."""
    banner = [
        ("DOE, JOHN", (14, 12), 24),
        ("DOB: 03/14/1952", (14, 42), 24),
        ("MRN: 4471923", (14, 72), 24),
        ("CHEST PA", (14, 102), 24),
        ("L", (690, 440), 40),
    ]
    return written(anatomy(900, 760, seed=3), banner)


def viewer_screenshot() -> np.ndarray:
    """A CT viewer's screenshot: the slice on black with the four corners of overlay."""
    screen = np.zeros((800, 1280, 3), np.uint8)
    screen[144:656, 384:896] = ct_slice(seed=4)[..., None]
    overlay = [
        ("DOE^JOHN", (12, 10), 20),
        ("ID: MRN4471923", (12, 36), 20),
        ("DOB: 1952-03-14 (71Y)  Sex: M", (12, 62), 20),
        ("SAINT ELSEWHERE HOSPITAL", (960, 10), 20),
        ("CT CHEST W/O CONTRAST", (960, 36), 20),
        ("2023-08-17 10:15:30", (960, 62), 20),
        ("Series 3  Im 45/120", (12, 740), 20),
        ("Thk 2.5 mm  120 kV  200 mA", (12, 766), 20),
        ("W: 400 L: 40", (1100, 766), 20),
    ]
    return written(screen, overlay, fill=230)


def wound_photo() -> np.ndarray:
    """A close-up with a caption, as a nurse's phone takes it."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:720, 0:960]
    skin = np.stack(
        [np.full((720, 960), 205), np.full((720, 960), 160), np.full((720, 960), 135)], -1
    )
    wound = ((yy - 360) / 110) ** 2 + ((xx - 480) / 190) ** 2 < 1
    skin[wound] = (150, 40, 45)
    photo = np.clip(skin + rng.normal(0, 6, skin.shape), 0, 255).astype(np.uint8)
    return written(photo, [("Left shin wound, day 3  2024-05-02", (20, 660), 30)])


def face_with_caption() -> np.ndarray:
    """A patient's photo, face showing, captioned with a DOB and an MRN: no document."""
    caption = [("DOE, JOHN  DOB 03/14/1952", (10, 440), 24), ("MRN 4471923", (10, 474), 24)]
    return written(skimage_data.astronaut(), caption)


def rendered_slice(path: Path) -> np.ndarray:
    ds = reader.read(path)
    frames = pixels.decode(ds, str(path))
    return pixels.render(ds, frames[len(frames) // 2])


DOCUMENTS: dict[str, tuple[Callable[[], np.ndarray], int, str, tuple[str, ...]]] = {
    "passport": (passport_page, 1, "passport", ("check digits", "words", "portrait")),
    "passport-mrz-only": (
        lambda: passport_page(labels=False, photo=False),
        0,
        "passport",
        ("machine-readable zone",),
    ),
    "passport-phone-photo": (lambda: enlarged(passport_page(), 3.2), 1, "passport", ("zone",)),
    "passport-grey": (
        lambda: np.asarray(Image.fromarray(passport_page()).convert("L")),
        1,
        "passport",
        ("zone",),
    ),
    "passport-on-its-side": (lambda: np.rot90(passport_page()).copy(), 1, "passport", ("zone",)),
    "identity-card": (identity_card, 1, "identity card", ("zone", "words", "portrait")),
    "identity-card-front": (
        lambda: identity_card(mrz=False),
        1,
        "identity card",
        ("document words", "a portrait"),
    ),
    "identity-card-title-on-a-card": (
        title_card,
        0,
        "identity card",
        ("document words", "a card outline"),
    ),
    "driving-licence": (driving_licence, 1, "driving licence", ("words", "portrait")),
    "driving-licence-no-face-found": (driving_licence, 0, "driving licence", ("words",)),
    "insurance-card": (insurance_card, 0, "insurance card", ("document words",)),
    "insurance-card-on-its-other-side": (
        lambda: np.rot90(insurance_card(), -1).copy(),
        0,
        "insurance card",
        ("document words",),
    ),
}


@pytest.mark.parametrize("name", DOCUMENTS)
def test_a_document_is_recognised_and_says_why(name: str) -> None:
    make, faces, kind, clues = DOCUMENTS[name]
    found = recognise(make(), faces=faces)
    assert found is not None and found.kind == kind
    for clue in clues:
        assert clue in found.why
    assert WHY.fullmatch(found.why), found.why  # signals only: nothing read
    said = f"{found.kind} {found.why}".upper()
    assert not [word for word in HOLDER if word in said]


NEGATIVES: dict[str, tuple[Callable[[], np.ndarray], int]] = {
    "radiograph-banner": (radiograph_with_banner, 0),
    "radiograph-banner-and-a-face-count": (radiograph_with_banner, 1),
    "viewer-screenshot": (viewer_screenshot, 0),
    "wound-photo-with-caption": (wound_photo, 0),
    "face-with-dob-caption": (face_with_caption, 1),
    "printed-title-no-card": (
        lambda: written(np.full((600, 900), 250, np.uint8), [("IDENTITY CARD", (40, 40), 40)], 0),
        0,
    ),
    "astronaut": (skimage_data.astronaut, 1),
    "coffee": (skimage_data.coffee, 0),
    "chelsea": (skimage_data.chelsea, 0),
    "rocket": (skimage_data.rocket, 0),
    "text": (skimage_data.text, 0),
    "page": (skimage_data.page, 0),
    "camera": (skimage_data.camera, 0),
    "chest-film": (lambda: anatomy(1024, 900), 0),
    "ct-slice": (ct_slice, 0),
}


@pytest.mark.parametrize("name", NEGATIVES)
def test_scans_photos_and_screenshots_are_not_documents(name: str) -> None:
    make, faces = NEGATIVES[name]
    assert recognise(make(), faces=faces) is None


@pytest.mark.skipif(not real_negative_files(), reason=f"{REAL_NEGATIVES} is not present")
@pytest.mark.parametrize("path", real_negative_files(), ids=lambda p: f"{p.parent.name}-{p.name}")
def test_real_slices_are_not_documents(path: Path) -> None:
    assert recognise(rendered_slice(path)) is None


# --- The decision on what was read, without the reader ---


def read_as(monkeypatch: pytest.MonkeyPatch, texts: list[str]) -> None:
    """Make the reader "read" these lines, stacked one under the other."""
    lines = [
        documents._Line(Box(10, 10 + 40 * i, 900, 40 + 40 * i), 30.0, text)
        for i, text in enumerate(texts)
    ]
    monkeypatch.setattr(documents, "_read_lines", lambda image: lines)


BLANK = np.full((400, 600, 3), 128, np.uint8)


@pytest.mark.parametrize(
    ("texts", "faces", "expected"),
    [
        # A reader's MRZ: fillers dropped, read as K or C, an O for a 0 and an I as |.
        (["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<", TD3[1].replace("<", "K")], 0, "passport"),
        (["|<UT0D231458907<<<<<<<<<<<<<<<", "7408122F1204159UT0CCCCCCCCCCC6"], 0, "identity card"),
        ([TD3[1]], 0, "passport"),  # one line, its check digits agreeing
        ([TD1[0]], 0, "identity card"),  # one line, a card's document code
        (["V<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", TD3[1]], 0, "visa"),
        (["Reisepass", "Staatsangehörigkeit"], 0, "passport"),
        (["CARTE D'IDENTIT", "Nom: ERIKSSON"], 1, "identity card"),  # accent and letter lost
        (["DRIVERS LICENSE"], 1, "driving licence"),
        (["MEDICARE", "Member ID 1EG4-TE5-MK72"], 0, "insurance card"),
        (["Date of birth", "Nationality", "Date of expiry"], 0, "identity document"),
        (["DOB 1974-08-12", "Nationality UTO"], 1, "identity document"),
    ],
)
def test_what_makes_a_document(
    monkeypatch: pytest.MonkeyPatch, texts: list[str], faces: int, expected: str
) -> None:
    read_as(monkeypatch, texts)
    found = recognise(BLANK, faces=faces)
    assert isinstance(found, Document) and found.kind == expected


@pytest.mark.parametrize(
    ("texts", "faces"),
    [
        (["DOE, JOHN", "DOB: 03/14/1952", "MRN: 4471923"], 0),
        (["DOE, JOHN", "DOB: 03/14/1952", "MRN: 4471923", "Sex: M"], 1),  # DOB and a face
        (["Date of birth: 14.03.1952", "Nationality: UTO"], 0),  # two fields, nothing else
        (["PASSPORT PHOTO CLINIC"], 0),  # a title alone
        (["<<< Previous series", "Next series >>>"], 0),
        (["ACC99812<<<SERIES<<<3"], 0),  # fillers, but too short for an MRZ line
        (["DOBSON ANNA", "MEDICATED DRESSING"], 1),  # near words are not the words
        ([], 1),
    ],
)
def test_what_is_not_a_document(
    monkeypatch: pytest.MonkeyPatch, texts: list[str], faces: int
) -> None:
    read_as(monkeypatch, texts)
    assert recognise(BLANK, faces=faces) is None


def test_check_digits() -> None:
    assert documents._check_digits_agreeing(TD3[1]) == 3
    assert documents._check_digits_agreeing(TD1[0]) + documents._check_digits_agreeing(TD1[1]) == 3
    assert documents._check_digits_agreeing(TD3[1].replace("36UTO", "35UTO")) == 2
    assert documents._check_digits_agreeing(TD3[0]) == 0


def test_only_display_images_are_read() -> None:
    with pytest.raises(TypeError):
        recognise(np.zeros((64, 64), np.float32))
    assert recognise(np.zeros((64, 64, 4), np.uint8)) is None  # alpha ignored
