"""The `discovery` and `introducers` config fields: defaults, round trip, one-line errors."""

from __future__ import annotations

import pytest

from desktop.daemon.config import ConfigError, DeviceConfig, parse_config, parse_introducer
from desktop.net.identity import DeviceKey

BASE = """
home_id = "h"
device_name = "laptop"
device_id = "d"
account_id = "a"
secret_store = "file"
"""


def test_defaults_discover_on_the_lan_with_no_introducers() -> None:
    config = parse_config(BASE)
    assert config.discovery is True
    assert config.introducers == []


def test_introducers_round_trip_through_toml() -> None:
    node_id = DeviceKey.generate().node_id
    config = parse_config(BASE + f'discovery = false\nintroducers = ["{node_id}@10.0.0.2:4001"]\n')
    assert config.discovery is False
    again: DeviceConfig = parse_config(config.to_toml())
    assert again.introducers == [f"{node_id}@10.0.0.2:4001"]
    assert again.discovery is False
    assert "introducers" not in again.extra
    known = parse_introducer(again.introducers[0])
    assert (known.id, known.address) == (node_id, "10.0.0.2:4001")


@pytest.mark.parametrize(
    "line",
    [
        'discovery = "yes"',
        'introducers = "abc@1.2.3.4:5"',
        "introducers = [1]",
        'introducers = ["1.2.3.4:5"]',
        'introducers = ["tooshort@1.2.3.4:5"]',
        f'introducers = ["{"a" * 32}@1.2.3.4"]',
    ],
)
def test_bad_values_are_one_line_config_errors(line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + line + "\n")
    assert "\n" not in str(caught.value)
