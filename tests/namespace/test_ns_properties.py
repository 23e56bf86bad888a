"""Property tests: the merge is order independent, snapshots change nothing, nothing is lost."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ns_testkit import Account, play, view_state

from desktop.core.namespace import Entry, FileInfo, Replica, RetentionPolicy, make_snapshot
from desktop.core.namespace.log import ChainHead
from desktop.core.namespace.view import happened_before

write = st.tuples(
    st.just(0),
    st.integers(0, 2),
    st.integers(0, 4),
    st.integers(0, 5),
    st.integers(0, 5),
    st.integers(0, 50),
)
sync = st.tuples(st.just(1), st.integers(0, 2), st.integers(0, 2))
scenario = st.lists(st.one_of(write, write, sync), min_size=1, max_size=40)

PROPS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def build(actions: list[tuple[int, ...]]) -> Account:
    account = Account("prop")
    for name in ("laptop", "phone", "desktop"):
        account.add_device(name)
    play(account, actions)
    return account


def replay(account: Account, entries: list[Entry]) -> Replica:
    replica = account.new_replica()
    for entry in entries:
        replica.receive(entry)
    assert replica.missing() == {}
    return replica


@PROPS
@given(scenario, st.randoms(use_true_random=False))
def test_merge_is_independent_of_arrival_order(
    actions: list[tuple[int, ...]], rnd: random.Random
) -> None:
    account = build(actions)
    entries = account.all_entries()
    reference = view_state(replay(account, list(entries)))
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    assert view_state(replay(account, shuffled)) == reference
    # Devices that exchanged everything converge to the same view as well.
    for device in account.devices:
        for entry in entries:
            device.replica.receive(entry)
        assert view_state(device.replica) == reference


@PROPS
@given(scenario, st.lists(st.integers(0, 40), min_size=3, max_size=3), st.booleans())
def test_snapshot_then_tail_equals_full_replay(
    actions: list[tuple[int, ...]], cuts: list[int], keep_all: bool
) -> None:
    account = build(actions)
    full = replay(account, account.all_entries())
    policy = RetentionPolicy() if keep_all else RetentionPolicy(keep_last=0)
    fresh = account.new_replica()
    tail: list[Entry] = []
    for device, cut in zip(account.devices, cuts, strict=True):
        cut = min(cut, len(device.log))
        if cut:
            last = device.log[cut - 1]
            head = ChainHead(last.seq, last.hash, last.vv)
            snap = make_snapshot(
                device.key,
                account.devices[0].replica.account_id,
                full.view.ops(device.id, cut),
                head,
                policy,
                now_ms=last.timestamp_ms,
            )
            fresh.load_snapshot(snap)
        tail.extend(device.log[cut:])
    for entry in tail:
        fresh.apply(entry)
    assert fresh.view.tree() == full.view.tree()
    if keep_all:
        assert view_state(fresh) == view_state(full)
    else:
        for path in full.view.paths():
            full_keys = {(v.device_id, v.seq) for v in full.view.versions(path)}
            assert {(v.device_id, v.seq) for v in fresh.view.versions(path)} <= full_keys


@PROPS
@given(scenario)
def test_no_put_is_silently_lost(actions: list[tuple[int, ...]]) -> None:
    account = build(actions)
    replica = replay(account, account.all_entries())
    view = replica.view
    tree = view.tree()
    ops = view.ops()
    for op in ops:
        if not isinstance(op.node, FileInfo):
            continue
        superseded = any(other.path == op.path and happened_before(op, other) for other in ops)
        if superseded:
            assert any((v.device_id, v.seq) == (op.device, op.seq) for v in view.versions(op.path))
            continue
        visible = [
            n
            for p, n in tree.items()
            if (p == op.path or n.conflict_of == op.path)
            and isinstance(n.node, FileInfo)
            and n.node.content_hash == op.node.content_hash
        ]
        assert visible, f"live put {op} vanished from the tree"
