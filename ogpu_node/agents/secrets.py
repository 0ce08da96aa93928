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
    """One kind of secret (e.g. "bid"), keyed by a short list of fields (task id, attempt...).

    The keys on record are read from the store once, when the object is made (after a restart,
    those the last run left), and then kept in memory: agents sweep them every block, and that
    must not read LevelDB each time. One object per kind and store writes them."""

    def __init__(self, store: ChainStore, kind: str) -> None:
        self._store = store
        self._kind = kind.encode()
        self._keys = {k: list(unpack(k)) for k in store.agent_secret_keys(self._kind)}

    def put(self, key: Iterable[Any], value: Iterable[Any]) -> None:
        """Record (synced) `value` under `key`."""
        packed = pack(list(key))
        self._store.record_agent_secret(self._kind, packed, pack(list(value)))
        self._keys[packed] = list(key)

    def get(self, key: Iterable[Any]) -> list[Any] | None:
        raw = self._store.agent_secret(self._kind, pack(list(key)))
        return None if raw is None else list(unpack(raw))

    def forget(self, key: Iterable[Any]) -> None:
        packed = pack(list(key))
        if packed in self._keys:
            self._store.forget_agent_secret(self._kind, packed)
            del self._keys[packed]

    def recorded(self) -> list[list[Any]]:
        """Every key on record under this kind."""
        return list(self._keys.values())
