"""Names in Cyrillic (Kyrgyz, Russian) and Latin find each other.

A name is reduced to a Latin "skeleton": Cyrillic is transliterated, then the spellings that
passports, lab systems and people use interchangeably are folded together (zh/j/dj,
kh/h, y/i/ы, double letters, ü/ö). Both the stored name and the query are reduced the same
way, so a Cyrillic query finds a Latin-spelled name and back.
"""

from __future__ import annotations

import re
import unicodedata

_CYRILLIC = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "j",
    "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "ң": "n",
    "о": "o", "ө": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ү": "u",
    "ф": "f", "х": "h", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "sh", "ъ": "", "ы": "y",
    "ь": "", "э": "e", "ю": "yu", "я": "ya",
}  # fmt: skip

# Applied in order to Latin text (after transliteration and lower-casing).
_FOLDS = [
    (r"dzh|dj|zh", "j"),
    (r"kh", "h"),
    (r"ts", "c"),
    (r"sch|shch", "sh"),
    (r"iu|yu", "u"),
    (r"ia|ya", "a"),
    (r"y", "i"),
    (r"w", "v"),
    (r"q", "k"),
    (r"x", "ks"),
    (r"ie|ye", "e"),
    (r"(.)\1+", r"\1"),  # Assel / Asel, Ivanova / Ivannova
]


def to_latin(text: str) -> str:
    """Plain transliteration of Cyrillic into Latin letters (for display and FHIR)."""
    out = []
    for char in text:
        lower = char.lower()
        if lower in _CYRILLIC:
            latin = _CYRILLIC[lower]
            out.append(latin.capitalize() if char != lower else latin)
        else:
            out.append(char)
    return "".join(out)


def skeleton(text: str) -> str:
    """The folded Latin form used for matching; words separated by single spaces."""
    latin = to_latin(text.lower())
    # ü, ö, é... lose their marks; anything that is not a letter or a digit separates words.
    latin = unicodedata.normalize("NFKD", latin).encode("ascii", "ignore").decode()
    latin = re.sub(r"[^a-z0-9]+", " ", latin)
    for pattern, replacement in _FOLDS:
        latin = re.sub(pattern, replacement, latin)
    return " ".join(latin.split())
