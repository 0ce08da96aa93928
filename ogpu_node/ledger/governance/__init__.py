"""Governance by stake: proposals to change governable parameters, voted by bonded stake.

`bounds.py` holds the one table of governable parameters and their bounds; `records.py` the
transaction payloads and state records; `rules.py` the transitions (proposing, voting, and the
tally and activation every block runs at its end).
"""
