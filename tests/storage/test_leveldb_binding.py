"""The LevelDB binding installed on this Python (plyvel, or plyvel-next from 3.13 on) does what
`LevelDBKV` asks of it, beyond the conformance suite: its bundled LevelDB has Snappy."""

from __future__ import annotations

from pathlib import Path

from ogpu_node.storage import LevelDBKV

VALUE_BYTES = 4096
N_VALUES = 256


def test_tables_are_snappy_compressed(tmp_path: Path) -> None:
    # A LevelDB built without Snappy ignores compression="snappy" and writes tables raw, which
    # nothing else would notice (plyvel-next's changelog records Windows wheels built so).
    raw_bytes = VALUE_BYTES * N_VALUES
    with LevelDBKV(tmp_path / "db") as kv:
        kv.write_batch((i.to_bytes(4, "big"), bytes([i]) * VALUE_BYTES) for i in range(N_VALUES))
    # Reopening replays the log into a level-0 table, written with the store's compression.
    with LevelDBKV(tmp_path / "db") as kv:
        assert kv.get((7).to_bytes(4, "big")) == bytes([7]) * VALUE_BYTES
    table_bytes = sum(path.stat().st_size for path in (tmp_path / "db").glob("*.ldb"))
    assert 0 < table_bytes < raw_bytes // 8
