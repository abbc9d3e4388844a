"""``html_text``: HTML-escaped text as a plain ``str``, for the site's many small pieces of markup."""

from __future__ import annotations

import markupsafe

_escape_text = getattr(markupsafe, "_escape_inner", None)  # (markupsafe >= 3: the escaping itself, on a str)


def html_text(value) -> str:
    """``str(markupsafe.escape(value))``, without making a ``Markup`` object of each piece only to join it
    into a page (a model page has ~300 output expressions and ~70 escaped labels in its plots)."""
    if _escape_text is None:
        return str(markupsafe.escape(value))
    if type(value) is str:
        return _escape_text(value)
    html = getattr(value, "__html__", None)
    return html() if html is not None else _escape_text(str(value))
