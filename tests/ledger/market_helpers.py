"""A small driver for market tests: a chain of 4 equal validators, two of them providers, and a
client, with blocks made at chosen times."""

from __future__ import annotations

from dataclasses import dataclass

from ogpu_node.encoding import encode
from ogpu_node.hashing import digest
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import Params, State, Transaction, apply_block, apply_tx, make_genesis_state
from ogpu_node.ledger.market.auction import bid_commitment
from ogpu_node.ledger.market.payloads import (
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
from ogpu_node.types import Hash32, ogpu
from ogpu_node.workloads.kinds import WorkloadSpec, checkpoint_total
from ogpu_node.workloads.models import ElemType, ModelInfo, TensorInfo
from ogpu_node.workloads.net import (
    FLATTEN,
    RELU,
    LossKind,
    NetTrainSpec,
    Optimizer,
    OptimizerKind,
    Schedule,
    ScheduleKind,
    conv2d,
    dense,
)
from ogpu_node.workloads.spec import MatmulSpec, TrainSpec
from tests.ledger.helpers import CHAIN_ID, FEE, KEYS, next_block, signed

MARKET_PARAMS = Params(epoch_length=1_000, unbonding_period=3, evidence_max_age=2, min_fee=1_000,
                       min_validator_stake=ogpu(10), provider_min_stake=ogpu(100),
                       bid_window_ms=3_000, reveal_window_ms=3_000, verdict_window_ms=10_000,
                       verdict_reveal_window_ms=5_000, verifier_silence_penalty=ogpu(1),
                       verifier_wrong_accept_penalty=ogpu(3))
SILENCE, WRONG_ACCEPT = ogpu(1), ogpu(3)
VALIDATORS = KEYS[:4]
PROVIDER_A, PROVIDER_B = KEYS[1], KEYS[2]
CLIENT = KEYS[5]
OUTSIDER = KEYS[4]
"""Funded, neither validator nor provider."""
MATMUL = MatmulSpec(n=1024, seed=1)  # 3 work units
DIGITS_MODEL = ModelInfo(
    file_bytes=61_234, opset=17, inputs=(TensorInfo("images", ElemType.FLOAT, (1, 8, 8)),),
    outputs=(TensorInfo("logits", ElemType.FLOAT, (10,)),), flops_per_row=98_560,
    weight_bytes=58_000, activation_bytes_per_row=4_608)
"""The info of a small convolutional network on the 8x8 digits, as a registration claims it."""
NET_TRAIN = NetTrainSpec(
    seed=1, input_shape=(1, 8, 8), layers=(conv2d(4, 3), RELU, FLATTEN, dense(10)),
    loss=LossKind.CROSS_ENTROPY, optimizer=Optimizer(OptimizerKind.ADAM, 1_000),
    schedule=Schedule(ScheduleKind.CONSTANT), n_samples=1_000, val_bps=2_000, batch=32,
    steps=200, checkpoint_every=50, inputs=b"\x01" * 32)
"""A small convolutional network on 8x8 images: 4 checkpoints."""
TRAIN = TrainSpec(seed=3, n_features=16, hidden=(32,), n_classes=4, n_samples=256, batch=32,
                  steps=40, lr_micros=50_000, checkpoint_every=10)
GPU = (Device("test-gpu", 16_000),)
RELEASED_KEY = b"\x09" * 32
"""The public key the providers of these tests release once their result is accepted."""


def market_genesis(params: Params = MARKET_PARAMS) -> State:
    return make_genesis_state(
        chain_id=CHAIN_ID, params=params, genesis_hash=digest(b"market-genesis", b""),
        timestamp=1_000, allocations=[(k.address, ogpu(10_000)) for k in KEYS],
        validators=[(k.public_key.raw, ogpu(10)) for k in VALIDATORS],
    )


def result_for(task: Task, *, spec: WorkloadSpec = MATMUL) -> TaskResult:
    checkpoints = checkpoint_total(spec)
    ids = tuple(digest(b"ckpt", bytes([i])) for i in range(checkpoints))
    output = ids[-1] if ids else digest(b"out", task.spec)  # a training's is its last checkpoint
    return TaskResult(output, digest(b"root", b"".join(ids)), ids,
                      (("loss_micros", 1234),), key_commitment(RELEASED_KEY))


@dataclass
class MarketChain:
    state: State

    @classmethod
    def start(cls, params: Params = MARKET_PARAMS) -> MarketChain:
        return cls(market_genesis(params))

    def tx(self, key: PrivateKey, payload: Payload, *, nonce_offset: int = 0) -> Transaction:
        nonce = self.state.account(key.address).nonce + nonce_offset
        return signed(key, nonce, payload)

    def block(self, *txs: Transaction, after_ms: int = 1_000) -> State:
        block, _ = next_block(self.state, txs, timestamp=self.state.timestamp + after_ms)
        self.state = apply_block(self.state, block)
        return self.state

    def send(self, key: PrivateKey, payload: Payload, *, after_ms: int = 1_000) -> Transaction:
        tx = self.tx(key, payload)
        self.block(tx, after_ms=after_ms)
        return tx

    def check(self, key: PrivateKey, payload: Payload) -> None:
        """Apply one transaction alone (raises the rule's error when it is refused)."""
        apply_tx(self.state, self.tx(key, payload), KEYS[0].address)

    # --- scripted steps ---

    def register(self, key: PrivateKey, *, benchmark: int = 1_000, floor: int = 1,
                 stake: int = ogpu(500)) -> None:
        self.send(key, RegisterProvider(GPU, benchmark, floor, stake))

    def submit(self, spec: WorkloadSpec = MATMUL, *, max_price: int = ogpu(1),
               min_benchmark: int = 0, exec_ms: int = 20_000, ttl_ms: int = 200_000) -> Hash32:
        payload = SubmitTask(spec.KIND, encode(spec), max_price, min_benchmark, exec_ms, ttl_ms)
        return self.send(CLIENT, payload).hash

    def task(self, task_id: Hash32) -> Task:
        return self.state.tasks[task_id]

    def bid(self, key: PrivateKey, task_id: Hash32, price: int, salt: bytes = b"salt") -> None:
        task = self.task(task_id)
        commitment = bid_commitment(task_id, task.attempt.number, key.address, price, salt)
        self.send(key, CommitBid(task_id, commitment))

    def reveal(self, key: PrivateKey, task_id: Hash32, price: int, salt: bytes = b"salt") -> None:
        self.send(key, RevealBid(task_id, price, salt))

    def pass_phase(self, task_id: Hash32) -> None:
        """One empty block at the end of the task's current phase."""
        self.block(after_ms=max(1, self.task(task_id).phase_end_ms - self.state.timestamp))

    def end_bidding(self, task_id: Hash32) -> None:
        """The bid window's end, unless the last provider that could bid has ended it already."""
        if self.task(task_id).status == TaskStatus.BIDDING:
            self.pass_phase(task_id)

    def auction(self, task_id: Hash32, bids: dict[int, int]) -> None:
        """Bids by key index and price; ends with the award (made by the last reveal)."""
        for index, price in bids.items():
            self.bid(KEYS[index], task_id, price)
        self.end_bidding(task_id)
        for index, price in bids.items():
            self.reveal(KEYS[index], task_id, price)
        assert self.task(task_id).status != TaskStatus.REVEALING

    def commit_result(self, task_id: Hash32, spec: MatmulSpec | TrainSpec = MATMUL) -> None:
        task = self.task(task_id)
        assert task.attempt.provider is not None
        key = next(k for k in KEYS if k.address == task.attempt.provider)
        self.send(key, CommitResult(task_id, result_for(task, spec=spec)))

    def draw(self, task_id: Hash32) -> None:
        """Empty blocks until the committee checking the task's claim is drawn."""
        while ((check := self.task(task_id).attempt.check) and check.phase == CheckPhase.DRAWING
               and self.task(task_id).status != TaskStatus.CLOSED):
            self.block()

    def committee(self, task_id: Hash32) -> list[PrivateKey]:
        """The keys of the members drawn to check the task's claim (drawing it first)."""
        self.draw(task_id)
        check = self.task(task_id).attempt.check
        assert check is not None
        return [k for k in KEYS if k.address in check.committee]

    def seal(self, key: PrivateKey, task_id: Hash32, accept: bool, reason: str = "",
             salt: bytes = b"vote-salt") -> None:
        task = self.task(task_id)
        assert task.attempt.check is not None
        reason = reason or ("ok" if accept else "matmul_mismatch")
        number, round_ = task.attempt.number, task.attempt.check.round
        seal = verdict_seal(task_id, b"", number, round_, key.address, accept, reason, salt)
        self.send(key, SealVerdict(task_id, b"", number, round_, seal))

    def reveal_vote(self, key: PrivateKey, task_id: Hash32, accept: bool, reason: str = "",
                    salt: bytes = b"vote-salt") -> None:
        task = self.task(task_id)
        assert task.attempt.check is not None
        reason = reason or ("ok" if accept else "matmul_mismatch")
        self.send(key, RevealVerdict(task_id, b"", task.attempt.number, task.attempt.check.round,
                                     accept, reason, salt))

    def release(self, task_id: Hash32) -> None:
        """The provider of an accepted result releases its key (and is paid)."""
        task = self.task(task_id)
        key = next(k for k in KEYS if k.address == task.attempt.provider)
        self.send(key, ReleaseResult(task_id, task.attempt.number, RELEASED_KEY))

    def vote(self, task_id: Hash32, accept: bool, voters: int | None = None, *,
             release: bool = True) -> None:
        """`voters` members (all by default) seal `accept`; sealing ends (at once when all
        sealed, else at its window's end); each of them reveals. An accepted result's key is
        then released, unless `release` is false."""
        members = self.committee(task_id)[:voters]
        for key in members:
            self.seal(key, task_id, accept)
        check = self.task(task_id).attempt.check
        if check is not None and check.phase == CheckPhase.SEALING:
            self.pass_phase(task_id)
        for key in members:
            check = self.task(task_id).attempt.check
            if check is None or check.phase != CheckPhase.REVEALING:
                break
            self.reveal_vote(key, task_id, accept)
        if release and self.task(task_id).status == TaskStatus.RELEASING:
            self.release(task_id)


def fee_total(txs: int) -> int:
    return txs * FEE
