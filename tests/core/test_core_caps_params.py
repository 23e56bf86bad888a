"""Capability strings, storage-index strings and parameter validation."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from desktop.core.caps import (
    ReadCap,
    VerifyCap,
    parse_cap,
    parse_read_cap,
    storage_index_for_key,
    storage_index_from_str,
    storage_index_to_str,
)
from desktop.core.errors import CapError, ParamsError, PermaCloudError
from desktop.core.params import EncodingParams

URL_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_:")


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_read_cap_round_trips_and_is_url_safe(key: bytes, roots: bytes) -> None:
    cap = ReadCap(key, roots)
    text = cap.to_string()
    assert text.startswith("pc1r:")
    assert set(text) <= URL_SAFE
    assert len(text) < 100
    assert parse_cap(text) == cap
    assert parse_read_cap(text) == cap
    verify = cap.verify_cap()
    assert verify.storage_index == storage_index_for_key(key)
    assert len(verify.storage_index) == 16
    vtext = verify.to_string()
    assert vtext.startswith("pc1v:") and set(vtext) <= URL_SAFE
    assert parse_cap(vtext) == verify


def test_read_cap_repr_hides_key() -> None:
    key = bytes(range(32))
    cap = ReadCap(key, bytes(32))
    assert key.hex() not in repr(cap)
    assert cap.to_string() not in repr(cap)


@given(st.data())
def test_any_single_character_typo_is_rejected(data: st.DataObject) -> None:
    text = ReadCap(os.urandom(32), os.urandom(32)).to_string()
    pos = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    replacement = data.draw(st.sampled_from(sorted(URL_SAFE - {text[pos]})))
    typo = text[:pos] + replacement + text[pos + 1 :]
    with pytest.raises(CapError):
        parse_cap(typo)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "pc1r:",
        "pc1r:abc",
        "pc2r:" + "A" * 88,
        "pc1x:" + "A" * 88,
        "pc1r:" + "A" * 87 + "!",
        "pc1r:" + "A" * 88 + "==",
        "pc1v:" + "A" * 67,
    ],
)
def test_malformed_caps_raise_cap_error(text: str) -> None:
    with pytest.raises(CapError) as info:
        parse_cap(text)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, PermaCloudError)


def test_truncated_and_extended_caps_are_rejected() -> None:
    text = ReadCap(os.urandom(32), os.urandom(32)).to_string()
    for bad in (text[:-1], text[:-4], text + "A", text + "AAAA"):
        with pytest.raises(CapError):
            parse_cap(bad)


def test_verify_cap_is_not_accepted_as_read_cap() -> None:
    verify = ReadCap(os.urandom(32), os.urandom(32)).verify_cap()
    with pytest.raises(CapError, match="read cap"):
        parse_read_cap(verify.to_string())


def test_cap_fields_are_length_checked() -> None:
    with pytest.raises(CapError):
        ReadCap(bytes(31), bytes(32))
    with pytest.raises(CapError):
        VerifyCap(bytes(15), bytes(32))


@given(st.binary(min_size=16, max_size=16))
def test_storage_index_string_round_trips(si: bytes) -> None:
    text = storage_index_to_str(si)
    assert len(text) == 26 and text.isalnum() and text == text.lower()
    assert storage_index_from_str(text) == si


@pytest.mark.parametrize("text", ["", "a" * 25, "a" * 27, "A" * 26, "1" * 26, "a" * 25 + "/"])
def test_bad_storage_index_strings_rejected(text: str) -> None:
    with pytest.raises(CapError):
        storage_index_from_str(text)


def test_default_params() -> None:
    params = EncodingParams()
    assert (params.k, params.n) == (3, 10)
    assert 1 << 20 <= params.segment_size <= 4 << 20
    assert EncodingParams.unpack(params.pack()) == params


@pytest.mark.parametrize(
    ("k", "n", "segment_size"),
    [(0, 10, 1 << 20), (4, 3, 1 << 20), (3, 257, 1 << 20), (3, 10, 0), (3, 10, 1 << 30)],
)
def test_invalid_params_raise_params_error(k: int, n: int, segment_size: int) -> None:
    with pytest.raises(ParamsError):
        EncodingParams(k, n, segment_size)


def test_non_integer_params_rejected() -> None:
    with pytest.raises(ParamsError):
        EncodingParams(k=True)
    with pytest.raises(ParamsError):
        EncodingParams(n=3.0)  # type: ignore[arg-type]
