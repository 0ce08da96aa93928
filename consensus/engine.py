"""The per-node Snowman engine: sans-I/O, messages and time in, messages and decisions out."""

from __future__ import annotations

from consensus.block_tree import BlockTree
from consensus.decisions import NO_OUTPUT, Chits, Decision, Fetch, Output, Query
from consensus.params import Parameters
from consensus.poll import FINISHED, IGNORED, Poll
from consensus.sampling import RandomSource, query_all_by_stake, sample_by_stake
from consensus.validators import ValidatorSet


class Engine:
    """One node's consensus state.

    Polls are issued while blocks are processing, at most ``concurrent_polls`` at a time. A
    poll samples ``k`` validators by stake (or, with at most ``k`` validators, queries all of
    them and weighs answers by stake share). Finished polls are applied to the block tree in
    the order they were issued, so a fast later poll waits for a slow earlier one.
    """

    def __init__(
        self,
        node_id: bytes,
        params: Parameters,
        *,
        validators: ValidatorSet,
        last_accepted_id: bytes,
        last_accepted_height: int,
        rng: RandomSource,
    ) -> None:
        params.verify()
        self.node_id = node_id
        self.params = params
        self.tree = BlockTree(params, last_accepted_id, last_accepted_height)
        self.set_validators(validators)
        self._rng = rng
        self._polls: dict[int, Poll] = {}
        self._next_poll_id = 1
        self.polls_applied = 0

    @property
    def preference(self) -> bytes:
        """The block this node currently prefers (the tip of its preferred branch)."""
        return self.tree.preference

    @property
    def last_accepted_id(self) -> bytes:
        """Id of the last block this node finalised."""
        return self.tree.last_accepted_id

    @property
    def last_accepted_height(self) -> int:
        """Height of the last block this node finalised."""
        return self.tree.last_accepted_height

    @property
    def outstanding_polls(self) -> int:
        """Polls issued and not yet applied."""
        return len(self._polls)

    def next_deadline(self) -> int | None:
        """The earliest deadline among outstanding polls, for the caller's timer."""
        if not self._polls:
            return None
        return min(poll.deadline for poll in self._polls.values())

    def add_block(self, block_id: bytes, parent_id: bytes, height: int, now: int) -> Output:
        """Add a block (see ``BlockTree.add`` for errors) and start polls if idle."""
        decisions = self.tree.add(block_id, parent_id, height)
        return self._advance(now, decisions, ())

    def on_query(self, sender: bytes, poll_id: int) -> Chits:
        """Answer a query with our preference."""
        return Chits(sender, poll_id, self.tree.preference)

    def on_chits(self, sender: bytes, poll_id: int, preferred_id: bytes, now: int) -> Output:
        """Count ``sender``'s answer to poll ``poll_id``; ignore unexpected or repeated ones."""
        poll = self._polls.get(poll_id)
        if poll is None:
            return NO_OUTPUT
        status = poll.record(sender, preferred_id)
        if status == IGNORED:
            return NO_OUTPUT
        tree = self.tree
        # ``tree.is_known`` written out (once per vote), our own preference tested first.
        if (preferred_id == tree.preference or preferred_id in tree._nodes
                or preferred_id in tree._rejected):
            if status != FINISHED:
                return NO_OUTPUT
            return self._advance(now, [], ())
        fetches = (Fetch(sender, preferred_id),)
        if status != FINISHED:
            return Output(fetches=fetches)
        return self._advance(now, [], fetches)

    def on_query_failed(self, sender: bytes, poll_id: int, now: int) -> Output:
        """``sender`` could not be reached for poll ``poll_id``: it counts as no vote."""
        poll = self._polls.get(poll_id)
        if poll is None or poll.drop(sender) != FINISHED:
            return NO_OUTPUT
        return self._advance(now, [], ())

    def on_timeout(self, now: int) -> Output:
        """Expire polls whose deadline is at or before ``now``; missing answers are no votes."""
        if not self._expire(now):
            return NO_OUTPUT
        return self._advance(now, [], ())

    def tick(self, now: int) -> Output:
        """Expire late polls and start new ones if blocks are processing."""
        self._expire(now)
        return self._advance(now, [], ())

    def set_validators(self, validators: ValidatorSet) -> None:
        """Use ``validators`` for polls issued from now on.

        For a switch at a height boundary that every node finalises at the same block; polls
        already in flight keep their sample. (The node currently builds a new engine instead.)
        """
        self.validators = validators
        self.small_set_mode = len(validators) <= self.params.k
        self._query_all = query_all_by_stake(validators) if self.small_set_mode else {}

    def _expire(self, now: int) -> bool:
        """Close the open polls whose deadline passed; whether there was any."""
        expired = False
        for poll in self._polls.values():
            if poll.deadline <= now and not poll.closed:
                poll.expire()
                expired = True
        return expired

    def _advance(self, now: int, decisions: list[Decision], fetches: tuple[Fetch, ...]
                 ) -> Output:
        queries: list[Query] = []
        while True:
            self._apply_finished_in_order(decisions)
            issued = self._issue_polls(now, queries)
            # A poll can finish as it is issued (our own vote suffices with one validator).
            if not issued or not self._front_finished():
                break
        if not decisions and not queries and not fetches:
            return NO_OUTPUT
        return Output(tuple(decisions), tuple(queries), fetches)

    def _front_finished(self) -> bool:
        for poll in self._polls.values():
            return poll.closed
        return False

    def _apply_finished_in_order(self, decisions: list[Decision]) -> None:
        polls = self._polls
        while polls:
            poll_id = next(iter(polls))
            poll = polls[poll_id]
            if not poll.closed:
                return
            del polls[poll_id]
            self.polls_applied += 1
            decisions.extend(self.tree.record_poll(poll.sorted_votes(), poll.total, self._rng))

    def _issue_polls(self, now: int, queries: list[Query]) -> bool:
        issued = False
        params = self.params
        while self.tree.processing_count > 0 and len(self._polls) < params.concurrent_polls:
            if self.small_set_mode:
                weights = self._query_all
            else:
                weights = sample_by_stake(self.validators, params.k, self._rng)
            poll_id = self._next_poll_id
            self._next_poll_id += 1
            poll = Poll(poll_id, weights, now + params.poll_timeout, params)
            self._polls[poll_id] = poll
            preference = self.tree.preference
            node_id = self.node_id
            if node_id in weights:
                poll.record(node_id, preference)
                recipients = tuple(v for v in weights if v != node_id)
            else:
                recipients = tuple(weights)
            queries.append(Query(poll_id, preference, recipients))
            issued = True
        return issued
