"""Fixtures shared by the fault suite (tests/conftest.py provides pg, own_cluster and drizzle_peer)."""

import pytest

from harness.faults import FaultLab, references


@pytest.fixture
def refs(pg, drizzle_peer, tmp_path_factory):
    """The per-revision reference schemas of the session's server (built once, shared)."""
    return references(pg, drizzle_peer, tmp_path_factory)


@pytest.fixture
def lab(pg, tmp_path):
    """The example homelab on fresh databases of the session's server; dropped afterwards."""
    lab = FaultLab(pg, tmp_path)
    yield lab
    lab.drop()
