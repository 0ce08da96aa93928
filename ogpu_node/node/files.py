"""Files and chunks for the node's clients and agents: `Files` keeps them in the node's
`BlobStore`, serves them to peers (`/ogpu/blob/1`, `on_blob_request`) and fetches missing ones from
peers, each chunk checked against its id (`fetch_blob`, `fetch_file`, `fetch_files`).

A file is fetched as its manifest chunk, then its chunks `FILE_CHUNKS_IN_FLIGHT` at a time, each
asked first of the peer that had the manifest. No service loop: requests come from the network's
handler and from callers (RPC `put_*`/`get_chunk`, the provider and verifier agents).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import trio

from ogpu_node.blobs import (
    PROTO_BLOB,
    BlobError,
    BlobRequest,
    BlobResponse,
    BlobStore,
    FileTooLarge,
    check_chunk,
    decode_manifest,
)
from ogpu_node.encoding import decode, encode
from ogpu_node.errors import OgpuError
from ogpu_node.types import Hash32
from p2p.errors import P2PError
from p2p.network import Network

log = logging.getLogger("ogpu.node")

FILE_CHUNKS_IN_FLIGHT = 4
"""Chunk requests one file fetch keeps open at once (1 MiB each)."""


class Files:
    """The node's blobs: stored, served to peers, fetched from them. Every method raises
    `BlobError` when the node keeps no blobs (`blobs` is None)."""

    def __init__(self, network: Network, blobs: BlobStore | None, request_timeout_s: float
                 ) -> None:
        self.network = network
        self.blobs = blobs
        self.request_timeout_s = request_timeout_s

    def _store(self) -> BlobStore:
        if self.blobs is None:
            raise BlobError("this node keeps no blobs")
        return self.blobs

    def put_file(self, data: bytes) -> Hash32:
        """Store a whole file; returns its id (`blobs.file_id`)."""
        return self._store().put_file(data)

    def put_chunk(self, data: bytes) -> Hash32:
        """Store one chunk; returns its id."""
        return self._store().put(data)

    def put_manifest(self, size: int, chunk_ids: Sequence[bytes]) -> Hash32:
        """Store the manifest of a file whose chunks were put one by one; returns the file's id."""
        return self._store().put_manifest(size, chunk_ids)

    async def on_blob_request(self, peer: str, data: bytes) -> bytes:
        """`/ogpu/blob/1`: a chunk from our store, empty when we do not have it."""
        request = decode(BlobRequest, data)
        return encode(BlobResponse(self._store().get(request.chunk_id) or b""))

    async def fetch_blob(self, chunk_id: bytes) -> bytes:
        """A chunk from our store, or from the first peer that has it (checked against its id);
        fetched chunks are stored. Raises `BlobError` when no connected peer has it."""
        return (await self._fetch_blob(chunk_id))[0]

    async def _fetch_blob(self, chunk_id: bytes, first: str | None = None
                          ) -> tuple[bytes, str | None]:
        """`fetch_blob`, asking peer `first` before the others; returns the chunk and the peer
        that served it (None: our own store)."""
        store = self._store()
        local = store.get(chunk_id)
        if local is not None:
            return local, None
        peers = [peer.peer_id for peer in self.network.peers()]
        if first in peers:
            peers.remove(first)
            peers.insert(0, first)
        for peer_id in peers:
            try:
                with trio.fail_after(self.request_timeout_s * 5):
                    raw = await self.network.request(peer_id, PROTO_BLOB,
                                                     encode(BlobRequest(chunk_id)))
                response = decode(BlobResponse, raw)
            except (P2PError, OgpuError, trio.TooSlowError):
                continue
            if response.data:
                try:
                    data = check_chunk(chunk_id, response.data)
                except BlobError as exc:
                    log.warning("peer %s: %s", peer_id, exc)
                    continue
                store.put(data)
                return data, peer_id
        raise BlobError(f"no connected peer has chunk {chunk_id.hex()[:16]}")

    async def fetch_file(self, file_id: bytes, max_bytes: int = 1 << 32, *, attempts: int = 1,
                         retry_s: float = 2.0) -> bytes:
        """A file (see `blobs.Manifest`) from our store, or chunk by chunk from peers; every
        chunk is checked against its id and stored. The chunks are asked for
        `FILE_CHUNKS_IN_FLIGHT` at a time, first from the peer that had the manifest. A fetch
        that fails is tried again after `retry_s`, `attempts` times in all (chunks fetched
        before stay). Raises `BlobError`."""
        store = self._store()
        for attempt in range(1, attempts + 1):
            try:
                local = store.get_file(file_id)
                if local is not None:
                    return local
                raw, holder = await self._fetch_blob(file_id)
                manifest = decode_manifest(raw)
                if manifest.size > max_bytes:
                    raise FileTooLarge(f"file of {manifest.size} bytes exceeds the {max_bytes} "
                                       "asked for")
                return b"".join(await self._fetch_chunks(manifest.chunks, holder))
            except FileTooLarge:
                raise
            except BlobError:
                if attempt >= attempts:
                    raise
            await trio.sleep(retry_s)
        raise BlobError("no attempt made")

    async def _fetch_chunks(self, chunk_ids: Sequence[bytes], first: str | None) -> list[bytes]:
        """The chunks, `FILE_CHUNKS_IN_FLIGHT` at a time, each asked of `first` before the
        others; the first failure stops the rest and is raised."""
        slots = trio.Semaphore(FILE_CHUNKS_IN_FLIGHT)

        async def fetch(chunk_id: bytes) -> bytes:
            async with slots:
                return (await self._fetch_blob(chunk_id, first))[0]

        return await _fetch_all(fetch, chunk_ids)

    async def fetch_files(self, file_ids: list[bytes], max_bytes: int = 1 << 32, *,
                          attempts: int = 1, retry_s: float = 2.0) -> list[bytes]:
        """Several files at once (`fetch_file` each, concurrently: their chunk requests overlap
        instead of waiting on each other's round trips), in the order asked. The first failure
        stops the others and is raised (`BlobError`)."""
        async def fetch(file_id: bytes) -> bytes:
            return await self.fetch_file(file_id, max_bytes, attempts=attempts, retry_s=retry_s)

        return await _fetch_all(fetch, file_ids)


async def _fetch_all(fetch: Callable[[bytes], Awaitable[bytes]], ids: Sequence[bytes]
                     ) -> list[bytes]:
    """`fetch` of every id at once, in the order given; the first `BlobError` cancels the
    others and is raised."""
    results: list[bytes] = [b""] * len(ids)
    failures: list[BlobError] = []

    async def one(index: int) -> None:
        try:
            results[index] = await fetch(ids[index])
        except BlobError as exc:
            failures.append(exc)
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        for index in range(len(ids)):
            nursery.start_soon(one, index)
    if failures:
        raise failures[0]
    return results
