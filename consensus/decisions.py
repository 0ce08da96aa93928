"""Values the engine returns: decisions and messages to send."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class Decision:
    """A block was finalised (``accepted``) or rejected at ``height``."""

    accepted: bool
    block_id: bytes
    height: int


@dataclass(frozen=True, slots=True)
class Query:
    """Ask each of ``recipients`` for its preference; answers come back as chits."""

    poll_id: int
    preferred_id: bytes
    recipients: tuple[bytes, ...]


class Chits(NamedTuple):
    """The answer to a query: the sender's preferred block.

    A named tuple rather than a frozen dataclass: one is built per query answered, and a
    frozen dataclass costs several times more to construct.
    """

    to: bytes
    poll_id: int
    preferred_id: bytes


@dataclass(frozen=True, slots=True)
class Fetch:
    """Ask ``to`` for block ``block_id``, which it voted for and this node does not know."""

    to: bytes
    block_id: bytes


@dataclass(frozen=True, slots=True)
class Output:
    """What one engine call produced: decisions in order, queries and fetches to send."""

    decisions: tuple[Decision, ...] = ()
    queries: tuple[Query, ...] = ()
    fetches: tuple[Fetch, ...] = ()


NO_OUTPUT = Output()
