"""Transactions: one signed envelope, with a payload whose layout depends on its kind.

Envelope fields, in encoding order: chain id, sender public key, nonce, fee, kind, payload bytes,
signature. The payload is itself a canonical encoding; each kind registers its payload type in
`PAYLOAD_TYPES` (the market's kinds live in `ledger/market/payloads.py`, equivocation evidence in
`ledger/equivocation.py`, governance in `ledger/governance/records.py`) without touching the
envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from typing import Any, ClassVar, Self

from ogpu_node.encoding import (
    Codable,
    decode,
    encode,
    pack,
    read_array,
    read_bytes,
    read_str,
    read_uint,
)
from ogpu_node.errors import DecodeError, SignatureError
from ogpu_node.hashing import digest
from ogpu_node.keys import PrivateKey, address_of, verify
from ogpu_node.ledger.equivocation import ReportEquivocation
from ogpu_node.ledger.errors import (
    AmountOutOfRange,
    BadSignature,
    FeeTooLow,
    MalformedTransaction,
    TransactionTooLarge,
    UnknownTxKind,
    WrongChain,
)
from ogpu_node.ledger.governance.records import GovernancePayload, Propose, Vote
from ogpu_node.ledger.governance.rules import check_governance_payload
from ogpu_node.ledger.market.checks import check_market_payload, market_escrow
from ogpu_node.ledger.market.payloads import (
    CancelTask,
    ClosePool,
    CommitBid,
    CommitResult,
    DisputeAnswer,
    JoinPool,
    LeavePool,
    MarketPayload,
    OpenPool,
    PoolResult,
    RegisterModel,
    RegisterProvider,
    ReleaseResult,
    ReportMissingInputs,
    ReturnTask,
    RevealBid,
    RevealVerdict,
    SealVerdict,
    SendRequest,
    SubmitTask,
    TopUpPool,
    WithdrawProvider,
)
from ogpu_node.ledger.params import MAX_CHAIN_ID_LEN, MAX_TX_BYTES, Params
from ogpu_node.types import (
    ADDRESS_LEN,
    MAX_AMOUNT,
    PUBKEY_LEN,
    SIGNATURE_LEN,
    Address,
    Amount,
    Hash32,
)
from ogpu_node.workloads.models import ModelLookup, no_models

SIGN_KIND_TX = "tx"


class TxKind(IntEnum):
    """Transaction kinds. Numbers are part of the protocol: never reuse one."""

    TRANSFER = 1
    STAKE = 2
    UNSTAKE = 3
    REGISTER_PROVIDER = 4
    WITHDRAW_PROVIDER = 5
    SUBMIT_TASK = 6
    COMMIT_BID = 7
    REVEAL_BID = 8
    COMMIT_RESULT = 9
    # 10 was SUBMIT_VERDICT, an open vote: replaced by SEAL_VERDICT and REVEAL_VERDICT
    CANCEL_TASK = 11
    OPEN_POOL = 12
    JOIN_POOL = 13
    LEAVE_POOL = 14
    SEND_REQUEST = 15
    POOL_RESULT = 16
    # 17 was POOL_VERDICT: pool checks use SEAL_VERDICT and REVEAL_VERDICT too
    CLOSE_POOL = 18
    REPORT_MISSING_INPUTS = 19
    REPORT_EQUIVOCATION = 20
    RETURN_TASK = 21
    SEAL_VERDICT = 22
    REVEAL_VERDICT = 23
    RELEASE_RESULT = 24
    DISPUTE_ANSWER = 25
    REGISTER_MODEL = 26
    PROPOSE = 27
    VOTE = 28
    TOP_UP_POOL = 29


@dataclass(frozen=True, slots=True)
class Transfer:
    """Move `amount` from the sender's balance to `to`."""

    to: Address
    amount: Amount

    MAX_BYTES: ClassVar[int] = 64

    def amounts(self) -> tuple[int, ...]:
        return (self.amount,)

    def to_fields(self) -> list[Any]:
        return [self.to, self.amount]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        to, amount = read_array(value, 2, "transfer")
        return cls(Address(read_bytes(to, "transfer.to", size=ADDRESS_LEN)),
                   Amount(read_uint(amount, "transfer.amount")))


