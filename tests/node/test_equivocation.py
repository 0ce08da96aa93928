"""The node's side of equivocation: it never signs two blocks for one slot, and it turns two
signed headers for one slot into a report the ledger accepts."""

from __future__ import annotations

from ogpu_node.ledger import Block, State, apply_block, apply_tx
from ogpu_node.ledger.block import sign_header
from ogpu_node.node.equivocation import EquivocationWatch, SigningGuard
from ogpu_node.storage import ChainStore, MemoryKV
from tests.ledger.helpers import KEYS, VALIDATOR, genesis, next_block, signed

REPORTER = KEYS[1]


def chain_at_height_one() -> tuple[Block, State]:
    block, _ = next_block(genesis())
    return block, apply_block(genesis(), block)


def test_the_guard_sends_the_recorded_block_again_and_never_another() -> None:
    store = ChainStore(MemoryKV())
    store.commit_block(height=0, block_hash=b"g" * 32, block_bytes=b"genesis", tx_hashes=[],
                       state_changes={}, meta=b"")
    _, state = chain_at_height_one()
    first, _ = next_block(state, timestamp=state.timestamp + 100)
    other, _ = next_block(state, timestamp=state.timestamp + 200)
    guard = SigningGuard(store)
    assert guard.propose(2, 0, lambda: first) == (first, True)
    # after a restart or an engine reset: the same slot gives the same block, unbuilt
    assert guard.propose(2, 0, lambda: other) == (first, False)
    assert SigningGuard(store).propose(2, 0, lambda: other) == (first, False)
    # a later slot may hold a new block
    assert guard.propose(2, 1, lambda: other) == (other, True)


def test_two_headers_for_one_slot_become_a_report_that_slashes() -> None:
    parent, state = chain_at_height_one()
    one, _ = next_block(state, timestamp=state.timestamp + 100)
    two, _ = next_block(state, timestamp=state.timestamp + 300)  # same 1 s slot, other block
    watch = EquivocationWatch()
    assert watch.observe(one, parent.header, state) is None
    assert watch.observe(one, parent.header, state) is None  # the same block again
    report = watch.observe(two, parent.header, state)
    assert report is not None
    assert watch.observe(two, parent.header, state) is None  # reported once
    after = apply_block(state, one)
    slashed = apply_tx(after, signed(REPORTER, after.account(REPORTER.address).nonce, report),
                       VALIDATOR.address)
    assert VALIDATOR.address in slashed.tombstones
    assert slashed.account(VALIDATOR.address).stake < after.account(VALIDATOR.address).stake


def test_a_later_slot_or_a_forged_signature_is_not_equivocation() -> None:
    parent, state = chain_at_height_one()
    slot_ms = state.params.slot_ms
    one, _ = next_block(state, timestamp=state.timestamp + 100)
    later, _ = next_block(state, timestamp=state.timestamp + slot_ms + 100)
    forged_header = next_block(state, timestamp=state.timestamp + 200)[0].header
    forged = Block(forged_header, sign_header(KEYS[2], forged_header), ())
    watch = EquivocationWatch()
    assert watch.observe(forged, parent.header, state) is None  # not recorded either:
    assert watch.observe(one, parent.header, state) is None  # so `one` is the first here
    assert watch.observe(later, parent.header, state) is None  # a re-proposal, next slot
