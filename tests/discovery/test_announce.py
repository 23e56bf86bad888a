"""The signed LAN announcement, without sockets: round trip through TXT properties and every
reason to reject one."""

from __future__ import annotations

import dataclasses

import pytest

from desktop.net.announce import (
    BAD_SIGNATURE,
    FUTURE,
    ID_MISMATCH,
    MALFORMED,
    MAX_AGE,
    OTHER_HOUSEHOLD,
    STALE,
    UNKNOWN_KEY,
    Announcement,
    AnnouncementRejected,
    Household,
    check_announcement,
    from_properties,
    make_announcement,
    tag_key,
    to_properties,
)
from desktop.net.identity import DeviceKey

NOW = 1_800_000_000.0
ACCOUNT = "account-one"
KEY = tag_key(b"\x01" * 32)


def _household(*devices: DeviceKey, pinned: tuple[str, ...] = ()) -> Household:
    return Household(ACCOUNT, KEY, frozenset(d.public_bytes for d in devices), frozenset(pinned))


def _wire(props: dict[str, str]) -> dict[bytes, bytes | None]:
    """As zeroconf hands TXT properties to a browser."""
    return {k.encode(): v.encode() for k, v in props.items()}


def _reason(announcement: Announcement, household: Household, now: float = NOW) -> str:
    with pytest.raises(AnnouncementRejected) as caught:
        check_announcement(announcement, household, now)
    return caught.value.reason


def test_round_trip_through_txt_properties_is_accepted() -> None:
    device = DeviceKey.generate()
    sent = make_announcement(device, ["127.0.0.1:4001", "[::1]:4001"], KEY, ACCOUNT, NOW)
    props = to_properties(sent)
    assert all(len(f"{k}={v}") < 255 for k, v in props.items())
    received = from_properties(_wire(props))
    assert received == sent
    assert received.addresses == ("127.0.0.1:4001", "[::1]:4001")
    check_announcement(received, _household(device), NOW + 5)


def test_a_pinned_node_id_is_accepted_without_a_certificate() -> None:
    device = DeviceKey.generate()
    sent = make_announcement(device, ["127.0.0.1:4001"], KEY, ACCOUNT, NOW)
    check_announcement(sent, _household(pinned=(device.node_id,)), NOW)


def test_wrong_signature_is_rejected() -> None:
    device, forger = DeviceKey.generate(), DeviceKey.generate()
    honest = make_announcement(device, ["127.0.0.1:4001"], KEY, ACCOUNT, NOW)
    # The forger claims the device's identity at another address and signs with its own key.
    moved = dataclasses.replace(honest, addresses=("127.0.0.1:9",))
    forged = dataclasses.replace(moved, signature=forger.sign(moved.signed_bytes()))
    assert _reason(forged, _household(device)) == BAD_SIGNATURE
    flipped = bytes([honest.signature[0] ^ 1]) + honest.signature[1:]
    assert _reason(dataclasses.replace(honest, signature=flipped), _household(device)) == (
        BAD_SIGNATURE
    )


def test_node_id_that_is_not_the_keys_is_rejected() -> None:
    device, other = DeviceKey.generate(), DeviceKey.generate()
    sent = make_announcement(device, ["127.0.0.1:4001"], KEY, ACCOUNT, NOW)
    lying = dataclasses.replace(sent, node_id=other.node_id)
    assert _reason(lying, _household(device, other)) == ID_MISMATCH


def test_stale_and_future_timestamps_are_rejected() -> None:
    device = DeviceKey.generate()
    sent = make_announcement(device, ["127.0.0.1:4001"], KEY, ACCOUNT, NOW)
    assert _reason(sent, _household(device), NOW + MAX_AGE + 1) == STALE
    assert _reason(sent, _household(device), NOW - 3600) == FUTURE
    check_announcement(sent, _household(device), NOW + MAX_AGE - 1)


def test_another_accounts_tag_is_rejected() -> None:
    device = DeviceKey.generate()
    theirs = make_announcement(device, ["127.0.0.1:4001"], tag_key(b"\x02" * 32), ACCOUNT, NOW)
    assert _reason(theirs, _household(device)) == OTHER_HOUSEHOLD
    other_id = make_announcement(device, ["127.0.0.1:4001"], KEY, "account-two", NOW)
    assert _reason(other_id, _household(device)) == OTHER_HOUSEHOLD


def test_a_stranger_with_our_tag_but_an_unknown_key_is_rejected() -> None:
    """E.g. a device removed from the account that still has the secret: the pin decides."""
    device, stranger = DeviceKey.generate(), DeviceKey.generate()
    sent = make_announcement(stranger, ["127.0.0.1:4001"], KEY, ACCOUNT, NOW)
    assert _reason(sent, _household(device, pinned=(DeviceKey.generate().node_id,))) == (
        UNKNOWN_KEY
    )


def test_tags_do_not_link_announcements_of_one_household() -> None:
    a, b = DeviceKey.generate(), DeviceKey.generate()
    tags = {
        make_announcement(a, ["127.0.0.1:1"], KEY, ACCOUNT, NOW).tag,
        make_announcement(a, ["127.0.0.1:1"], KEY, ACCOUNT, NOW + 1).tag,
        make_announcement(b, ["127.0.0.1:1"], KEY, ACCOUNT, NOW).tag,
    }
    assert len(tags) == 3


@pytest.mark.parametrize(
    "change",
    [
        {"v": "9"},
        {"id": "not-a-node-id"},
        {"pk": "AAAA"},
        {"pk": "!!!"},
        {"t": "-5"},
        {"a0": "example.org:443"},
        {"a0": "127.0.0.1:0"},
        {"s": None},
    ],
)
def test_malformed_properties_are_rejected(change: dict[str, str | None]) -> None:
    sent = make_announcement(DeviceKey.generate(), ["127.0.0.1:4001"], KEY, ACCOUNT, NOW)
    props: dict[str, str | None] = dict(to_properties(sent))
    props.update(change)
    with pytest.raises(AnnouncementRejected) as caught:
        from_properties(props)
    assert caught.value.reason == MALFORMED


def test_no_address_is_malformed() -> None:
    sent = make_announcement(DeviceKey.generate(), ["127.0.0.1:4001"], KEY, ACCOUNT, NOW)
    props: dict[str, str | None] = dict(to_properties(sent))
    del props["a0"]
    with pytest.raises(AnnouncementRejected) as caught:
        from_properties(props)
    assert caught.value.reason == MALFORMED