@dataclass(frozen=True, slots=True)
class Stake:
    """Bond `amount` of the sender's balance as validator stake."""

    amount: Amount

    MAX_BYTES: ClassVar[int] = 16

    def amounts(self) -> tuple[int, ...]:
        return (self.amount,)

    def to_fields(self) -> list[Any]:
        return [self.amount]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (amount,) = read_array(value, 1, "stake")
        return cls(Amount(read_uint(amount, "stake.amount")))


@dataclass(frozen=True, slots=True)
class Unstake:
    """Start unbonding `amount` of stake; it returns to the balance after the unbonding period."""

    amount: Amount

    MAX_BYTES: ClassVar[int] = 16

    def amounts(self) -> tuple[int, ...]:
        return (self.amount,)

    def to_fields(self) -> list[Any]:
        return [self.amount]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        (amount,) = read_array(value, 1, "unstake")
        return cls(Amount(read_uint(amount, "unstake.amount")))


Payload = Transfer | Stake | Unstake | MarketPayload | ReportEquivocation | GovernancePayload

PAYLOAD_TYPES: dict[int, type[Codable]] = {
    TxKind.TRANSFER: Transfer,
    TxKind.STAKE: Stake,
    TxKind.UNSTAKE: Unstake,
    TxKind.REGISTER_PROVIDER: RegisterProvider,
    TxKind.WITHDRAW_PROVIDER: WithdrawProvider,
    TxKind.SUBMIT_TASK: SubmitTask,
    TxKind.COMMIT_BID: CommitBid,
    TxKind.REVEAL_BID: RevealBid,
    TxKind.COMMIT_RESULT: CommitResult,
    TxKind.CANCEL_TASK: CancelTask,
    TxKind.OPEN_POOL: OpenPool,
    TxKind.JOIN_POOL: JoinPool,
    TxKind.LEAVE_POOL: LeavePool,
    TxKind.SEND_REQUEST: SendRequest,
    TxKind.POOL_RESULT: PoolResult,
    TxKind.SEAL_VERDICT: SealVerdict,
    TxKind.REVEAL_VERDICT: RevealVerdict,
    TxKind.RELEASE_RESULT: ReleaseResult,
    TxKind.DISPUTE_ANSWER: DisputeAnswer,
    TxKind.CLOSE_POOL: ClosePool,
    TxKind.REPORT_MISSING_INPUTS: ReportMissingInputs,
    TxKind.REPORT_EQUIVOCATION: ReportEquivocation,
    TxKind.RETURN_TASK: ReturnTask,
    TxKind.REGISTER_MODEL: RegisterModel,
    TxKind.PROPOSE: Propose,
    TxKind.VOTE: Vote,
    TxKind.TOP_UP_POOL: TopUpPool,
}


@dataclass(frozen=True)
class Transaction:
    """A signed transaction envelope."""

    chain_id: str
    sender_key: bytes
    nonce: int
    fee: Amount
    kind: int
    payload: bytes
    signature: bytes

    MAX_BYTES: ClassVar[int] = MAX_TX_BYTES

    def body_fields(self) -> list[Any]:
        return [self.chain_id, self.sender_key, self.nonce, self.fee, self.kind, self.payload]

    def to_fields(self) -> list[Any]:
        return [*self.body_fields(), self.signature]

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        chain_id, sender, nonce, fee, kind, payload, signature = read_array(value, 7, "tx")
        return cls(
            chain_id=read_str(chain_id, "tx.chain_id", max_len=MAX_CHAIN_ID_LEN),
            sender_key=read_bytes(sender, "tx.sender_key", size=PUBKEY_LEN),
            nonce=read_uint(nonce, "tx.nonce"),
            fee=Amount(read_uint(fee, "tx.fee")),
            kind=read_uint(kind, "tx.kind", max_value=0xFFFF),
            payload=read_bytes(payload, "tx.payload", max_len=MAX_TX_BYTES),
            signature=read_bytes(signature, "tx.signature", size=SIGNATURE_LEN),
        )

    @cached_property
    def signing_bytes(self) -> bytes:
        """What the sender signs (the chain id is also bound by the signature's domain)."""
        return pack(self.body_fields())

    @cached_property
    def hash(self) -> Hash32:
        """The transaction id: covers everything but the signature, so it cannot be malleated."""
        return digest(b"tx", self.signing_bytes)

    @cached_property
    def sender(self) -> Address:
        return address_of(self.sender_key)

    @cached_property
    def encoded(self) -> bytes:
        # Not `encode(self)`: a tx decoded inside a block can exceed MAX_TX_BYTES, and its size
        # must be measurable so that `check_transaction` rejects it as `TransactionTooLarge`.
        return pack(self.to_fields())

    def decode_payload(self) -> Payload:
        """The kind-specific payload, or `UnknownTxKind` / `MalformedTransaction`."""
        payload_type = PAYLOAD_TYPES.get(self.kind)
        if payload_type is None:
            raise UnknownTxKind(f"unknown transaction kind {self.kind}")
        try:
            payload = decode(payload_type, self.payload)
        except DecodeError as exc:
            kind = TxKind(self.kind).name.lower()
            raise MalformedTransaction(f"bad {kind} payload: {exc}") from exc
        return payload  # type: ignore[return-value]


