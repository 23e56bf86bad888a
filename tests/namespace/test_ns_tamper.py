"""Tampered, reordered, incomplete or unauthorized input is rejected and leaves the view intact."""

import dataclasses

import pytest
from ns_testkit import BASE_MS, Account, put, seeded_key

from desktop.core.namespace import (
    Entry,
    LogWriter,
    Replica,
    TamperedLog,
    UnauthorizedDevice,
    VersionVector,
    decode_entry,
    issue_certificate,
    public_bytes,
)


def account_with_log() -> tuple[Account, list[Entry]]:
    account = Account("tamper")
    laptop = account.add_device("laptop")
    for i in range(4):
        laptop.write(put(f"/f{i}.txt", f"content {i}"), BASE_MS + i)
    return account, laptop.log


def applied(account: Account, entries: list[Entry]) -> Replica:
    replica = account.new_replica()
    for entry in entries:
        replica.apply(entry)
    return replica


def snapshot_of(replica: Replica) -> object:
    return (replica.view.tree(), {p: replica.view.versions(p) for p in replica.view.paths()})


def test_entry_bytes_round_trip() -> None:
    _, log = account_with_log()
    for entry in log:
        assert decode_entry(entry.to_bytes()) == entry


@pytest.mark.parametrize("position", [5, 40, 120, 200, -30, -3])
def test_flipped_byte_is_rejected_with_device_and_seq(position: int) -> None:
    account, log = account_with_log()
    replica = applied(account, log[:2])
    before = snapshot_of(replica)
    raw = bytearray(log[2].to_bytes())
    raw[position] ^= 0x01
    with pytest.raises(TamperedLog) as info:
        replica.apply(decode_entry(bytes(raw)))
    assert "tampered namespace log" in str(info.value)
    assert snapshot_of(replica) == before
    replica.apply(log[2])  # the genuine entry still applies afterwards


def test_flipped_signature_names_device_and_seq() -> None:
    account, log = account_with_log()
    replica = applied(account, log[:2])
    forged = dataclasses.replace(log[2], signature=bytes(64))
    with pytest.raises(TamperedLog, match=rf"device {log[2].device_id} seq 3: bad signature"):
        replica.apply(forged)


def test_modified_content_with_original_signature_is_rejected() -> None:
    account, log = account_with_log()
    replica = account.new_replica()
    forged = dataclasses.replace(log[0], op=put("/f0.txt", "evil"))
    with pytest.raises(TamperedLog, match="seq 1: bad signature"):
        replica.apply(forged)
    assert replica.view.tree().keys() == {"/"}


def test_reordered_entries_are_rejected_by_apply() -> None:
    account, log = account_with_log()
    replica = applied(account, log[:1])
    before = snapshot_of(replica)
    with pytest.raises(TamperedLog, match="seq 3: gap in the log: entry 2 is missing"):
        replica.apply(log[2])
    with pytest.raises(TamperedLog, match="seq 1: out of order"):
        replica.apply(log[0])
    assert snapshot_of(replica) == before


def test_missing_entry_is_reported_by_receive() -> None:
    account, log = account_with_log()
    replica = account.new_replica()
    for entry in [log[0], log[2], log[3]]:
        replica.receive(entry)
    assert replica.missing() == {log[0].device_id: 2}
    assert replica.view.node("/f2.txt") is None
    replica.receive(log[1])
    assert replica.missing() == {}
    assert replica.view.node("/f3.txt") is not None


def test_entry_pointing_at_the_wrong_predecessor_is_rejected() -> None:
    """A validly signed entry that skips its predecessor (device re-signing history)."""
    account, log = account_with_log()
    device = account.devices[0]
    rewriter = LogWriter(log[0].account_id, device.key, dataclasses.replace(device.writer.head))
    rewriter.head = dataclasses.replace(rewriter.head, seq=1, hash=b"\x00" * 32)
    forked = rewriter.append(put("/other.txt", "x"), log[0].vv, BASE_MS + 10)
    replica = applied(account, log[:1])
    with pytest.raises(TamperedLog, match="seq 2: hash chain broken"):
        replica.apply(forked)


def test_fork_with_two_entries_for_one_seq_is_detected() -> None:
    account, log = account_with_log()
    device = account.devices[0]
    other = LogWriter(log[0].account_id, device.key)
    fork = other.append(put("/fork.txt", "fork"), VersionVector(), BASE_MS)
    replica = applied(account, log)
    with pytest.raises(TamperedLog, match="seq 1: two different entries"):
        replica.receive(fork)


def test_entry_by_unknown_device_is_unauthorized() -> None:
    account, log = account_with_log()
    stranger_key = seeded_key("stranger")
    stranger = LogWriter(log[0].account_id, stranger_key)
    entry = stranger.append(put("/intruder.txt", "x"), log[0].vv, BASE_MS)
    replica = applied(account, log)
    before = snapshot_of(replica)
    with pytest.raises(UnauthorizedDevice, match=rf"device {stranger.device_id} seq 1"):
        replica.receive(entry)
    assert snapshot_of(replica) == before


def test_certificate_signed_by_a_stranger_is_rejected() -> None:
    account, _ = account_with_log()
    stranger = seeded_key("stranger")
    cert = issue_certificate(stranger, account.root_public, public_bytes(stranger), "x", BASE_MS)
    replica = account.new_replica()
    replica.add_certificate(cert)  # kept waiting: its issuer is not authorized
    assert not replica.membership.is_authorized(cert.device_id)
    forged = dataclasses.replace(cert, device_name="renamed")
    with pytest.raises(UnauthorizedDevice, match="bad signature"):
        replica.add_certificate(forged)


def test_device_can_admit_another_device_in_any_certificate_order() -> None:
    account, _ = account_with_log()
    laptop = account.devices[0]
    phone_key = seeded_key("phone")
    phone_cert = issue_certificate(
        laptop.key, account.root_public, public_bytes(phone_key), "phone", BASE_MS
    )
    replica = Replica(account.root_public)
    assert replica.add_certificate(phone_cert) == []
    assert replica.add_certificate(laptop.cert) == [laptop.id, phone_cert.device_id]
    assert replica.membership.device_name(phone_cert.device_id) == "phone"


def test_entry_of_another_account_is_rejected() -> None:
    account, log = account_with_log()
    other = Account("other")
    other_device = other.add_device("laptop")
    entry = other_device.write(put("/x", "x"), BASE_MS)
    replica = applied(account, log)
    with pytest.raises(UnauthorizedDevice, match="another account"):
        replica.apply(entry)


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b'{"v":1}', b'{"v": 1}', b"[]", b'{"a":1.5}'],
)
def test_garbage_bytes_give_a_clear_error(raw: bytes) -> None:
    with pytest.raises(TamperedLog, match="malformed entry"):
        decode_entry(raw)
