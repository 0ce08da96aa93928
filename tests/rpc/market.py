"""Market state on a `LocalNode`, built through real signed transactions and real blocks.

Dev account 0 is the client, 1 and 2 are providers; the single validator is the whole
verification committee (it is funded first, so that it can pay for its verdicts).
"""

from __future__ import annotations

from ogpu_node.blobs import file_id
from ogpu_node.encoding import encode
from ogpu_node.hashing import digest
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Transaction, Transfer, sign_transaction
from ogpu_node.ledger.market.auction import bid_commitment
from ogpu_node.ledger.market.payloads import (
    CancelTask,
    CommitBid,
    CommitResult,
    RegisterProvider,
    ReleaseResult,
    RevealBid,
    RevealVerdict,
    SealVerdict,
    SubmitTask,
)
from ogpu_node.ledger.market.records import (
    CheckPhase,
    Device,
    Task,
    TaskResult,
    TaskStatus,
    key_commitment,
)
from ogpu_node.ledger.market.verification import verdict_seal
from ogpu_node.ledger.tx import Payload
from ogpu_node.result_crypto import ephemeral_public, output_file_number, provider_key
from ogpu_node.types import Amount, Hash32, ogpu
from ogpu_node.workloads.spec import MatmulSpec, TrainSpec
from tests.rpc.local_node import VALIDATOR, LocalNode

FEE = 1_000
MATMUL = MatmulSpec(n=1024, seed=1)  # 3 work units
TRAIN = TrainSpec(seed=3, n_features=16, hidden=(32,), n_classes=4, n_samples=256, batch=32,
                  steps=40, lr_micros=50_000, checkpoint_every=10)
GPU = (Device("test-gpu", 16_000),)
OUTPUT = b"the output of the task " * 1000
"""The bytes of a provider's result (stored sealed in the node's blob store by
`commit_result`)."""
EPHEMERAL = b"\x07" * 32
"""The providers' ephemeral key of every result here."""


def submit_payload(spec: MatmulSpec | TrainSpec = MATMUL, *, max_price: int = ogpu(1),
                   min_benchmark: int = 0, exec_ms: int = 20_000, ttl_ms: int = 200_000
                   ) -> SubmitTask:
    return SubmitTask(spec.KIND, encode(spec), max_price, min_benchmark, exec_ms, ttl_ms)


