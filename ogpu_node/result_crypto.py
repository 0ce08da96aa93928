"""Results private until paid: the keys and the encryption of a task's output and checkpoints.

For each attempt the provider draws an ephemeral X25519 key `e`. The files' key is

    K = HKDF-SHA256(X25519(e, client), info = "ogpu result" | task id | attempt)

where `client` is the client's X25519 public key, the birational image of the Ed25519 key that
signed its `SUBMIT_TASK` (as age and libsodium map an Ed25519 key to X25519): the client needs
no new key, only the one it holds. Each file is AES-256-GCM under K with a nonce naming the
file (the output, or checkpoint i), so ciphertext ids are what the provider commits, and anyone
may fetch them without reading a byte.

* The result commits `digest(E)`, E the public half of `e`.
* Committee members ask the provider for `e` (`/ogpu/result-key/1`, answered only to a peer
  proven to run a member's validator, over the Noise-encrypted stream), check it against the
  commitment, derive K and decrypt what they check: a provider cannot show members one key and
  the client another, because K follows from E and the client's key alone.
* Once the result is accepted the provider publishes E (`RELEASE_RESULT`), which the chain
  checks against the commitment before it pays; the client alone can then derive K (it needs
  the private half of `client` or of E).

A pool's answer is sealed the same way for the pool's owner, bound to the request id (attempt
0), with E in the answer itself (`POOL_RESULT`): the owner may read an answer at once (it pays
for every answer a check does not reject), and nobody else can.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ogpu_node.encoding import pack
from ogpu_node.errors import OgpuError
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger.market.records import key_commitment

KEY_BYTES = 32
SEGMENT_BYTES = 64 * 1024 * 1024
"""Files are sealed in segments (AES-GCM takes at most 2^31 - 1 bytes at once)."""
TAG_BYTES = 16
_P = 2**255 - 19


class ResultKeyError(OgpuError):
    """A key that does not match its commitment, or a file that does not decrypt under it."""


def x25519_public_of(ed25519_public: bytes) -> bytes:
    """The X25519 public key of an Ed25519 public key: u = (1 + y) / (1 - y) mod p."""
    if len(ed25519_public) != 32:
        raise ResultKeyError("an Ed25519 public key is 32 bytes")
    y = int.from_bytes(ed25519_public, "little") & ((1 << 255) - 1)
    if y >= _P or y == 1:
        raise ResultKeyError("not an Ed25519 public key")
    u = (1 + y) * pow(1 - y, _P - 2, _P) % _P
    return u.to_bytes(32, "little")


def x25519_private_of(key: PrivateKey) -> X25519PrivateKey:
    """The X25519 private key matching `x25519_public_of(key.public_key.raw)`: the first half
    of SHA-512 of the Ed25519 seed, which X25519 clamps as Ed25519 does."""
    return X25519PrivateKey.from_private_bytes(hashlib.sha512(key.secret_bytes()).digest()[:32])


def new_ephemeral() -> bytes:
    """A fresh ephemeral private key `e` for one attempt (32 bytes, kept by the provider)."""
    return X25519PrivateKey.generate().private_bytes_raw()


def ephemeral_public(ephemeral: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(ephemeral).public_key().public_bytes_raw()


@dataclass(frozen=True)
class ResultKey:
    """The files' key of one attempt of one task (and, on the provider's side, the ephemeral
    key it derives from)."""

    key: bytes
    task_id: bytes
    attempt: int
    ephemeral: bytes = b""

    def seal(self, number: int, data: bytes) -> bytes:
        """File `number` of the result (checkpoint i is file i; the output of a workload
        without checkpoints is file 0), encrypted in segments of SEGMENT_BYTES: the same bytes
        give the same ciphertext, so a member holding the key can tell a replay from its
        committed id."""
        aesgcm = AESGCM(self.key)
        segments = range(0, max(1, len(data)), SEGMENT_BYTES)
        return b"".join(aesgcm.encrypt(_nonce(number, i), data[start:start + SEGMENT_BYTES],
                                       self._aad(number))
                        for i, start in enumerate(segments))

    def open(self, number: int, data: bytes) -> bytes:
        """The plaintext of file `number`; `ResultKeyError` when it was not sealed under this
        key (or was altered)."""
        aesgcm, step = AESGCM(self.key), SEGMENT_BYTES + TAG_BYTES
        try:
            return b"".join(aesgcm.decrypt(_nonce(number, i), data[start:start + step],
                                           self._aad(number))
                            for i, start in enumerate(range(0, max(1, len(data)), step)))
        except (InvalidTag, ValueError) as exc:
            raise ResultKeyError(f"file {number} does not decrypt under the result's key"
                                 ) from exc

    def _aad(self, number: int) -> bytes:
        return pack([self.task_id, self.attempt, number])


def _nonce(number: int, segment: int) -> bytes:
    return number.to_bytes(8, "big") + segment.to_bytes(4, "big")


def output_file_number(checkpoints: int) -> int:
    """The number the output is sealed as: the last checkpoint of a training run (its output
    is its final checkpoint), else 0."""
    return checkpoints - 1 if checkpoints else 0


def _derive(shared: bytes, task_id: bytes, attempt: int) -> bytes:
    return HKDF(hashes.SHA256(), KEY_BYTES, salt=None,
                info=b"ogpu result" + pack([task_id, attempt])).derive(shared)


def provider_key(ephemeral: bytes, client_ed25519: bytes, task_id: bytes,
                 attempt: int) -> ResultKey:
    """The key a provider (or a member given `e`) derives."""
    client = X25519PublicKey.from_public_bytes(x25519_public_of(client_ed25519))
    shared = X25519PrivateKey.from_private_bytes(ephemeral).exchange(client)
    return ResultKey(_derive(shared, task_id, attempt), task_id, attempt, ephemeral)


def member_key(ephemeral: bytes, commitment: bytes, client_ed25519: bytes, task_id: bytes,
               attempt: int) -> ResultKey:
    """The key a committee member derives from the `e` the provider gave it, once `e` is shown
    to be the one the result committed to."""
    if len(ephemeral) != KEY_BYTES or key_commitment(ephemeral_public(ephemeral)) != commitment:
        raise ResultKeyError("the provider's key does not match its result's commitment")
    return provider_key(ephemeral, client_ed25519, task_id, attempt)


def client_key(client: PrivateKey, released: bytes, commitment: bytes, task_id: bytes,
               attempt: int) -> ResultKey:
    """The key the client derives from the E the provider released on chain."""
    if key_commitment(released) != commitment:
        raise ResultKeyError("the released key does not match the result's commitment")
    shared = x25519_private_of(client).exchange(X25519PublicKey.from_public_bytes(released))
    return ResultKey(_derive(shared, task_id, attempt), task_id, attempt)


def open_answer(owner: PrivateKey, request_id: bytes, key: bytes, data: bytes) -> bytes:
    """A pool's answer to `request_id`, opened with its owner's key; `key` is the public key
    the answer was committed with (RPC `pool_get`: the request's `key`)."""
    return client_key(owner, key, key_commitment(key), request_id, 0).open(0, data)


def open_output(client: PrivateKey, task_view: Mapping[str, Any], data: bytes) -> bytes:
    """The output of a task, as RPC's `task_get` shows it (`task_view`), opened with its
    client's key; `ResultKeyError` while it is sealed, or for anyone but the client."""
    result, released = task_view.get("result"), task_view.get("releasedKey")
    if not result or not released:
        raise ResultKeyError(f"task {task_view['id']}'s result is sealed (the task is "
                             f"{task_view['status']}): it opens once the committee accepts it "
                             "and the provider releases its key")
    opener = client_key(client, bytes.fromhex(released), bytes.fromhex(result["keyCommitment"]),
                        bytes.fromhex(task_view["id"]), task_view["attempt"])
    return opener.open(output_file_number(len(result["checkpointIds"])), data)
