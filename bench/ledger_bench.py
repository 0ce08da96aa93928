"""`scripts/bench ledger`: verified transfers applied per second on one core, and the time to
commit a 1,000-transaction block to LevelDB.

Baselines measured in the same run: bare Ed25519 verification of the same transactions (the
ceiling for verified transfers, when each is verified once), and a bare plyvel synced batch of
the same records. Blocks are applied twice: as a syncing node meets them (no signature seen
before) and as a validator does after admitting their transactions to its mempool (each
signature verified at admission, `keys.verified_signatures`).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench.report import pass_fail, print_table, write_json
from ogpu_node.chain import Chain
from ogpu_node.encoding import decode, encode
from ogpu_node.genesis import Genesis, build_genesis, dev_account_key, load_template
from ogpu_node.keys import verified_signatures, verify
from ogpu_node.ledger import Block, State, Transfer, apply_block, build_block, sign_transaction
from ogpu_node.ledger.tx import SIGN_KIND_TX, Transaction, decode_transaction
from ogpu_node.storage import ChainStore, LevelDBKV
from ogpu_node.storage.leveldb_binding import plyvel
from ogpu_node.types import Amount, ogpu

GOAL_TPS = 5_000
GOAL_COMMIT_MS = 20.0


def _pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned"


def _make_blocks(
    accounts: int, blocks: int, per_block: int, seed: int
) -> tuple[Genesis, list[bytes]]:
    """A genesis with `accounts` funded dev accounts and `blocks` encoded blocks of transfers."""
    genesis = build_genesis(load_template(), [("v0", dev_account_key(10_000).public_key.raw)],
                            genesis_time_ms=1_000, dev_accounts=accounts, dev_balance=ogpu(1_000))
    keys = [dev_account_key(i) for i in range(accounts)]
    proposer = dev_account_key(10_000)
    rng = random.Random(seed)
    nonces = [0] * accounts
    state: State = genesis.state()
    encoded = []
    for b in range(blocks):
        txs = []
        for _ in range(per_block):
            i, j = rng.randrange(accounts), rng.randrange(accounts)
            payload = Transfer(keys[j].address, Amount(1 + b))
            txs.append(sign_transaction(keys[i], chain_id=genesis.chain_id, nonce=nonces[i],
                                        fee=1_000, payload=payload))
            nonces[i] += 1
        block, state = build_block(state, txs, proposer, 2_000 + b)
        encoded.append(encode(block))
    return genesis, encoded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench ledger")
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--per-block", type=int, default=1_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    pinned = _pin_one_core()
    print(f"building {args.blocks} blocks of {args.per_block} signed transfers "
          f"among {args.accounts} accounts ({pinned}) ...")
    genesis, encoded = _make_blocks(args.accounts, args.blocks, args.per_block, seed=7)
    total_txs = args.blocks * args.per_block

    # Baseline: bare signature verification of the same transactions.
    txs: list[Transaction] = [decode_transaction(t.encoded) for raw in encoded
                              for t in decode(Block, raw).txs]
    verified_signatures.clear()
    start = time.perf_counter()
    for tx in txs:
        verify(tx.sender_key, tx.chain_id, SIGN_KIND_TX, tx.signing_bytes, tx.signature)
    verify_rate = len(txs) / (time.perf_counter() - start)

    def apply_all() -> tuple[float, list[tuple[Block, State]]]:
        """Decode each block from bytes, check it and apply every transaction: tx/s."""
        state = genesis.state()
        applied: list[tuple[Block, State]] = []
        start = time.perf_counter()
        for raw in encoded:
            block = decode(Block, raw)
            state = apply_block(state, block)
            applied.append((block, state))
        return total_txs / (time.perf_counter() - start), applied

    # A syncing node: no signature seen before.
    verified_signatures.clear()
    sync_rate, _ = apply_all()
    # A validator: every transaction was verified when its mempool admitted it.
    verified_signatures.clear()
    for tx in txs:
        verify(tx.sender_key, tx.chain_id, SIGN_KIND_TX, tx.signing_bytes, tx.signature)
    apply_rate, applied = apply_all()

    # Commit each block (block, indices, state changes) to LevelDB in one synced batch.
    commit_ms, raw_ms = [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = ChainStore(LevelDBKV(str(Path(tmp) / "chain")))
        chain = Chain.open(store, genesis)
        for block, new_state in applied:
            start = time.perf_counter()
            chain.commit(block, new_state)
            commit_ms.append((time.perf_counter() - start) * 1000)
        batch = list(store._kv.iterate())  # the same records, for the bare plyvel baseline
        store.close()
        db = plyvel.DB(str(Path(tmp) / "raw"), create_if_missing=True)
        per_commit = len(batch) // max(1, len(applied))
        for k in range(len(applied)):
            start = time.perf_counter()
            with db.write_batch(transaction=True, sync=True) as wb:
                for key, value in batch[k * per_commit:(k + 1) * per_commit]:
                    wb.put(key, value)
            raw_ms.append((time.perf_counter() - start) * 1000)
        db.close()

    commit_median = statistics.median(commit_ms)
    rows = [
        ["verified transfers applied /s (decode block + apply_block), after admission",
         apply_rate, f">= {GOAL_TPS:,}", pass_fail(apply_rate >= GOAL_TPS)],
        ["  the same, signatures not seen before (a syncing node)", sync_rate, "", ""],
        ["  baseline: bare Ed25519 verify /s (same txs)", verify_rate, "", ""],
        [f"commit of a {args.per_block}-tx block to LevelDB, median ms", commit_median,
         f"< {GOAL_COMMIT_MS:.0f}", pass_fail(commit_median < GOAL_COMMIT_MS)],
        ["  commit, max ms", max(commit_ms), "", ""],
        ["  baseline: bare plyvel synced batch of the same records, median ms",
         statistics.median(raw_ms), "", ""],
    ]
    print_table("ledger benchmark (one core)", ["measure", "value", "goal", ""], rows)
    write_json("ledger", {
        "transactions": total_txs, "accounts": args.accounts, "per_block": args.per_block,
        "applied_tps": apply_rate, "applied_unseen_tps": sync_rate,
        "verify_only_tps": verify_rate,
        "commit_ms": commit_ms, "commit_median_ms": commit_median,
        "plyvel_batch_median_ms": statistics.median(raw_ms),
        "goals": {"applied_tps": GOAL_TPS, "commit_median_ms": GOAL_COMMIT_MS},
        "pass": apply_rate >= GOAL_TPS and commit_median < GOAL_COMMIT_MS,
    }, args.out)
    return 0
