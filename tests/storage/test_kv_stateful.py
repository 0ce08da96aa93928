"""MemoryKV and LevelDBKV driven by the same random operations must agree after every step.

CI profile: ~30 examples of ~30 steps; OGPU_DEEP=1 runs a much larger search.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ogpu_node.storage import KVLimits, KVStore, LevelDBKV, LimitExceeded, MemoryKV

DEEP = os.environ.get("OGPU_DEEP") == "1"
LIMITS = KVLimits(max_key_bytes=4, max_value_bytes=6, max_batch_ops=8, max_batch_bytes=48)

# A tiny alphabet so that keys collide, share prefixes and sit on the 0x00/0xff edges.
KEYS = st.lists(st.sampled_from([b"\x00", b"a", b"b", b"\xff"]), max_size=3).map(b"".join)
LONG_KEYS = st.binary(min_size=LIMITS.max_key_bytes + 1, max_size=LIMITS.max_key_bytes + 2)
VALUES = st.binary(max_size=LIMITS.max_value_bytes)
PUTS = st.lists(st.tuples(KEYS, VALUES), max_size=6)
DELETES = st.lists(KEYS, max_size=4)


class InjectedFault(Exception):
    """Raised by the write hook to abort a batch while it is being staged."""


class KVAgreement(RuleBasedStateMachine):
    """Applies every operation to both backends and compares results and full contents."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_at: int | None = None
        self.directory = Path(tempfile.mkdtemp(prefix="ogpu-kv-stateful-"))
        self.memory = MemoryKV(limits=LIMITS, write_hook=self.hook)
        self.leveldb = self.open_leveldb()

    def open_leveldb(self) -> LevelDBKV:
        return LevelDBKV(self.directory / "db", limits=LIMITS, write_hook=self.hook)

    def hook(self, index: int) -> None:
        if index == self.fail_at:
            raise InjectedFault(index)

    def both(self) -> tuple[KVStore, KVStore]:
        return self.memory, self.leveldb

    def write_both(self, puts: list[tuple[bytes, bytes]], deletes: list[bytes]) -> None:
        outcomes: list[str] = []
        for store in self.both():
            try:
                store.write_batch(puts, deletes)
                outcomes.append("ok")
            except (LimitExceeded, InjectedFault) as error:
                outcomes.append(repr(error))
        assert outcomes[0] == outcomes[1]

    @rule(puts=PUTS, deletes=DELETES)
    def write_batch(self, puts: list[tuple[bytes, bytes]], deletes: list[bytes]) -> None:
        self.write_both(puts, deletes)

    @rule(puts=PUTS, key=LONG_KEYS, value=VALUES, as_delete=st.booleans())
    def write_oversize_batch(
        self, puts: list[tuple[bytes, bytes]], key: bytes, value: bytes, as_delete: bool
    ) -> None:
        for store in self.both():
            with pytest.raises(LimitExceeded):
                if as_delete:
                    store.write_batch(puts, [key])
                else:
                    store.write_batch([*puts, (key, value)])

    @rule(puts=PUTS, deletes=DELETES, data=st.data())
    def write_batch_failing_midway(
        self, puts: list[tuple[bytes, bytes]], deletes: list[bytes], data: st.DataObject
    ) -> None:
        self.fail_at = data.draw(st.integers(0, len(puts) + len(deletes)))
        try:
            self.write_both(puts, deletes)
        finally:
            self.fail_at = None

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        assert self.memory.get(key) == self.leveldb.get(key)

    @rule(prefix=KEYS)
    def iterate_prefix(self, prefix: bytes) -> None:
        assert list(self.memory.iterate(prefix)) == list(self.leveldb.iterate(prefix))
        assert (list(self.memory.iterate(prefix, reverse=True))
                == list(self.leveldb.iterate(prefix, reverse=True)))

    @rule(prefix=KEYS, puts=PUTS)
    def iterate_across_a_write(self, prefix: bytes, puts: list[tuple[bytes, bytes]]) -> None:
        iterators = [store.iterate(prefix) for store in self.both()]
        first = [next(items, None) for items in iterators]
        self.write_both(puts, [])
        assert first[0] == first[1]
        assert list(iterators[0]) == list(iterators[1])

    @rule()
    def reopen_leveldb(self) -> None:
        self.leveldb.close()
        self.leveldb = self.open_leveldb()

    @invariant()
    def same_contents(self) -> None:
        assert list(self.memory.iterate()) == list(self.leveldb.iterate())

    def teardown(self) -> None:
        self.memory.close()
        self.leveldb.close()
        shutil.rmtree(self.directory, ignore_errors=True)


KVAgreement.TestCase.settings = settings(
    max_examples=400 if DEEP else 30,
    stateful_step_count=100 if DEEP else 30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestKVAgreement = KVAgreement.TestCase
