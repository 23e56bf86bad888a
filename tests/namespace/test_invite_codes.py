"""Invite codes: round trip, typo detection, expiry, single use, and the join exchange."""

import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from desktop.core.invite import (
    Invite,
    InviteExpired,
    InviteInvalid,
    InviteRecord,
    InviteUsed,
    accept_join_request,
    check_usable,
    make_join_request,
    make_join_response,
    mark_used,
    open_join_response,
    parse_invite_code,
    record_failure,
)

NOW = 1_700_000_000.0
NODE = "node-7f3a9c"
CHANNEL = b"inviter TLS certificate bytes"


def new_invite(**kwargs: object) -> tuple[str, InviteRecord]:
    args: dict[str, object] = {
        "addresses": ["192.168.1.20:8443"],
        "inviter_node_id": NODE,
        "kind": "device",
        "ttl_seconds": 600,
        "now": NOW,
    }
    args.update(kwargs)
    return Invite.create(**args)  # type: ignore[arg-type]


def test_code_is_short_and_round_trips() -> None:
    code, record = new_invite()
    assert code.startswith("pc-")
    assert len(code.replace("-", "")) <= 48
    parsed = parse_invite_code(code)
    assert parsed == record.code
    assert parsed.addresses == (("192.168.1.20", 8443),)
    assert parsed.kind == "device"
    assert parsed.pins(NODE) and not parsed.pins("node-other")
    # Tolerates case, spaces and the usual look-alike characters.
    assert parse_invite_code("  " + code.upper().replace("-", " - ") + "\n") == parsed


def test_several_address_kinds_round_trip() -> None:
    addrs = [("::1", 9000), ("laptop.local", 8443), ("10.0.0.2", 1)]
    code, _ = new_invite(addresses=addrs, kind="node")
    parsed = parse_invite_code(code)
    assert parsed.addresses == tuple(addrs)
    assert parsed.kind == "node"


def test_every_single_character_typo_is_caught() -> None:
    """Exhaustive over one code: all 31 wrong characters at every position (1302 typos)."""
    code, _ = new_invite(secret=b"12345678")
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    tried = 0
    for index, char in enumerate(code):
        if index < 3 or char == "-":
            continue
        for new in alphabet.replace(char, ""):
            tried += 1
            with pytest.raises(InviteInvalid):
                parse_invite_code(code[:index] + new + code[index + 1 :])
    assert tried == 31 * len(code.replace("-", "")[2:])


def test_swapped_adjacent_characters_are_caught() -> None:
    code, _ = new_invite(secret=b"abcdefgh")
    chars = [i for i, c in enumerate(code) if c != "-" and i >= 3]
    rnd = random.Random(1)
    for _ in range(50):
        i = rnd.choice(chars[:-1])
        j = chars[chars.index(i) + 1]
        if code[i] == code[j]:
            continue
        swapped = list(code)
        swapped[i], swapped[j] = swapped[j], swapped[i]
        with pytest.raises(InviteInvalid, match=r"checksum|length|garbled|kind|version"):
            parse_invite_code("".join(swapped))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("pc-", "empty"),
        ("hello world!", "invalid characters"),
        ("pc-uuuu", "invalid characters"),
        ("pc-abcde-fgh", "wrong length"),
    ],
)
def test_garbage_codes_give_clear_errors(text: str, message: str) -> None:
    with pytest.raises(InviteInvalid, match=message):
        parse_invite_code(text)


def test_missing_or_extra_character_is_caught() -> None:
    code, _ = new_invite()
    with pytest.raises(InviteInvalid):
        parse_invite_code(code[:-1])
    with pytest.raises(InviteInvalid):
        parse_invite_code(code + "7")


def test_bad_invite_parameters_are_rejected() -> None:
    with pytest.raises(InviteInvalid, match="host:port"):
        new_invite(addresses=["nohostport"])
    with pytest.raises(InviteInvalid, match="port out of range"):
        new_invite(addresses=["1.2.3.4:70000"])
    with pytest.raises(InviteInvalid, match="kind"):
        new_invite(kind="admin")
    with pytest.raises(InviteInvalid, match="positive"):
        new_invite(ttl_seconds=0)


