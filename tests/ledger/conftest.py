"""Loads the hypothesis profile of the ledger tests (`deep` when OGPU_DEEP=1, else `ci`), and the
market tests' `chain`: a market chain where providers A and B are registered (a module may
define its own)."""

from __future__ import annotations

import pytest
from hypothesis import settings

from tests.ledger.market_helpers import PROVIDER_A, PROVIDER_B, MarketChain
from tests.ledger.profiles import PROFILE

settings.load_profile(PROFILE)


@pytest.fixture
def chain() -> MarketChain:
    c = MarketChain.start()
    c.register(PROVIDER_A)
    c.register(PROVIDER_B)
    return c
