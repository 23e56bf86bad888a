"""Namespace paths: absolute, NFC-normalized, `/`-separated, no empty/`.`/`..` components.

Normalizing to NFC means a name typed on macOS (NFD) and on Linux (NFC) is the same entry, so two
devices never create "the same" file twice under byte-different names.
"""

import unicodedata

from desktop.core.namespace.errors import InvalidPath

MAX_PATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255
ROOT = "/"


def normalize_path(path: str) -> str:
    """Return the canonical form of `path` or raise `InvalidPath` saying what is wrong."""
    if not isinstance(path, str):
        raise InvalidPath(f"path must be a string, got {type(path).__name__}")
    if "\x00" in path:
        raise InvalidPath(f"path contains a NUL byte: {path!r}")
    if not path.startswith("/"):
        raise InvalidPath(f"path is not absolute: {path!r}")
    norm = unicodedata.normalize("NFC", path)
    if norm == ROOT:
        return ROOT
    body = norm[1:-1] if norm.endswith("/") else norm[1:]
    components = body.split("/")
    for comp in components:
        if comp == "":
            raise InvalidPath(f"path has an empty component: {path!r}")
        if comp in (".", ".."):
            raise InvalidPath(f"path has a {comp!r} component: {path!r}")
        if len(comp.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise InvalidPath(f"path component longer than {MAX_COMPONENT_BYTES} bytes: {path!r}")
    result = "/" + "/".join(components)
    if len(result.encode("utf-8")) > MAX_PATH_BYTES:
        raise InvalidPath(f"path longer than {MAX_PATH_BYTES} bytes")
    return result


def parent(path: str) -> str:
    """Parent directory of a normalized path (the root is its own parent)."""
    if path == ROOT:
        return ROOT
    head = path.rsplit("/", 1)[0]
    return head or ROOT


def basename(path: str) -> str:
    return path.rsplit("/", 1)[1] if path != ROOT else ""


def join(directory: str, name: str) -> str:
    return directory + name if directory == ROOT else f"{directory}/{name}"


def is_under(path: str, ancestor: str) -> bool:
    """True when `path` is strictly inside `ancestor`."""
    if ancestor == ROOT:
        return path != ROOT
    return path.startswith(ancestor + "/")


def ancestors(path: str) -> list[str]:
    """Strict ancestors from the parent up to and including the root."""
    out: list[str] = []
    while path != ROOT:
        path = parent(path)
        out.append(path)
    return out