def test_expiry_and_single_use() -> None:
    _, record = new_invite(ttl_seconds=60)
    check_usable(record, NOW + 59)
    with pytest.raises(InviteExpired):
        check_usable(record, NOW + 60)
    used = mark_used(record, NOW + 1)
    with pytest.raises(InviteUsed):
        check_usable(used, NOW + 2)
    with pytest.raises(InviteUsed):
        mark_used(used, NOW + 2)
    assert InviteRecord.from_json(used.to_json()) == used


def run_exchange(
    joiner_code: str, record: InviteRecord, now: float = NOW + 5
) -> tuple[bytes, InviteRecord]:
    joiner_key = Ed25519PrivateKey.generate()
    code = parse_invite_code(joiner_code)
    request, state = make_join_request(code, NODE, joiner_key, "phone", CHANNEL)
    accepted = accept_join_request(record, request, CHANNEL, now)
    record = mark_used(record, now)
    response = make_join_response(record, accepted, b"account material")
    return open_join_response(state, response), record


def test_exchange_delivers_the_account_material_once() -> None:
    code, record = new_invite()
    payload, used = run_exchange(code, record)
    assert payload == b"account material"
    with pytest.raises(InviteUsed):
        run_exchange(code, used)


def test_exchange_after_expiry_is_refused() -> None:
    code, record = new_invite(ttl_seconds=10)
    with pytest.raises(InviteExpired):
        run_exchange(code, record, now=NOW + 11)


def test_joiner_with_the_wrong_secret_is_rejected_and_counted() -> None:
    _, record = new_invite(secret=b"rightsec")
    wrong_code, _ = new_invite(secret=b"wrongsec")
    joiner_key = Ed25519PrivateKey.generate()
    request, _ = make_join_request(parse_invite_code(wrong_code), NODE, joiner_key, "x", CHANNEL)
    with pytest.raises(InviteInvalid, match="another invite"):
        accept_join_request(record, request, CHANNEL, NOW)
    for _ in range(5):
        record = record_failure(record)
    with pytest.raises(InviteInvalid, match="too many failed attempts"):
        check_usable(record, NOW)


def test_proof_bound_to_channel_and_keys() -> None:
    code, record = new_invite()
    joiner_key = Ed25519PrivateKey.generate()
    parsed = parse_invite_code(code)
    request, _ = make_join_request(parsed, NODE, joiner_key, "phone", CHANNEL)
    with pytest.raises(InviteInvalid, match="does not prove knowledge"):
        accept_join_request(record, request, b"another TLS channel", NOW)
    other_key = Ed25519PrivateKey.generate()
    swapped = request.replace(
        request.split(b'"joiner_key":"')[1].split(b'"')[0],
        make_join_request(parsed, NODE, other_key, "phone", CHANNEL)[0]
        .split(b'"joiner_key":"')[1]
        .split(b'"')[0],
    )
    with pytest.raises(InviteInvalid):
        accept_join_request(record, swapped, CHANNEL, NOW)


def test_joiner_refuses_an_unpinned_peer_and_a_fake_response() -> None:
    code, _ = new_invite()
    parsed = parse_invite_code(code)
    with pytest.raises(InviteInvalid, match="not the node"):
        make_join_request(parsed, "impostor", Ed25519PrivateKey.generate(), "x", CHANNEL)
    _, state = make_join_request(parsed, NODE, Ed25519PrivateKey.generate(), "x", CHANNEL)
    _, other_record = new_invite(secret=b"notthis!")
    request, _ = make_join_request(
        other_record.code, NODE, Ed25519PrivateKey.generate(), "x", CHANNEL
    )
    accepted = accept_join_request(other_record, request, CHANNEL, NOW)
    fake = make_join_response(other_record, accepted, b"evil material")
    with pytest.raises(InviteInvalid, match="does not verify"):
        open_join_response(state, fake)
    with pytest.raises(InviteInvalid, match="malformed"):
        open_join_response(state, b"garbage")
