"""The pieces of a handoff without a network: target order, the store's handoff create and its
writer's rights, and the route."""

from __future__ import annotations

from pathlib import Path

import blake3
import pytest

from desktop.agent.store import ShareStore, StoreError
from desktop.core.placement import Candidate
from desktop.core.repair_policy import handoff_targets
from desktop.net.protocol import owner_from_str, owner_to_str, parse_target

SI = b"\x07" * 16
OWNER, WRITER, OTHER = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32


def test_targets_resume_first_then_placement_then_crowded() -> None:
    nodes = [Candidate(f"node-{i}") for i in range(6)]
    order = handoff_targets(
        SI, nodes, exclude={"node-0", "node-1", "node-2"}, resume=["node-1"], crowded={"node-2"}
    )
    assert order[0] == "node-1"
    assert set(order[1:4]) == {"node-3", "node-4", "node-5"}
    assert order[4:] == ["node-2"]
    assert "node-0" not in order


def test_store_handoff_keeps_owner_and_limits_writer(tmp_path: Path) -> None:
    store = ShareStore(tmp_path, 10_000, fsync=False, clock=lambda: 1000.0)
    created, state = store.create_handoff(SI, 3, 4, 5000.0, OWNER, WRITER)
    assert created and state.owner == OWNER and state.lease_expires == 5000.0
    writer = store.begin_write(SI, 3, 0, 4, WRITER)
    writer.feed(b"abcd")
    writer.commit()
    writer.close()
    with pytest.raises(StoreError):
        store.begin_write(SI, 3, 0, 4, OTHER)
    assert store.seal(SI, 3, WRITER).sealed
    assert store.data_hash(SI, 3) == blake3.blake3(b"abcd").hexdigest()
    with pytest.raises(StoreError) as refused:
        store.renew_lease(SI, 3, WRITER, 100)  # only the owner renews or deletes
    assert refused.value.status == 403
    assert store.renew_lease(SI, 3, OWNER, 9000).lease_expires == 10_000.0
    again, same = store.create_handoff(SI, 3, 4, 6000.0, OWNER, WRITER)  # idempotent
    assert not again and same.sealed
    with pytest.raises(StoreError) as other:
        store.create_handoff(SI, 3, 4, 6000.0, OTHER, WRITER)
    assert other.value.status == 403
    with pytest.raises(StoreError) as expired:
        store.create_handoff(SI, 4, 4, 999.0, OWNER, WRITER)
    assert expired.value.status == 400
    with pytest.raises(StoreError) as full:
        store.create_handoff(SI, 5, 20_000, 5000.0, OWNER, WRITER)
    assert full.value.status == 507
    reopened = ShareStore(tmp_path, 10_000, fsync=False, clock=lambda: 1000.0)
    assert reopened.get(SI, 3).writer == WRITER and reopened.get(SI, 3).owner == OWNER


def test_handoff_route_names_the_owner() -> None:
    text = owner_to_str(OWNER)
    route = parse_target("POST", f"/v1/shares/{'a' * 26}/7/handoff/{text}".encode())
    assert route.action == "handoff" and route.shnum == 7 and owner_from_str(route.name) == OWNER
