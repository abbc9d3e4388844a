"""Text fields of hand-written files: NFC-normalised, length-limited, no control or bidi characters, not blank.

Entry text reaches terminals (CI logs), markdown comments and the site: an escape sequence or a
right-to-left override could make it display differently from what it says.
"""

from __future__ import annotations

import re
import unicodedata
from functools import partial
from typing import Annotated

from pydantic import AfterValidator, Field

# Bidirectional embeddings, overrides, isolates and marks (Unicode TR9): they reorder what is displayed.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
ALLOWED_CONTROLS_MULTILINE = frozenset("\n\t")


# Every character the loop below refuses (Cc is U+0000-001F and U+007F-009F; Zl and Zp are U+2028 and
# U+2029): one regex search clears the usual value without a Python step per character.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029" + "".join(sorted(BIDI_CONTROLS)) + "]")


def clean_text(value: str, *, multiline: bool = False) -> str:
    """``value`` in NFC; ValueError naming the first forbidden character, or a blank value."""
    value = unicodedata.normalize("NFC", value)
    if _FORBIDDEN.search(value) is None:
        if not value.strip():
            raise ValueError("is blank; give a value (or leave the optional field out)")
        return value
    for i, ch in enumerate(value):
        if ch in BIDI_CONTROLS:
            raise ValueError(f"contains the bidirectional control character U+{ord(ch):04X} at position {i}: "
                             "it changes how the text is displayed; remove it")
        category = unicodedata.category(ch)
        if (category == "Cc" and not (multiline and ch in ALLOWED_CONTROLS_MULTILINE)) or category in ("Zl", "Zp"):
            raise ValueError(f"contains the control character U+{ord(ch):04X} at position {i} (terminal escapes, "
                             "bells and line separators are not allowed); remove it")
    if not value.strip():
        raise ValueError("is blank; give a value (or leave the optional field out)")
    return value


def Text(max_length: int, *, multiline: bool = False):  # noqa: N802 - a type factory, used like a type
    """A ``str`` type of at most ``max_length`` characters that passes :func:`clean_text`."""
    return Annotated[str, Field(max_length=max_length), AfterValidator(partial(clean_text, multiline=multiline))]
