"""The upload switch and the per-client upload quota, through the real server on 127.0.0.1."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from trio.testing import MockClock

from ogpu_node.blobs import MAX_CHUNK_BYTES, blob_id
from ogpu_node.rpc.config import RpcConfig, RpcConfigError
from ogpu_node.rpc.limits import UPLOAD_WINDOW_SLOTS, UploadQuota
from tests.rpc.conftest import Rpc, serving
from tests.rpc.local_node import LocalNode


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def chunk(i: int) -> bytes:
    return bytes([i]) * MAX_CHUNK_BYTES


QUOTA = RpcConfig(listen="127.0.0.1:0", max_upload_bytes=MAX_CHUNK_BYTES,
                  upload_quota_bytes=2 * MAX_CHUNK_BYTES + 100, upload_window_s=16.0)
"""Two chunks and a small manifest per 16 s, counted in 1 s slots."""


async def test_uploads_turned_off_answer_a_typed_error_and_store_nothing(tmp_path: Path) -> None:
    node = LocalNode(tmp_path / "blobs")
    stored = node.put_file(b"kept before")  # reads go on as before
    config = RpcConfig(listen="127.0.0.1:0", uploads=False)
    async with serving(node, config) as rpc:
        for method, params in [("blob_put", [b64(b"x")]), ("blob_putChunk", [b64(b"x")]),
                               ("blob_putManifest", {"size": 1, "chunks": [blob_id(b"x").hex()]})]:
            error = await rpc.error(method, params)
            assert error["code"] == -32011, method
            assert error["data"] == {"setting": "rpc_uploads"}
            assert "turned off" in error["message"]
        assert blob_id(b"x") not in (node.blobs or ())
        manifest = await rpc.result("blob_manifest", [stored.hex()])
        assert manifest["size"] == len(b"kept before")


async def test_a_client_over_its_quota_is_told_when_to_retry(tmp_path: Path,
                                                            mock_clock: MockClock) -> None:
    node = LocalNode(tmp_path / "blobs")
    async with serving(node, QUOTA) as rpc:
        ids = [(await rpc.result("blob_putChunk", [b64(chunk(i))]))["chunkId"] for i in (1, 2)]
        mock_clock.jump(3.5)
        error = await rpc.error("blob_putChunk", [b64(chunk(3))])
        assert error["code"] == -32012
        # Both chunks went in the first 1 s slot: they leave the window 16 s after its start.
        assert error["data"] == {"retryAfterMs": 12_500, "quotaBytes": QUOTA.upload_quota_bytes,
                                 "windowS": 16.0}
        assert "retry in 12500 ms" in error["message"]
        assert blob_id(chunk(3)) not in (node.blobs or ())  # refused before the store
        # A manifest is an upload too: its bytes count (the 100 spare bytes fit this one).
        await rpc.result("blob_putManifest", {"size": MAX_CHUNK_BYTES, "chunks": ids[:1]})
        big = {"size": 2 * MAX_CHUNK_BYTES, "chunks": ids}
        assert (await rpc.error("blob_putManifest", big))["code"] == -32012
        mock_clock.jump(12.4)
        assert (await rpc.error("blob_put", [b64(b"y" * 1_000)]))["code"] == -32012
        mock_clock.jump(0.1)
        await rpc.result("blob_putChunk", [b64(chunk(3))])
        await rpc.result("blob_putManifest", big)
        rejected = rpc.metrics.registry.get_sample_value("ogpu_rpc_rejections_total",
                                                         {"reason": "upload_quota"})
        assert rejected == 3


@asynccontextmanager
async def client_from(rpc: Rpc, host: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=host),
                                 timeout=30) as http:
        yield http


async def test_the_quota_is_per_client_address_as_the_server_sees_it(
        tmp_path: Path, mock_clock: MockClock) -> None:
    async with serving(LocalNode(tmp_path / "blobs"), QUOTA) as rpc:
        for i in (1, 2):
            await rpc.result("blob_putChunk", [b64(chunk(i))])
        assert (await rpc.error("blob_putChunk", [b64(chunk(3))]))["code"] == -32012
        async with client_from(rpc, "127.0.0.2") as other:  # another address on loopback
            call = {"jsonrpc": "2.0", "method": "blob_putChunk", "params": [b64(chunk(3))],
                    "id": 1}
            answer = (await other.post(rpc.address.http_url, json=call)).json()
        assert answer["result"]["chunkId"] == blob_id(chunk(3)).hex()


def test_the_upload_window_slides_slot_by_slot() -> None:
    quota = UploadQuota(quota_bytes=100, window_s=16.0, max_clients=2)
    assert quota.charge("a", 60, 0.5) == 0.0
    assert quota.charge("a", 30, 5.2) == 0.0
    assert quota.charge("a", 20, 6.0) == pytest.approx(10.0)  # when the 60 bytes leave
    assert quota.charge("b", 100, 6.0) == 0.0  # each client has its own
    assert quota.charge("a", 20, 16.0) == 0.0  # slot 0 left the window at 16 s
    assert quota.charge("a", 51, 16.0) == pytest.approx(5.0)  # the 30 of slot 5 leave at 21 s
    assert quota.charge("a", 101, 0.0) == float("inf")  # never fits
    assert quota.charge("b", 1, 7.0) > 0  # "b" used its 100 bytes at 6 s
    assert quota.charge("c", 1, 7.0) == 0.0 and len(quota) == 2  # bounded: "a" is forgotten
    assert quota.charge("a", 100, 16.0) == 0.0  # ... and comes back with nothing counted
    assert UploadQuota(0, 1.0, 1).charge("x", 10**12, 0.0) == 0.0  # 0 turns it off
    assert UPLOAD_WINDOW_SLOTS == 16


@pytest.mark.parametrize(("changes", "problem"), [
    ({"upload_quota_bytes": 1_000}, "upload_quota_bytes must be 0"),
    ({"upload_quota_bytes": -1}, "upload_quota_bytes must be 0"),
    ({"upload_window_s": 0.0}, "upload_window_s must be positive"),
])
def test_upload_settings_that_cannot_work_are_refused(changes: dict[str, object],
                                                      problem: str) -> None:
    with pytest.raises(RpcConfigError, match=problem):
        RpcConfig(**changes)  # type: ignore[arg-type]
    assert RpcConfig(upload_quota_bytes=0).upload_quota_bytes == 0
