"""One poll: the weighted answers of the validators queried for one preference."""

from __future__ import annotations

from consensus.params import Parameters

IGNORED, COUNTED, FINISHED = 0, 1, 2


class Poll:
    """Collects answers; each validator answers once and weighs its draw count (or stake).

    Early termination: the poll ends as soon as its outcome cannot change, that is when
    every answer is in, when no block can still reach ``alpha_preference``, or when one block
    already has ``alpha_confidence`` and all other and missing weight together cannot reach
    ``alpha_preference`` (so neither that block's descendants nor a rival can). Thresholds
    are precomputed as integers: ``w`` passes ``alpha`` when ``w * k >= alpha * total``.
    """

    __slots__ = (
        "_alpha_c_total",
        "_alpha_p_total",
        "_k",
        "closed",
        "deadline",
        "outstanding",
        "pending",
        "poll_id",
        "top_weight",
        "total",
        "voted_weight",
        "votes",
    )

    def __init__(self, poll_id: int, weights: dict[bytes, int], deadline: int,
                 params: Parameters) -> None:
        self.poll_id = poll_id
        self.pending = dict(weights)
        self.total = sum(weights.values())
        self.outstanding = self.total
        self.voted_weight = 0
        self.top_weight = 0
        self.votes: dict[bytes, int] = {}
        self.deadline = deadline
        self.closed = False
        self._k = params.k
        self._alpha_p_total = params.alpha_preference * self.total
        self._alpha_c_total = params.alpha_confidence * self.total
        self.closed = self._outcome_fixed()

    def record(self, validator: bytes, block_id: bytes) -> int:
        """Count ``validator``'s answer.

        Returns ``IGNORED`` when it was not asked, already answered or the poll is closed,
        ``FINISHED`` when this answer closed the poll, ``COUNTED`` otherwise.
        """
        if self.closed:
            return IGNORED
        weight = self.pending.pop(validator, 0)
        if weight == 0:
            return IGNORED
        # Runs once per vote: locals, and ``_outcome_fixed`` written out. An answer leaves
        # voted + outstanding weight unchanged, and the poll was open before it, so its
        # "no block can still reach alpha_preference" test cannot turn true here.
        outstanding = self.outstanding - weight
        voted = self.voted_weight + weight
        self.outstanding = outstanding
        self.voted_weight = voted
        votes = self.votes
        top = votes.get(block_id, 0) + weight
        votes[block_id] = top
        if top > self.top_weight:
            self.top_weight = top
        else:
            top = self.top_weight
        k = self._k
        if outstanding == 0 or (top * k >= self._alpha_c_total
                                and (voted - top + outstanding) * k < self._alpha_p_total):
            self.closed = True
            return FINISHED
        return COUNTED

    def drop(self, validator: bytes) -> int:
        """Count ``validator`` as having no vote (it failed); same returns as ``record``."""
        if self.closed:
            return IGNORED
        weight = self.pending.pop(validator, 0)
        if weight == 0:
            return IGNORED
        self.outstanding -= weight
        if self._outcome_fixed():
            self.closed = True
            return FINISHED
        return COUNTED

    def expire(self) -> None:
        """The deadline passed: every missing answer counts as no vote, and the poll closes."""
        self.pending.clear()
        self.outstanding = 0
        self.closed = True

    def _outcome_fixed(self) -> bool:
        if self.outstanding == 0:
            return True
        k = self._k
        if (self.voted_weight + self.outstanding) * k < self._alpha_p_total:
            return True
        if self.top_weight * k >= self._alpha_c_total:
            others = self.voted_weight - self.top_weight + self.outstanding
            return others * k < self._alpha_p_total
        return False

    def sorted_votes(self) -> list[tuple[bytes, int]]:
        """Votes as ``(block id, weight)`` in id order, for deterministic application."""
        return sorted(self.votes.items())
