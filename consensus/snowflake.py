"""An n-ary Snowflake instance: one decision among the children of one parent block.

Follows avalanchego's ``nnarySnowflake`` with separate preference and confidence thresholds:

* a poll whose winner has less than ``alpha_preference`` resets confidence;
* a poll that reaches ``alpha_preference`` for another choice moves the preference there and
  resets confidence;
* confidence grows only when the winner reaches ``alpha_confidence``;
* the instance is final once confidence reaches ``beta``.

Weights are stake or draw counts; ``Parameters.passes`` compares them in integers.
"""

from __future__ import annotations

from consensus.params import Parameters


class Snowflake:
    """Preference, confidence and finality over a growing set of opaque choices."""

    __slots__ = ("_params", "confidence", "finalized", "preference")

    def __init__(self, params: Parameters, initial_preference: bytes) -> None:
        self._params = params
        self.preference = initial_preference
        self.confidence = 0
        self.finalized = False

    def record_poll(self, choice: bytes, weight: int, total: int) -> bool:
        """Record a poll whose winning ``choice`` got ``weight`` out of ``total``.

        Returns whether the poll was successful (reached ``alpha_preference``).
        """
        if self.finalized:
            return False
        params = self._params
        # ``Parameters.passes`` written out: this runs for every instance on a voted path.
        scaled = weight * params.k
        if scaled < params.alpha_preference * total:
            self.confidence = 0
            return False
        if choice != self.preference:
            self.preference = choice
            self.confidence = 0
        if scaled < params.alpha_confidence * total:
            self.confidence = 0
            return True
        self.confidence += 1
        if self.confidence >= params.beta:
            self.finalized = True
        return True

    def record_unsuccessful_poll(self) -> None:
        """Reset confidence: the poll did not reach ``alpha_preference`` for any choice."""
        if not self.finalized:
            self.confidence = 0

    def adopt(self, choice: bytes) -> None:
        """Move the preference to ``choice`` after a split poll, resetting confidence.

        This is our rule for split polls (see docs/consensus.md): it never adds
        confidence, so it cannot finalise anything; it only lets query-all polls leave a
        symmetric split.
        """
        if self.finalized:
            return
        if choice != self.preference:
            self.preference = choice
        self.confidence = 0
