"""The typed shapes of the node's main answers, as `TypedDict`s over the JSON the node sends
(docs/rpc.md describes every field). Amounts come twice: base units as a decimal string
(`balance`) and OGPU as text (`balanceOgpu`). Answers may carry more keys than listed; the SDK's
tests check that every listed key is in the node's answer."""

from __future__ import annotations

from typing import Any, TypedDict

JsonObject = dict[str, Any]


class ChainStatus(TypedDict):
    chainId: str
    nodeId: str
    moniker: str
    height: int
    headHash: str
    stateRoot: str
    headTimeMs: int
    syncing: bool
    peers: int
    validator: bool
    mempoolSize: int
    minFee: str
    """The least fee a transaction pays now (base units; governance may change it)."""
    minFeeOgpu: str


class HealthReason(TypedDict):
    code: str
    """no_peers, syncing, not_finalising, stake_unseen, blob_store_full, agent_not_running."""
    message: str


class Health(TypedDict):
    healthy: bool
    reasons: list[HealthReason]
    details: JsonObject


class TxReceipt(TypedDict):
    hash: str
    state: str
    """pending, finalized, rejected, dropped or unknown."""
    height: int | None
    index: int | None
    errorCode: str | None
    reason: str | None


class Transaction(TypedDict):
    hash: str
    chainId: str
    sender: str
    nonce: int
    fee: str
    feeOgpu: str
    kind: str
    payload: JsonObject | None
    payloadHex: str
    signature: str
    size: int


class TxWithReceipt(TypedDict):
    tx: Transaction
    receipt: TxReceipt


class Block(TypedDict):
    hash: str
    height: int
    chainId: str
    parentHash: str
    timestampMs: int
    proposer: str
    txRoot: str
    stateRoot: str
    signature: str
    txCount: int
    txs: list[Any]
    """Transaction hashes, or `Transaction`s when asked with `full_txs=True`."""


class Account(TypedDict):
    address: str
    height: int
    nonce: int
    balance: str
    balanceOgpu: str
    stake: str
    stakeOgpu: str
    unbonding: list[JsonObject]
    unbondingTotal: str
    unbondingTotalOgpu: str
    publicKey: str | None
    validator: bool
    tombstone: JsonObject | None


class Validators(TypedDict):
    height: int
    count: int
    totalStake: str
    totalStakeOgpu: str
    validators: list[JsonObject]
    epochLength: int
    nextEpochHeight: int
    """The first height whose validator set reflects a stake or unstake final now."""
    unbondingPeriod: int
    minValidatorStake: str
    minValidatorStakeOgpu: str


class Peer(TypedDict):
    peerId: str
    addresses: list[str]
    validator: bool


class Task(TypedDict):
    id: str
    height: int
    client: str
    kind: str
    spec: JsonObject
    workUnits: int
    maxPrice: str
    maxPriceOgpu: str
    budget: str
    budgetOgpu: str
    escrow: str
    escrowOgpu: str
    status: str
    """The task's phase: bidding, revealing, running, ..., closed."""
    attempt: int
    bids: list[JsonObject]
    provider: str | None
    price: str
    priceOgpu: str
    payment: str
    paymentOgpu: str
    result: JsonObject | None
    releasedKey: str | None
    verdicts: list[JsonObject]
    closeReason: str | None
    trail: list[JsonObject]
    progressBps: int | None
    createdMs: int
    expiresMs: int


class Provider(TypedDict):
    address: str
    height: int
    active: bool
    devices: list[JsonObject]
    benchmark: int
    priceFloor: str
    priceFloorOgpu: str
    stake: str
    stakeOgpu: str
    locked: str
    lockedOgpu: str
    freeStake: str
    freeStakeOgpu: str
    counters: JsonObject
    reputationBps: int
    flags: list[str]
    earnings: JsonObject


class Pool(TypedDict):
    id: str
    height: int
    owner: str
    model: str
    modelId: str | None
    modelName: str
    maxBatch: int
    price: str
    priceOgpu: str
    escrow: str
    escrowOgpu: str
    closed: bool
    subscribers: list[JsonObject]
    requests: list[JsonObject]
    served: int
    paid: str
    paidOgpu: str


class Model(TypedDict):
    id: str
    height: int
    owner: str
    name: str
    fileId: str
    registeredMs: int
    info: JsonObject


MAIN_ANSWERS: dict[str, type] = {
    "chain_status": ChainStatus, "node_health": Health, "tx_status": TxReceipt,
    "tx_get": TxWithReceipt, "chain_getBlock": Block, "account_get": Account,
    "validators_list": Validators, "task_get": Task, "provider_get": Provider,
    "pool_get": Pool, "model_get": Model,
}
"""The typed answer of each method that has one (the tests check them against the node)."""
