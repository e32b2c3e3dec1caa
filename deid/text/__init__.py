"""Burned-in text: find it, read it, decide each line, cover it whole.

Patient names, MRNs and dates stamped into the pixels survive every tag rule, so each
rendered image is searched: a learned detector (`detect`) says where text lines are,
a recogniser (`read`) says what they hold, `decide` keeps markers, labels and
technical text and covers everything else line by line, `extend` grows a cover along
its line where the detector stopped short, `second_look` searches around the covers
again, and `regions` adds the profile's fixed boxes and protects ultrasound image
regions. Where the detector finds no text, nothing is covered.
"""

from deid.text.policy import Region, TextPolicy, redaction_boxes
from deid.text.regions import first_look_scale, fixed_regions, ultrasound_image_regions
from deid.text.search import find_regions
from deid.text.second_look import search_image

__all__ = [
    "Region",
    "TextPolicy",
    "find_regions",
    "first_look_scale",
    "fixed_regions",
    "redaction_boxes",
    "search_image",
    "ultrasound_image_regions",
]
