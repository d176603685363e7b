"""The drizzle-orm peer (placeholder until tests/peers/drizzle lands)."""

import pytest


@pytest.fixture(scope='session')
def drizzle_peer():
    pytest.skip('drizzle peer not built yet')
