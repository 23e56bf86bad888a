"""Encode/decode behaviour: round trips from any k-subset, corruption caught and attributed,
edge sizes, random access, convergent mode, API misuse."""

from __future__ import annotations

import io
import os

import pytest
from core_helpers import encode_to_memory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desktop.core.caps import parse_cap
from desktop.core.decoder import Decoder, ShareVerifier, decode_stream, memory_reader
from desktop.core.encoder import Encoder, convergent_key, encode_stream
from desktop.core.errors import (
    InputSizeError,
    NotEnoughShares,
    ParamsError,
    ShareCorrupt,
)
from desktop.core.hashing import tree_leaf, tree_proof, verify_proof
from desktop.core.layout import HEADER_SIZE, ShareLayout, metadata_range_from_header
from desktop.core.params import EncodingParams

SMALL_SEG = 256

params_strategy = st.builds(
    lambda k, extra, seg: EncodingParams(k, k + extra, seg),
    st.integers(1, 5),
    st.integers(0, 6),
    st.sampled_from([64, 100, SMALL_SEG]),
)


def decode_all(cap_text: str, shares: dict[int, bytearray], workers: int = 1) -> bytes:
    cap = parse_cap(cap_text)
    assert not isinstance(cap, type(None))
    stream = decode_stream(
        cap,  # type: ignore[arg-type]
        {s: memory_reader(b) for s, b in shares.items()},
        workers=workers,
    )
    return b"".join(bytes(chunk) for chunk in stream)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), params_strategy, st.binary(max_size=1500))
def test_round_trip_from_any_subset_of_at_least_k(
    data: st.DataObject, params: EncodingParams, plaintext: bytes
) -> None:
    cap, shares, _ = encode_to_memory(plaintext, params)
    size = data.draw(st.integers(params.k, params.n), label="subset size")
    subset = data.draw(st.permutations(range(params.n)), label="order")[:size]
    workers = data.draw(st.sampled_from([1, 2]), label="workers")
    assert decode_all(cap.to_string(), {s: shares[s] for s in subset}, workers) == plaintext


@settings(max_examples=40, deadline=None)
@given(st.data(), params_strategy, st.binary(max_size=800))
def test_decode_segment_directly_from_k_blocks(
    data: st.DataObject, params: EncodingParams, plaintext: bytes
) -> None:
    cap, shares, finished = encode_to_memory(plaintext, params)
    subset = sorted(data.draw(st.permutations(range(params.n)))[: params.k])
    decoder = Decoder(cap)
    for shnum in subset:
        layout = finished.layout
        decoder.load_share_metadata(
            shnum,
            shares[shnum][:HEADER_SIZE],
            shares[shnum][layout.metadata_offset : layout.share_size],
        )
    assert decoder.plaintext_size == len(plaintext)
    assert decoder.manifest.plaintext_size == len(plaintext)
    assert decoder.params == params
    out = []
    for index in range(decoder.layout.num_segments):
        offset, length = decoder.layout.block_range(index)
        blocks = {s: bytes(shares[s][offset : offset + length]) for s in subset}
        out.append(decoder.decode_segment(index, blocks))
    assert b"".join(out) == plaintext


def share_is_rejected(cap_text: str, shares: list[bytearray], shnum: int) -> bool:
    """True if loading or block-checking share `shnum` raises ShareCorrupt naming it."""
    cap = parse_cap(cap_text)
    decoder = Decoder(cap)  # type: ignore[arg-type]
    share = shares[shnum]
    try:
        offset, length = metadata_range_from_header(bytes(share[:HEADER_SIZE]))
    except Exception:
        offset, length = 0, 0
    try:
        decoder.load_share_metadata(shnum, share[:HEADER_SIZE], share[offset : offset + length])
        layout = decoder.layout
        for index in range(layout.num_segments):
            block_offset, block_length = layout.block_range(index)
            decoder.verify_block(shnum, index, share[block_offset : block_offset + block_length])
    except ShareCorrupt as error:
        assert error.shnum == shnum
        return True
    return False


