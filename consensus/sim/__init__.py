"""Deterministic simulation of many consensus engines (``python -m consensus.sim``)."""
