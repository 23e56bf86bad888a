"""Pure tests: regenerated shares are byte-identical to the lost originals; matching of holders."""

from __future__ import annotations

import os

import pytest
from permanence_kit import encode_in_memory

from desktop.core.decoder import ShareVerifier, load_metadata, memory_reader
from desktop.core.errors import ShareCorrupt
from desktop.core.params import EncodingParams
from desktop.core.regenerate import ShareRegenerator
from desktop.core.repair_policy import best_holders


@pytest.mark.parametrize("sources", [[0, 1, 2], [4, 7, 11], [2, 9, 5]])
def test_regenerated_shares_equal_the_originals(sources: list[int]) -> None:
    params = EncodingParams(3, 12, 4096)
    cap, shares = encode_in_memory(os.urandom(5 * 4096 + 123), params)
    verifier = ShareVerifier(cap.verify_cap())
    for shnum in sources:
        load_metadata(verifier, shnum, memory_reader(shares[shnum]))
    layout = verifier.layout
    wanted = [s for s in (0, 3, 6, 10) if s not in sources]
    meta = shares[sources[0]][layout.metadata_offset :]
    regen = ShareRegenerator(verifier, meta, wanted)
    rebuilt = {s: bytearray(layout.share_size) for s in wanted}
    for index in range(layout.num_segments):
        offset, length = layout.block_range(index)
        blocks = {s: memoryview(shares[s])[offset : offset + length] for s in sources}
        for shnum, block in regen.regenerate(index, blocks).items():
            rebuilt[shnum][offset : offset + length] = block
    for shnum in wanted:
        rebuilt[shnum][: len(regen.header(shnum))] = regen.header(shnum)
        rebuilt[shnum][layout.metadata_offset :] = regen.metadata(shnum)
        assert rebuilt[shnum] == shares[shnum]


def test_corrupt_source_block_is_refused() -> None:
    params = EncodingParams(2, 4, 1024)
    cap, shares = encode_in_memory(os.urandom(3000), params)
    verifier = ShareVerifier(cap.verify_cap())
    for shnum in (1, 2):
        load_metadata(verifier, shnum, memory_reader(shares[shnum]))
    layout = verifier.layout
    regen = ShareRegenerator(verifier, shares[1][layout.metadata_offset :], [0, 3])
    offset, length = layout.block_range(0)
    bad = bytearray(shares[2][offset : offset + length])
    bad[0] ^= 1
    with pytest.raises(ShareCorrupt):
        regen.regenerate(0, {1: shares[1][offset : offset + length], 2: bad})


def test_best_holders_counts_distinct_nodes() -> None:
    assert best_holders({"a": [1, 2], "b": [1]}) == {1: "b", 2: "a"}
    assert best_holders({"a": [0, 1, 2], "b": [], "c": [2]}) == {0: "a", 2: "c"}
    assert len(best_holders({f"n{i}": [i % 3] for i in range(6)})) == 3