def decode_transaction(data: bytes) -> Transaction:
    """Strictly decode a transaction from bytes, as a typed `InvalidTransaction` on failure."""
    if len(data) > MAX_TX_BYTES:
        raise TransactionTooLarge(f"transaction is {len(data)} bytes, limit {MAX_TX_BYTES}")
    try:
        return decode(Transaction, data)
    except DecodeError as exc:
        raise MalformedTransaction(str(exc)) from exc


def sign_transaction(
    key: PrivateKey, *, chain_id: str, nonce: int, fee: int, payload: Payload
) -> Transaction:
    """Build and sign a transaction carrying `payload`."""
    kind = next(k for k, t in PAYLOAD_TYPES.items() if isinstance(payload, t))
    unsigned = Transaction(chain_id, key.public_key.raw, nonce, Amount(fee), kind,
                           encode(payload), b"\0" * SIGNATURE_LEN)
    signature = key.sign(chain_id, SIGN_KIND_TX, unsigned.signing_bytes)
    return Transaction(chain_id, key.public_key.raw, nonce, Amount(fee), kind,
                       unsigned.payload, signature)


def check_transaction(tx: Transaction, chain_id: str, params: Params,
                      models: ModelLookup = no_models) -> Payload:
    """Every check that needs no state: size, chain, kind, payload, amounts, fee, signature,
    then the payload's own rules (a market payload's spec and terms, `market/checks.py`; a task
    on a registered model is priced by `models`, the state's registry).

    Returns the decoded payload. Raises a typed `InvalidTransaction`.
    """
    if len(tx.encoded) > MAX_TX_BYTES:
        raise TransactionTooLarge(f"transaction is {len(tx.encoded)} bytes, limit {MAX_TX_BYTES}")
    if tx.chain_id != chain_id:
        raise WrongChain(f"transaction is for chain {tx.chain_id!r}, this is {chain_id!r}")
    payload = tx.decode_payload()
    for amount in payload.amounts():
        if not 1 <= amount <= MAX_AMOUNT:
            raise AmountOutOfRange(f"amount {amount} outside 1..{MAX_AMOUNT}")
    if tx.fee > MAX_AMOUNT:
        raise AmountOutOfRange(f"fee {tx.fee} above {MAX_AMOUNT}")
    if tx.fee < params.min_fee:
        raise FeeTooLow(f"fee {tx.fee} below the minimum {params.min_fee}")
    try:
        verify(tx.sender_key, chain_id, SIGN_KIND_TX, tx.signing_bytes, tx.signature)
    except SignatureError as exc:
        raise BadSignature(str(exc)) from exc
    if isinstance(payload, Propose | Vote):
        check_governance_payload(params, payload)
    elif not isinstance(payload, Transfer | Stake | Unstake | ReportEquivocation):
        check_market_payload(params, payload, models)
    return payload


def balance_needed(tx: Transaction, payload: Payload, params: Params,
                   models: ModelLookup = no_models) -> int:
    """What the sender's balance must hold for `tx`: its fee, and what its kind moves out of the
    balance (a transfer's amount, a stake, a provider bond, a task's or a pool's escrow, a
    proposal's deposit).

    Call on a payload that passed `check_transaction`."""
    if isinstance(payload, Transfer | Stake):
        return tx.fee + payload.amount
    if isinstance(payload, Unstake | ReportEquivocation | Vote):
        return tx.fee
    if isinstance(payload, Propose):
        return tx.fee + payload.deposit
    return tx.fee + market_escrow(params, payload, models)
