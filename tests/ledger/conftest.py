"""Loads the hypothesis profile of the ledger tests: `deep` when OGPU_DEEP=1, else `ci`."""

from __future__ import annotations

from hypothesis import settings

from tests.ledger.profiles import PROFILE

settings.load_profile(PROFILE)
