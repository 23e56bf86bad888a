"""Secrets in a real Secret Service keyring (gnome-keyring on a private D-Bus) or a 0600 file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from desktop.daemon.config import (
    ConfigError,
    DeviceConfig,
    KnownNode,
    load_config,
    parse_config,
    save_config,
)
from desktop.daemon.secrets import FileStore, SecretStoreError, open_secret_store


def test_file_store_is_private_and_round_trips(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "keys" / "secrets.json")
    assert store.get("device") is None
    store.put("device", b"\x00secret\xff")
    store.put("account", b"other")
    assert store.get("device") == b"\x00secret\xff"
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700


def test_corrupt_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text("[1, 2")
    with pytest.raises(SecretStoreError, match="cannot read"):
        FileStore(path).get("x")


def test_no_keyring_backend_falls_back_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERMACLOUD_NO_KEYRING", "1")
    assert isinstance(open_secret_store("h", tmp_path / "s.json"), FileStore)
    with pytest.raises(SecretStoreError, match="no keyring is available"):
        open_secret_store("h", tmp_path / "s.json", prefer="keyring")


def test_real_secret_service_keyring(tmp_path: Path) -> None:
    """A real gnome-keyring on a private session bus: secrets persist in the keyring."""
    script = (
        "from pathlib import Path\n"
        "from desktop.daemon.secrets import KeyringStore, open_secret_store\n"
        "store = open_secret_store('home1', Path(r'{}'))\n"
        "assert isinstance(store, KeyringStore), store\n"
        "store.put('device', b'\\x01\\x02')\n"
        "assert store.get('device') == b'\\x01\\x02'\n"
        "assert open_secret_store('home2', Path(r'{}')).get('device') is None\n"
        "print('ok')\n"
    ).format(tmp_path / "unused.json", tmp_path / "unused.json")
    env = {k: v for k, v in os.environ.items() if k != "PERMACLOUD_NO_KEYRING"}
    env["HOME"] = str(tmp_path)
    env["XDG_DATA_HOME"] = str(tmp_path / "share")
    shell = (
        "echo -n test | gnome-keyring-daemon --unlock --components=secrets >/dev/null; "
        f'{sys.executable} -c "$SCRIPT"'
    )
    env["SCRIPT"] = script
    result = subprocess.run(
        ["dbus-run-session", "--", "sh", "-c", shell],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip().endswith("ok"), result.stderr
    assert not (tmp_path / "unused.json").exists()


def _config() -> DeviceConfig:
    return DeviceConfig(
        home_id="h",
        device_name="laptop",
        device_id="d" * 32,
        account_id="a" * 32,
        secret_store="file",
        known_nodes=[KnownNode("n" * 32, "127.0.0.1:4000")],
    )


def test_config_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    save_config(path, _config())
    assert load_config(path) == _config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not toml [", "not valid TOML"),
        ('home_id = "h"', "missing or empty 'device_name'"),
        (
            'home_id="h"\ndevice_name="x"\ndevice_id="d"\naccount_id="a"\nsecret_store="disk"',
            "secret_store must be",
        ),
        (
            'home_id="h"\ndevice_name="x"\ndevice_id="d"\naccount_id="a"\nsecret_store="file"\n'
            "[storage]\nk = 5\nn = 3\nhappy = 4",
            "1 <= k <= happy <= n",
        ),
    ],
)
def test_bad_config_is_a_one_line_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)


def test_missing_config_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="permacloud init"):
        load_config(tmp_path / "nope.toml")
