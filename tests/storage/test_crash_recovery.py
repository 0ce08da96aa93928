"""A process killed at any point of a block commit leaves LevelDB at the old or the new block.

Each crash runs in a fresh interpreter (`subprocess`, not fork) that ends itself with `os._exit`
from the store's write hook at the k-th staged write, for every k, including the point just after
the batch was written. The test process then reopens the directory and compares every key.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

import ogpu_node
from ogpu_node.storage import ChainStore, Head, LevelDBKV

Commit = dict[str, Any]
MakeCommit = Callable[..., Commit]

REPO_ROOT = Path(ogpu_node.__file__).resolve().parent.parent
CHILD_TIMEOUT_S = 30
CRASH_EXIT = 71  # the child ends itself with this code from the write hook

CRASHING_COMMIT = """
import os, sys
import msgpack
from ogpu_node.storage import ChainStore, LevelDBKV

path, crash_at, commit_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
CRASH_EXIT = int(sys.argv[4])
with open(commit_file, "rb") as f:
    commit = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)

def crash(index):
    if index == crash_at:
        os._exit(CRASH_EXIT)

ChainStore(LevelDBKV(path, write_hook=crash)).commit_block(**commit)
os._exit(2)  # the hook never fired: the test asked for a write that does not exist
"""

OPEN_LOCKED = """
import sys
from ogpu_node.storage import LevelDBKV, StoreLocked
try:
    LevelDBKV(sys.argv[1])
except StoreLocked:
    sys.exit(0)
sys.exit(3)
"""


def run_child(script: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        timeout=CHILD_TIMEOUT_S,
        env={"PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
        check=False,
    )


def snapshot(path: Path) -> dict[bytes, bytes]:
    with LevelDBKV(path) as kv:
        return dict(kv.iterate())


def head_after(path: Path) -> Head | None:
    with ChainStore(LevelDBKV(path)) as store:
        return store.head()


@pytest.mark.parametrize(("height", "expected_writes"), [(0, 13), (1, 18)])
def test_crash_at_every_write_leaves_old_or_new_block(
    tmp_path: Path, make_commit: MakeCommit, height: int, expected_writes: int
) -> None:
    template = tmp_path / "template"
    with ChainStore(LevelDBKV(template)) as store:
        for previous in range(height):
            store.commit_block(**make_commit(previous))
        old_head = store.head()
    old = snapshot(template)

    commit = make_commit(height)
    shutil.copytree(template, tmp_path / "uncrashed")
    hook_calls: list[int] = []
    with ChainStore(LevelDBKV(tmp_path / "uncrashed", write_hook=hook_calls.append)) as store:
        store.commit_block(**commit)
        new_head = store.head()
    new = snapshot(tmp_path / "uncrashed")
    writes = hook_calls[-1]
    assert hook_calls == list(range(writes + 1))
    assert writes == expected_writes  # genesis: schema+body+height+9 state+head; block 1 adds txs
    commit_file = tmp_path / "commit.msgpack"
    commit_file.write_bytes(msgpack.packb(commit, use_bin_type=True))

    for crash_at in range(writes + 1):
        path = tmp_path / f"crash-{crash_at}"
        shutil.copytree(template, path)
        result = run_child(
            CRASHING_COMMIT, str(path), str(crash_at), str(commit_file), str(CRASH_EXIT)
        )
        assert result.returncode == CRASH_EXIT, result.stderr.decode()
        written = crash_at == writes
        assert snapshot(path) == (new if written else old), f"mixed state at write {crash_at}"
        assert head_after(path) == (new_head if written else old_head)
        if not written:  # the node resumes: the same block commits after the restart
            with ChainStore(LevelDBKV(path)) as store:
                store.commit_block(**commit)
            assert snapshot(path) == new


def test_open_held_by_another_process_is_store_locked(tmp_path: Path) -> None:
    with LevelDBKV(tmp_path / "db"):
        result = run_child(OPEN_LOCKED, str(tmp_path / "db"))
    assert result.returncode == 0, result.stderr.decode()
