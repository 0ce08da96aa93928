"""What an agent must not lose across a restart: the secrets that open its commitments.

A provider's sealed bid (price and salt), a verifier's sealed verdict (vote, reason and salt)
and a provider's ephemeral result key each open something already on chain or about to be;
lost, the agent cannot reveal its bid or its vote (and pays for it) or release its result (and
is not paid). `AgentSecrets` keeps them in the node's LevelDB (`ChainStore`, prefix `a`), each
written before the commitment it opens is sent, and forgotten once the task or request it
belongs to has closed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ogpu_node.encoding import pack, unpack
from ogpu_node.storage import ChainStore


class AgentSecrets:
    """One kind of secret (e.g. "bid"), keyed by a short list of fields (task id, attempt...)."""

    def __init__(self, store: ChainStore, kind: str) -> None:
        self._store = store
        self._kind = kind.encode()

    def put(self, key: Iterable[Any], value: Iterable[Any]) -> None:
        """Record (synced) `value` under `key`."""
        self._store.record_agent_secret(self._kind, pack(list(key)), pack(list(value)))

    def get(self, key: Iterable[Any]) -> list[Any] | None:
        raw = self._store.agent_secret(self._kind, pack(list(key)))
        return None if raw is None else list(unpack(raw))

    def forget(self, key: Iterable[Any]) -> None:
        self._store.forget_agent_secret(self._kind, pack(list(key)))

    def recorded(self) -> list[list[Any]]:
        """Every key recorded under this kind."""
        return [list(unpack(k)) for k in self._store.agent_secret_keys(self._kind)]
