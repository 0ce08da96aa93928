"""Drawing a claim's verification committee by stake, from chain data only.

The seed is the claim (task or pool request) id, its attempt, the check's round and the hash of
a block made after the claim: a claim recorded in block h is drawn for in block
h + `committee_delay_blocks`, from the hash of that block's parent (`verification.py`). Every
node draws the same committee; members are drawn by stake without replacement; the provider, the
client and the members of earlier rounds of the same check are never drawn.

What grinding costs. With the default delay of 2 the seed is the hash of block h + 1, which does
not exist when the provider sends its claim, so a provider alone cannot choose its committee:
waiting for a "good" block before committing does not help, because the draw depends on a block
after the one its claim lands in. Only the proposer of block h + delay - 1 shapes the seed (it
chooses that block's transactions and timestamp). A provider colluding with that proposer could
try block variants and keep one that draws a committee its allies control. That needs (a) the
proposer of that exact height, a slot chance equal to the proposer's stake share, and (b) allies
holding enough stake that some variant draws a quorum of them: with a stake share f outside
provider and client, one draw of 3 gives allies a quorum with probability 3f^2(1 - f) + f^3
(f = 0.1: 2.8%; f = 0.2: 10.4%). A proposer that misses its slot while grinding loses the block
reward and its slot passes to the next proposer. A verifiable random function over the previous
seed (a beacon the proposer cannot vary) would remove (a); it is not built (see
docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ogpu_node.encoding import pack
from ogpu_node.hashing import digest
from ogpu_node.ledger.state import Validator
from ogpu_node.types import Address


def draw_committee(
    validators: Sequence[Validator], size: int, *, item_id: bytes, attempt: int, round_: int,
    block_hash: bytes, exclude: Iterable[Address],
) -> tuple[Address, ...]:
    """Up to `size` distinct validators, drawn by stake; fewer when fewer are eligible."""
    skip = set(exclude)
    pool = [(v.address, v.stake) for v in validators if v.address not in skip and v.stake > 0]
    chosen: list[Address] = []
    counter = 0
    while pool and len(chosen) < size:
        seed = digest(b"committee", pack([item_id, attempt, round_, block_hash, counter]))
        counter += 1
        target = int.from_bytes(seed, "big") % sum(stake for _, stake in pool)
        for index, (address, stake) in enumerate(pool):
            if target < stake:
                chosen.append(address)
                del pool[index]
                break
            target -= stake
    return tuple(sorted(chosen))
