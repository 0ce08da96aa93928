"""A one-process development chain over devnet homes, before nodes talk to each other.

It holds every validator key of a devnet folder (made by `ogpu-node genesis new`), proposes blocks
in turn for them, fills them with transfers between the well-known dev accounts, and applies and
commits each block to node0's LevelDB exactly as a node does with a finalised block. Run it again
and it resumes from disk at the next height.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ogpu_node.chain import Chain
from ogpu_node.config import load_config
from ogpu_node.encoding import decode, encode
from ogpu_node.genesis import Genesis, dev_account_key, load_genesis
from ogpu_node.keys import PrivateKey, read_key_file
from ogpu_node.ledger import Block, Transfer, build_block, sign_transaction
from ogpu_node.storage import ChainStore, LevelDBKV
from ogpu_node.types import Amount


@dataclass(frozen=True)
class BlockReport:
    height: int
    txs: int
    proposer: bytes
    state_root: bytes
    issued: int
    elapsed_ms: float


def open_chain(home: Path, genesis: Genesis) -> Chain:
    """Open (or create) the chain database of the node at `home`."""
    config = load_config(home)
    path = config.path(config.data_dir) / "chain"
    path.parent.mkdir(parents=True, exist_ok=True)
    return Chain.open(ChainStore(LevelDBKV(str(path))), genesis)


def validator_keys(homes: Path, genesis: Genesis) -> dict[bytes, PrivateKey]:
    """The validator keys found under `homes`, by address, for the genesis validators."""
    found = {}
    for key_file in sorted(homes.glob("node*/validator_key.json")):
        key = read_key_file(key_file)
        found[bytes(key.address)] = key
    wanted = {bytes(v.address) for v in genesis.validators}
    return {a: k for a, k in found.items() if a in wanted}


def run_devchain(
    homes: Path, blocks: int, txs_per_block: int, dev_accounts: int,
    clock: Callable[[], float] = time.time,
) -> Iterator[BlockReport]:
    """Produce, apply and commit `blocks` blocks; yields a report per block."""
    genesis = load_genesis(homes / "genesis.json")
    keys = validator_keys(homes, genesis)
    if not keys:
        raise FileNotFoundError(f"no validator keys of this genesis under {homes}")
    chain = open_chain(homes / "node0", genesis)
    users = [dev_account_key(i) for i in range(dev_accounts)]
    rng = random.Random(chain.state.height)
    try:
        for _ in range(blocks):
            start = time.perf_counter()
            state = chain.state
            validators = state.validators
            proposer = keys[bytes(validators[(state.height + 1) % len(validators)].address)]
            nonces = {u.address: state.account(u.address).nonce for u in users}
            txs = []
            for _ in range(txs_per_block):
                sender, recipient = rng.choice(users), rng.choice(users)
                payload = Transfer(recipient.address, Amount(1_000_000))
                txs.append(sign_transaction(sender, chain_id=state.chain_id,
                                            nonce=nonces[sender.address],
                                            fee=state.params.min_fee, payload=payload))
                nonces[sender.address] += 1
            timestamp = max(int(clock() * 1000), state.timestamp + 1)
            block, _ = build_block(state, txs, proposer, timestamp)
            # Validate the block as a receiving node would: from its bytes.
            new_state = chain.apply_and_commit(decode(Block, encode(block)))
            yield BlockReport(new_state.height, len(txs), bytes(proposer.address),
                              new_state.root, new_state.issued,
                              (time.perf_counter() - start) * 1000)
    finally:
        chain.store.close()