class Market:
    def __init__(self, node: LocalNode) -> None:
        self.node = node
        self.client, self.provider_a, self.provider_b, self.other = node.users()

    async def send(self, key: PrivateKey, payload: Payload, *, after_ms: int = 1_000,
                   block: bool = True) -> Transaction:
        tx = sign_transaction(key, chain_id=self.node.state.chain_id,
                              nonce=self.node.next_nonce(key.address), fee=FEE,
                              payload=payload)
        await self.node.submit_tx(tx)
        if block:
            self.node.produce_block(after_ms)
        return tx

    async def fund_validator(self) -> None:
        await self.send(self.other, Transfer(VALIDATOR.address, Amount(ogpu(10))))

    async def register(self, key: PrivateKey, *, benchmark: int = 1_000, floor: int = 1,
                       stake: int = ogpu(500)) -> None:
        await self.send(key, RegisterProvider(GPU, benchmark, floor, Amount(stake)))

    async def submit(self, spec: MatmulSpec | TrainSpec = MATMUL, *, max_price: int = ogpu(1),
                     min_benchmark: int = 0, exec_ms: int = 20_000, ttl_ms: int = 200_000
                     ) -> Hash32:
        payload = submit_payload(spec, max_price=max_price, min_benchmark=min_benchmark,
                                 exec_ms=exec_ms, ttl_ms=ttl_ms)
        return (await self.send(self.client, payload)).hash

    def task(self, task_id: Hash32) -> Task:
        return self.node.state.tasks[task_id]

    async def bid(self, key: PrivateKey, task_id: Hash32, price: int) -> None:
        commitment = bid_commitment(task_id, self.task(task_id).attempt.number, key.address, price,
                                    b"salt")
        await self.send(key, CommitBid(task_id, commitment))

    async def reveal(self, key: PrivateKey, task_id: Hash32, price: int) -> None:
        await self.send(key, RevealBid(task_id, price, b"salt"))

    def pass_phase(self, task_id: Hash32) -> None:
        """One empty block at the end of the task's current phase."""
        self.node.produce_block(max(1, self.task(task_id).phase_end_ms
                                    - self.node.state.timestamp))

    async def award(self, task_id: Hash32, bids: dict[int, int]) -> None:
        """Bids by dev-account index and price; ends with the award (made by the last
        reveal)."""
        keys = self.node.users()
        for index, price in bids.items():
            await self.bid(keys[index], task_id, price)
        if self.task(task_id).status == TaskStatus.BIDDING:  # the last bid may have ended it
            self.pass_phase(task_id)
        for index, price in bids.items():
            await self.reveal(keys[index], task_id, price)

    async def commit_result(self, task_id: Hash32, output: bytes = OUTPUT,
                            checkpoints: int = 0) -> None:
        """The provider commits `output`, sealed for the client (`result_crypto`); a training
        lists `checkpoints` checkpoints, the last of which is `output`."""
        task = self.task(task_id)
        key = next(k for k in self.node.users() if k.address == task.attempt.provider)
        client = self.node.state.account(task.client).public_key
        sealed = provider_key(EPHEMERAL, client, task_id, task.attempt.number).seal(
            output_file_number(checkpoints), output)
        if self.node.blobs is not None:
            self.node.blobs.put_file(sealed)
        earlier = tuple(digest(b"checkpoint", bytes([i])) for i in range(checkpoints - 1))
        result = TaskResult(file_id(sealed), digest(b"root", b""),
                            (*earlier, file_id(sealed)) if checkpoints else (),
                            (("loss_micros", 1234),),
                            key_commitment(ephemeral_public(EPHEMERAL)))
        await self.send(key, CommitResult(task_id, result))

    async def release(self, task_id: Hash32) -> None:
        """The provider of an accepted result releases its key."""
        task = self.task(task_id)
        key = next(k for k in self.node.users() if k.address == task.attempt.provider)
        await self.send(key, ReleaseResult(task_id, task.attempt.number,
                                           ephemeral_public(EPHEMERAL)))

    def draw(self, task_id: Hash32) -> None:
        """Empty blocks until the committee checking the task's claim is drawn."""
        while (check := self.task(task_id).attempt.check) and check.phase == CheckPhase.DRAWING:
            self.node.produce_block(1_000)

    async def vote(self, task_id: Hash32, accept: bool) -> None:
        """The validator, the whole committee, seals its vote and reveals it."""
        self.draw(task_id)
        task = self.task(task_id)
        assert task.attempt.check is not None
        reason, salt = "ok" if accept else "matmul_mismatch", b"salt"
        round_ = task.attempt.check.round
        seal = verdict_seal(task_id, b"", task.attempt.number, round_, VALIDATOR.address, accept,
                            reason, salt)
        await self.send(VALIDATOR, SealVerdict(task_id, b"", task.attempt.number, round_, seal))
        await self.send(VALIDATOR, RevealVerdict(task_id, b"", task.attempt.number, round_, accept,
                                                 reason, salt))
        if self.task(task_id).status == TaskStatus.RELEASING:
            await self.release(task_id)

    async def cancel(self, task_id: Hash32) -> None:
        await self.send(self.client, CancelTask(task_id))

    async def completed_task(self) -> Hash32:
        """A matmul task won by provider A at the second price and accepted."""
        await self.fund_validator()
        await self.register(self.provider_a)
        await self.register(self.provider_b, benchmark=500)
        task_id = await self.submit()
        await self.award(task_id, {1: ogpu(1) // 4, 2: ogpu(1) // 2})
        await self.commit_result(task_id)
        await self.vote(task_id, True)
        return task_id
