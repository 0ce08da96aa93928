"""Typed errors of the storage layer.

Every error raised on purpose by `ogpu_node.storage` derives from `StorageError`; errors of the
LevelDB binding (plyvel) are wrapped into these classes so that callers never see a plyvel type.
"""

from ogpu_node.errors import OgpuError


class StorageError(OgpuError):
    """Root of every storage error."""


class StoreClosed(StorageError):
    """The store was used after `close()`."""


class StoreOpenError(StorageError):
    """The store could not be opened (missing directory, permissions, bad options, ...)."""


class StoreLocked(StoreOpenError):
    """The LevelDB directory is locked by another open handle (this process or another one)."""


class StoreIOError(StorageError):
    """A read or write failed at the I/O level after the store was opened."""


class CorruptStore(StorageError):
    """Stored bytes are not what the store wrote: a record does not decode or an index dangles."""


class SchemaMismatch(StorageError):
    """The store was written with a different schema version than this code reads."""


class LimitExceeded(StorageError):
    """A key, value, batch or record is larger than its named limit."""


class InvalidCommit(StorageError):
    """`ChainStore.commit_block` was called with arguments that cannot be committed."""


class NonContiguousCommit(InvalidCommit):
    """The committed height is not head.height + 1 (or 0 on an empty store)."""
