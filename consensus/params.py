"""Consensus parameters, which check their own invariants (avalanchego ``Parameters.Verify``)."""

from __future__ import annotations

from dataclasses import dataclass

from consensus.errors import InvalidParameters


@dataclass(frozen=True, slots=True)
class Parameters:
    """Snowman parameters; time values are in the caller's integer time unit (ms in the sim).

    ``alpha_preference`` and ``alpha_confidence`` are out of ``k``. In small-validator-set mode
    the same thresholds apply to stake shares: a weight ``w`` out of total ``t`` passes ``alpha``
    when ``w * k >= alpha * t``.
    """

    k: int = 20
    """Validators sampled per poll (with few validators: the scale stake shares are read on)."""
    alpha_preference: int = 15
    """Votes out of `k` that move a preference."""
    alpha_confidence: int = 15
    """Votes out of `k` that count toward finality (at least `alpha_preference`)."""
    beta: int = 20
    """Successive confident polls that finalise a block."""
    concurrent_polls: int = 4
    """Polls in flight at once."""
    max_processing: int = 1024
    """Blocks being decided at once."""
    poll_timeout: int = 2_000
    """How long a poll waits for its votes (ms in a node)."""

    def verify(self) -> None:
        """Raise ``InvalidParameters`` unless every invariant holds."""
        if self.k < 1:
            raise InvalidParameters(f"k={self.k} must be >= 1")
        # alpha_p > k/2 guarantees that two conflicting blocks never both pass in one poll.
        if 2 * self.alpha_preference <= self.k:
            raise InvalidParameters(
                f"alpha_preference={self.alpha_preference} must be > k/2 (k={self.k})"
            )
        if self.alpha_confidence < self.alpha_preference:
            raise InvalidParameters(
                f"alpha_confidence={self.alpha_confidence} must be >= "
                f"alpha_preference={self.alpha_preference}"
            )
        if self.alpha_confidence > self.k:
            raise InvalidParameters(f"alpha_confidence={self.alpha_confidence} must be <= k")
        if self.beta < 1:
            raise InvalidParameters(f"beta={self.beta} must be >= 1")
        if self.concurrent_polls < 1:
            raise InvalidParameters(f"concurrent_polls={self.concurrent_polls} must be >= 1")
        if self.max_processing < 1:
            raise InvalidParameters(f"max_processing={self.max_processing} must be >= 1")
        if self.poll_timeout < 1:
            raise InvalidParameters(f"poll_timeout={self.poll_timeout} must be >= 1")

    def passes(self, alpha: int, weight: int, total: int) -> bool:
        """Whether ``weight`` out of ``total`` reaches ``alpha`` out of ``k``, in integers."""
        return weight * self.k >= alpha * total


DEFAULT_PARAMETERS = Parameters()
