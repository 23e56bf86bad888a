"""Shared fixtures. Being a rootdir conftest without `__init__.py`, it also puts `tests/` on
sys.path, so tests import helpers such as `helpers_nodes` directly."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_nodes import NodeFactory

# Zeroconf in any daemon a test starts stays on loopback: no traffic leaves 127.0.0.0/8.
os.environ["PERMACLOUD_ZEROCONF_INTERFACES"] = "127.0.0.1"


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[NodeFactory]:
    """Starts real `permacloud node run` processes; all of them are stopped at teardown."""
    factory = NodeFactory(tmp_path)
    yield factory
    factory.stop_all()
