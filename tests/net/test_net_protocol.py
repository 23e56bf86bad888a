"""The request parser: routes, ranges and bodies, including fuzzing with hypothesis."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from desktop.net.protocol import (
    MAX_SHARE_SIZE,
    RequestError,
    Route,
    parse_create,
    parse_lease,
    parse_range,
    parse_target,
    share_path,
)
from desktop.net.storage_index import storage_index_from_str, storage_index_to_str

SI = os.urandom(16)
SI_TEXT = storage_index_to_str(SI)


def test_routes() -> None:
    assert parse_target("GET", b"/v1/info") == Route("info")
    assert parse_target("GET", share_path(SI).encode()) == Route("list", SI)
    assert parse_target("POST", share_path(SI, 3).encode()) == Route("create", SI, 3)
    assert parse_target("GET", share_path(SI, 3).encode()) == Route("read", SI, 3)
    assert parse_target("DELETE", share_path(SI, 3).encode()) == Route("delete", SI, 3)
    assert parse_target("PUT", share_path(SI, 3, "/data/42").encode()) == Route("write", SI, 3, 42)
    assert parse_target("POST", share_path(SI, 3, "/seal").encode()) == Route("seal", SI, 3)
    assert parse_target("POST", share_path(SI, 3, "/lease").encode()) == Route("lease", SI, 3)
    assert storage_index_from_str(SI_TEXT) == SI


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        ("GET", b"/v1/shares/../node_key.pem", 404),
        ("GET", b"/v1/shares/%2e%2e/node_key.pem", 400),
        ("GET", b"/etc/passwd", 404),
        ("GET", b"http://x/v1/info", 404),
        ("GET", f"/v1/shares/{SI_TEXT}/0/../1".encode(), 404),
        ("GET", f"/v1/shares/{SI_TEXT.upper()}".encode(), 404),
        ("GET", f"/v1/shares/{SI_TEXT}/256".encode(), 400),
        ("GET", f"/v1/shares/{SI_TEXT}/007".encode(), 404),
        ("PUT", f"/v1/shares/{SI_TEXT}/1/data/-5".encode(), 404),
        ("GET", b"/v1/info?a=b", 400),
        ("GET", "/v1/ïnfo".encode(), 400),
        ("PATCH", b"/v1/info", 405),
        ("GET", b"/" + b"a" * 2000, 414),
    ],
)
def test_bad_targets(method: str, target: bytes, status: int) -> None:
    with pytest.raises(RequestError) as error:
        parse_target(method, target)
    assert error.value.status == status


def test_non_canonical_storage_index_rejected() -> None:
    # the last base32 character carries 2 spare bits; a non-zero spare makes it non-canonical
    canonical = storage_index_to_str(b"\0" * 16)
    assert canonical == "a" * 26
    with pytest.raises(RequestError) as error:
        parse_target("GET", b"/v1/shares/" + b"a" * 25 + b"b")
    assert error.value.status == 400


def test_ranges() -> None:
    assert parse_range(None, 100) == (0, 100)
    assert parse_range("bytes=10-19", 100) == (10, 20)
    assert parse_range("bytes=90-", 100) == (90, 100)
    assert parse_range("bytes=90-500", 100) == (90, 100)
    assert parse_range("bytes=-10", 100) == (90, 100)
    assert parse_range("bytes=-1000", 100) == (0, 100)
    for bad in ["bytes=100-", "bytes=5-4", "bytes=-", "bytes=0-1,5-6", "items=0-1", "bytes=-0"]:
        with pytest.raises(RequestError) as error:
            parse_range(bad, 100)
        assert error.value.status == 416


def test_control_bodies() -> None:
    assert parse_create(b'{"size": 5, "lease_seconds": 60}') == (5, 60)
    assert parse_lease(b'{"seconds": 60}') == 60
    for bad in [
        b"",
        b"null",
        b'{"size": true, "lease_seconds": 60}',
        b'{"size": 5, "lease_seconds": 0}',
        f'{{"size": {MAX_SHARE_SIZE + 1}, "lease_seconds": 60}}'.encode(),
        b'{"size": 5.0, "lease_seconds": 60}',
        b"\xff\xfe",
    ]:
        with pytest.raises(RequestError) as error:
            parse_create(bad)
        assert error.value.status == 400


@given(st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"]), st.binary(max_size=300))
def test_fuzz_targets_only_route_or_refuse(method: str, target: bytes) -> None:
    try:
        route = parse_target(method, target)
    except RequestError as error:
        assert 400 <= error.status < 500
        return
    # anything accepted is one of our strict shapes: no dots, no escapes, nothing else
    assert target.startswith(b"/v1/") and b".." not in target and b"%" not in target
    assert route.action in {"info", "list", "create", "read", "delete", "write", "seal", "lease"}


@given(st.text(max_size=40), st.integers(min_value=0, max_value=10**6))
def test_fuzz_ranges(header: str, size: int) -> None:
    try:
        start, end = parse_range(header, size)
    except RequestError as error:
        assert error.status == 416
        return
    assert 0 <= start <= end <= size


@given(st.binary(max_size=200))
def test_fuzz_create_bodies(body: bytes) -> None:
    try:
        size, lease = parse_create(body)
    except RequestError as error:
        assert error.status == 400
        return
    assert 0 <= size <= MAX_SHARE_SIZE and lease >= 1


@given(
    st.sampled_from(["/v1/info", f"/v1/shares/{SI_TEXT}/1"]),
    st.text(alphabet=st.sampled_from("./%2e\\~:AaZz09"), max_size=30),
)
def test_fuzz_path_suffix_tricks(base: str, suffix: str) -> None:
    if not suffix:
        return
    with pytest.raises(RequestError) as error:
        parse_target("GET", (base + "/" + suffix).encode())
    assert 400 <= error.value.status < 500
