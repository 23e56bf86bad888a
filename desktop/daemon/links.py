"""Share links: a read cap in a URL anyone can paste, `permacloud:pc1r:...?name=photo.jpg`.

The cap is the whole secret: it names the file and holds its key. The name is a hint for saving.
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote

from desktop.core.caps import ReadCap, parse_read_cap
from desktop.core.errors import CapError

SCHEME = "permacloud:"


def make_link(cap: str, name: str = "") -> str:
    link = SCHEME + cap
    if name:
        link += "?name=" + quote(name, safe="")
    return link


def parse_link(text: str) -> ReadCap:
    """A read cap from a share link or a bare `pc1r:` cap string."""
    text = text.strip()
    if text.startswith(SCHEME):
        text = text[len(SCHEME) :]
    cap_text = text.split("?", 1)[0]
    if not cap_text.startswith("pc1r:"):
        raise CapError("not a PermaCloud share link (expected permacloud:pc1r:...)")
    return parse_read_cap(cap_text)


def link_name(text: str) -> str | None:
    if "?" not in text:
        return None
    values = parse_qs(text.split("?", 1)[1]).get("name")
    return values[0] if values else None