@settings(max_examples=150, deadline=None)
@given(st.data(), params_strategy, st.binary(max_size=1000))
def test_any_single_flipped_bit_in_any_share_is_caught(
    data: st.DataObject, params: EncodingParams, plaintext: bytes
) -> None:
    cap, shares, _ = encode_to_memory(plaintext, params)
    shnum = data.draw(st.integers(0, params.n - 1), label="share")
    assert not share_is_rejected(cap.to_string(), shares, shnum)
    position = data.draw(st.integers(0, len(shares[shnum]) * 8 - 1), label="bit")
    shares[shnum][position // 8] ^= 1 << (position % 8)
    assert share_is_rejected(cap.to_string(), shares, shnum)
    # And the full decode still succeeds from the others if enough remain, naming the bad share.
    if params.n > params.k:
        others = {s: shares[s] for s in range(params.n)}
        stream = decode_stream(cap, {s: memory_reader(b) for s, b in others.items()})
        assert b"".join(bytes(c) for c in stream) == plaintext
        # Only shares actually read can be named, and never a good one.
        assert set(stream.corrupt_shares) <= {shnum}
        assert shnum not in stream.used_shares


def test_corrupt_primary_share_is_named_and_replaced() -> None:
    params = EncodingParams(3, 10, SMALL_SEG)
    plaintext = os.urandom(5 * SMALL_SEG + 17)
    cap, shares, finished = encode_to_memory(plaintext, params)
    offset, _ = finished.layout.block_range(2)
    shares[1][offset + 5] ^= 0x10
    stream = decode_stream(cap, {s: memory_reader(shares[s]) for s in (0, 1, 2, 7)})
    assert b"".join(bytes(c) for c in stream) == plaintext
    assert list(stream.corrupt_shares) == [1]
    assert "block 2" in stream.corrupt_shares[1]
    assert stream.used_shares >= {0, 2, 7}


@settings(max_examples=30, deadline=None)
@given(params_strategy, st.binary(max_size=700), st.data())
def test_fewer_than_k_shares_is_a_clear_error(
    params: EncodingParams, plaintext: bytes, data: st.DataObject
) -> None:
    cap, shares, finished = encode_to_memory(plaintext, params)
    subset = data.draw(st.permutations(range(params.n)))[: params.k - 1]
    if subset:
        with pytest.raises(NotEnoughShares, match=f"need {params.k} good shares"):
            decode_stream(cap, {s: memory_reader(shares[s]) for s in subset})
    else:
        with pytest.raises(NotEnoughShares):
            decode_stream(cap, {})
    decoder = Decoder(cap)
    for shnum in subset:
        decoder.load_share_metadata(
            shnum, shares[shnum][:HEADER_SIZE], shares[shnum][finished.layout.metadata_offset :]
        )
    if subset:
        offset, length = finished.layout.block_range(0)
        with pytest.raises(NotEnoughShares):
            decoder.decode_segment(0, {s: shares[s][offset : offset + length] for s in subset})


def test_all_shares_corrupt_ends_in_not_enough_shares() -> None:
    params = EncodingParams(2, 4, SMALL_SEG)
    plaintext = os.urandom(3 * SMALL_SEG)
    cap, shares, finished = encode_to_memory(plaintext, params)
    offset, _ = finished.layout.block_range(1)
    for share in shares[:3]:
        share[offset] ^= 1
    stream = decode_stream(cap, {s: memory_reader(b) for s, b in enumerate(shares)})
    with pytest.raises(NotEnoughShares):
        b"".join(bytes(c) for c in stream)
    assert set(stream.corrupt_shares) == {0, 1, 2}


def _setup_two_segment_file() -> tuple[Decoder, list[bytearray], ShareLayout]:
    params = EncodingParams(3, 5, SMALL_SEG)
    cap, shares, finished = encode_to_memory(os.urandom(3 * SMALL_SEG), params)
    decoder = Decoder(cap)
    layout = finished.layout
    for shnum in range(5):
        decoder.load_share_metadata(
            shnum, shares[shnum][:HEADER_SIZE], shares[shnum][layout.metadata_offset :]
        )
    return decoder, shares, layout


def test_reordered_foreign_and_truncated_blocks_are_detected() -> None:
    decoder, shares, layout = _setup_two_segment_file()
    b0 = layout.block_range(0)
    b1 = layout.block_range(1)
    block_seg1_share0 = bytes(shares[0][b1[0] : b1[0] + b1[1]])
    block_seg0_share1 = bytes(shares[1][b0[0] : b0[0] + b0[1]])
    # Reordered: segment 1's block presented as segment 0's.
    with pytest.raises(ShareCorrupt) as info:
        decoder.verify_block(0, 0, block_seg1_share0)
    assert info.value.shnum == 0
    # Swapped between shares: share 1's block presented as share 0's.
    with pytest.raises(ShareCorrupt) as info:
        decoder.verify_block(0, 0, block_seg0_share1)
    assert info.value.shnum == 0
    # Truncated.
    with pytest.raises(ShareCorrupt, match="truncated") as info:
        decoder.verify_block(2, 0, bytes(shares[2][b0[0] : b0[0] + b0[1] - 1]))
    assert info.value.shnum == 2
    # Foreign: a block from another file with the same parameters.
    _, other_shares, _ = encode_to_memory(
        os.urandom(3 * SMALL_SEG), EncodingParams(3, 5, SMALL_SEG)
    )
    with pytest.raises(ShareCorrupt) as info:
        decoder.decode_segment(
            0,
            {
                0: shares[0][b0[0] : b0[0] + b0[1]],
                3: other_shares[3][b0[0] : b0[0] + b0[1]],
                4: shares[4][b0[0] : b0[0] + b0[1]],
            },
        )
    assert info.value.shnum == 3


def test_foreign_and_mislabelled_metadata_rejected() -> None:
    decoder, shares, layout = _setup_two_segment_file()
    _, other_shares, _ = encode_to_memory(
        os.urandom(3 * SMALL_SEG), EncodingParams(3, 5, SMALL_SEG)
    )
    fresh = Decoder(decoder.cap)
    with pytest.raises(ShareCorrupt, match="roots hash") as info:
        fresh.load_share_metadata(
            2, other_shares[2][:HEADER_SIZE], other_shares[2][layout.metadata_offset :]
        )
    assert info.value.shnum == 2
    with pytest.raises(ShareCorrupt, match="header says it is share 1"):
        fresh.load_share_metadata(4, shares[1][:HEADER_SIZE], shares[1][layout.metadata_offset :])
    with pytest.raises(ShareCorrupt, match="metadata is"):
        fresh.load_share_metadata(
            4, shares[4][:HEADER_SIZE], shares[4][layout.metadata_offset + 1 :]
        )
    with pytest.raises(ShareCorrupt, match="header"):
        fresh.load_share_metadata(4, shares[4][: HEADER_SIZE - 1], b"")
    with pytest.raises(ShareCorrupt, match="not loaded"):
        fresh.verify_block(4, 0, b"")


def test_truncated_share_fails_over_to_another() -> None:
    params = EncodingParams(3, 10, SMALL_SEG)
    plaintext = os.urandom(4 * SMALL_SEG)
    cap, shares, finished = encode_to_memory(plaintext, params)
    cut = finished.layout.block_range(2)[0]
    truncated = shares[0][:cut]
    readers = {
        0: memory_reader(truncated),
        1: memory_reader(shares[1]),
        2: memory_reader(shares[2]),
    }
    readers[9] = memory_reader(shares[9])
    stream = decode_stream(cap, readers)
    # Metadata lies past the cut, so share 0 is rejected at load time, named.
    assert b"".join(bytes(c) for c in stream) == plaintext
    assert 0 in stream.corrupt_shares


@pytest.mark.parametrize("size_name", ["empty", "one", "segment", "segment_plus_one", "three"])
def test_edge_sizes_with_default_params(size_name: str) -> None:
    params = EncodingParams()
    seg = params.segment_size
    size = {"empty": 0, "one": 1, "segment": seg, "segment_plus_one": seg + 1, "three": 3 * seg}
    plaintext = os.urandom(size[size_name])
    cap, shares, finished = encode_to_memory(plaintext, params, workers=2)
    expected_segments = {"empty": 1, "one": 1, "segment": 1, "segment_plus_one": 2, "three": 3}
    assert finished.layout.num_segments == expected_segments[size_name]
    assert all(len(s) == finished.layout.share_size for s in shares)
    assert decode_all(cap.to_string(), {s: shares[s] for s in (9, 4, 7)}) == plaintext
    assert decode_all(cap.to_string(), {s: shares[s] for s in (0, 1, 2)}, workers=2) == plaintext


@settings(max_examples=80, deadline=None)
@given(st.data(), st.binary(max_size=2000))
def test_random_access_reads_only_covering_segments(data: st.DataObject, plaintext: bytes) -> None:
    params = EncodingParams(3, 6, 100)
    cap, shares, finished = encode_to_memory(plaintext, params)
    offset = data.draw(st.integers(0, len(plaintext) + 10), label="offset")
    length = data.draw(st.integers(0, len(plaintext) + 10), label="length")
    layout = finished.layout
    reads: list[int] = []

    def counting(shnum: int):  # type: ignore[no-untyped-def]
        base = memory_reader(shares[shnum])

        def read(off: int, ln: int) -> bytes | bytearray | memoryview:
            if off >= HEADER_SIZE and off < layout.metadata_offset:
                reads.append((off - HEADER_SIZE) // layout.block_size)
            return base(off, ln)

        return read

    stream = decode_stream(cap, {s: counting(s) for s in (1, 3, 5)}, offset=offset, length=length)
    out = b"".join(bytes(c) for c in stream)
    assert out == plaintext[offset : offset + length]
    covering = layout.segments_for_range(offset, length)
    assert set(reads) == set(covering)
    if length and offset < len(plaintext):
        first = offset // 100
        last = (min(offset + length, len(plaintext)) - 1) // 100
        assert covering == range(first, last + 1)
    else:
        assert len(covering) == 0


def test_convergent_mode_dedups_only_with_same_secret_and_params() -> None:
    secret = b"account secret for dedup, 32byte"
    plaintext = os.urandom(1000)
    params = EncodingParams(3, 10, SMALL_SEG)

    def cap_for(secret: bytes, params: EncodingParams, data: bytes) -> str:
        hasher = convergent_key(secret, params, len(data))
        hasher.update(data[:300])
        hasher.update(memoryview(data)[300:])
        cap, _, _ = encode_to_memory(data, params, key=hasher.key())
        return cap.to_string()

    first = cap_for(secret, params, plaintext)
    assert cap_for(secret, params, plaintext) == first
    assert cap_for(b"another secret of the same size!", params, plaintext) != first
    assert cap_for(secret, EncodingParams(3, 10, 100), plaintext) != first
    assert cap_for(secret, params, plaintext[:-1] + bytes([plaintext[-1] ^ 1])) != first
    # Random keys never dedup.
    assert encode_to_memory(plaintext, params)[0] != encode_to_memory(plaintext, params)[0]


def test_convergent_hasher_checks_size_and_secret() -> None:
    hasher = convergent_key(b"s" * 32, EncodingParams(), 10)
    hasher.update(b"123")
    with pytest.raises(InputSizeError):
        hasher.key()
    with pytest.raises(ParamsError):
        convergent_key(b"short", EncodingParams(), 10)


def test_encoder_api_misuse_is_reported() -> None:
    params = EncodingParams(2, 3, SMALL_SEG)
    encoder = Encoder(params, 2 * SMALL_SEG + 1)
    assert len(encoder.storage_index) == 16
    with pytest.raises(InputSizeError):
        encoder.encode_segment(b"x" * 10)
    encoder = Encoder(params, 2 * SMALL_SEG + 1)
    encoder.encode_segment(bytes(SMALL_SEG))
    with pytest.raises(InputSizeError, match="never encoded"):
        encoder.finish()
    with pytest.raises(ParamsError):
        Encoder(params, 10, key=b"short")
    with pytest.raises(ParamsError):
        Encoder(params, -1)


def test_encoder_finish_cap_matches_storage_index_known_up_front() -> None:
    params = EncodingParams(2, 3, SMALL_SEG)
    encoder = Encoder(params, 3 * SMALL_SEG)
    si = encoder.storage_index
    for index in (2, 0, 1):  # any order through the thread-safe entry point
        encoder.encode_segment_at(index, os.urandom(SMALL_SEG))
    finished = encoder.finish()
    assert finished.cap.storage_index == si
    assert finished.share_metadata(1)[0] == (0, finished.layout.header(1))


@pytest.mark.parametrize("workers", [1, 2])
def test_stream_input_of_wrong_size_is_reported(workers: int) -> None:
    params = EncodingParams(2, 3, SMALL_SEG)
    short = encode_stream(io.BytesIO(bytes(700)).read, params, 800, workers=workers)
    with pytest.raises(InputSizeError, match="early"):
        list(short)
    long = encode_stream(io.BytesIO(bytes(900)).read, params, 800, workers=workers)
    with pytest.raises(InputSizeError, match="longer"):
        list(long)


def test_verifier_with_verify_cap_checks_without_key() -> None:
    params = EncodingParams(3, 10, SMALL_SEG)
    cap, shares, finished = encode_to_memory(os.urandom(3 * SMALL_SEG + 5), params)
    layout = finished.layout
    verifier = ShareVerifier(cap.verify_cap())
    verifier.load_share_metadata(7, shares[7][:HEADER_SIZE], shares[7][layout.metadata_offset :])
    assert verifier.plaintext_size == 3 * SMALL_SEG + 5
    for index in range(layout.num_segments):
        offset, length = layout.block_range(index)
        verifier.verify_block(7, index, shares[7][offset : offset + length])
        # Audit path: leaf + proof up to the share root.
        tree = verifier.block_tree(7)
        leaf = tree_leaf(tree, layout.num_segments, index)
        proof = tree_proof(tree, layout.num_segments, index)
        assert verify_proof(tree[:32], layout.num_segments, index, leaf, proof)
        assert not verify_proof(tree[:32], layout.num_segments, index, bytes(32), proof)
    offset, length = layout.block_range(1)
    shares[7][offset] ^= 0x80
    with pytest.raises(ShareCorrupt) as info:
        verifier.verify_block(7, 1, shares[7][offset : offset + length])
    assert info.value.shnum == 7


def test_too_many_segments_is_a_params_error() -> None:
    with pytest.raises(ParamsError, match="larger segment size"):
        ShareLayout.for_file(EncodingParams(1, 1, 64), 1 << 40)
