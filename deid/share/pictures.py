"""One photo or screenshot into the image a person sends: upright, no metadata, no face,
no readable text, and never an identity document unless asked.

The photo is capped to the size it will be sent at first, so the searches look at
exactly what leaves. Text is found by the same search `anonymize` runs on scans.
"""

from __future__ import annotations

from pathlib import Path

from deid import pixels, text
from deid.errors import RefusedError
from deid.faces import cover_faces, find_faces
from deid.share.documents import recognise
from deid.share.encode import fit
from deid.share.items import Cover
from deid.share.photos import open_photo
from deid.share.scans import Made


def photo_image(
    path: Path,
    where: str,
    number: int,
    policy: text.TextPolicy,
    *,
    max_side: int,
    faces: str = "blur",
    allow_documents: bool = False,
) -> Made:
    """Photo `number` (1-based) made safe to send; raises DeidError for a file that
    cannot be read and `RefusedError` for an identity document."""
    photo = open_photo(path, where)
    image = fit(photo.image, max_side)
    found = find_faces(image)
    document = recognise(image, len(found))
    if document is not None and not allow_documents:
        raise RefusedError(
            f"looks like an identity document ({document.kind}: {document.why}); not shared "
            "(give --allow-documents to share it with its text and portrait covered)",
            where,
        )
    regions = text.search_image(image, policy, where=where)
    covered = [r for r in regions if r.decision == "redact"]
    image = pixels.black_out(image, [r.box for r in covered])
    covers = [Cover(r.box, f"text: {r.reason}") for r in covered]
    if found:
        image = cover_faces(image, found, "black" if faces == "black" else "blur")
        covers += [Cover(f.box, "face") for f in found]
    return Made(
        f"photo{number}",
        image,
        "photo",
        f"photo {number}",
        photo=True,
        covers=covers,
        dropped=list(photo.dropped),
        faces_searched=True,
    )
