"""Shared fixtures. Being a rootdir conftest without `__init__.py`, it also puts `tests/` on
sys.path, so tests import helpers such as `helpers_nodes` directly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_nodes import NodeFactory


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[NodeFactory]:
    """Starts real `permacloud node run` processes; all of them are stopped at teardown."""
    factory = NodeFactory(tmp_path)
    yield factory
    factory.stop_all()
