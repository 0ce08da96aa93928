"""Storage of the node: a key-value interface (memory and LevelDB backends) and the chain store."""

from ogpu_node.storage.chain_store import ChainStore, Head
from ogpu_node.storage.errors import (
    CorruptStore,
    InvalidCommit,
    LimitExceeded,
    NonContiguousCommit,
    SchemaMismatch,
    StorageError,
    StoreClosed,
    StoreIOError,
    StoreLocked,
    StoreOpenError,
)
from ogpu_node.storage.kv import DEFAULT_LIMITS, KVLimits, KVStore, WriteHook
from ogpu_node.storage.leveldb import LevelDBKV
from ogpu_node.storage.memory import MemoryKV

__all__ = [
    "DEFAULT_LIMITS",
    "ChainStore",
    "CorruptStore",
    "Head",
    "InvalidCommit",
    "KVLimits",
    "KVStore",
    "LevelDBKV",
    "LimitExceeded",
    "MemoryKV",
    "NonContiguousCommit",
    "SchemaMismatch",
    "StorageError",
    "StoreClosed",
    "StoreIOError",
    "StoreLocked",
    "StoreOpenError",
    "WriteHook",
]
