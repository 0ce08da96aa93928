"""Ed25519 keys, domain-separated signatures, addresses and key files.

Every signature covers `prefix(chain_id, kind) || payload`, where the prefix is the canonical
encoding of `["ogpu/sig/v1", chain_id, kind]`: a signature made for one chain or one kind of message
(a transaction, a block header, a verdict) never verifies as another.

Private keys are kept inside `PrivateKey`, whose repr hides them; key files are written with mode
0600 and refused when group or others can read them.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ogpu_node.address import address_to_text
from ogpu_node.encoding import pack
from ogpu_node.errors import KeyFileError, SignatureError
from ogpu_node.hashing import digest
from ogpu_node.types import ADDRESS_LEN, PUBKEY_LEN, SIGNATURE_LEN, Address

SIG_DOMAIN = "ogpu/sig/v1"


@lru_cache(maxsize=256)
def signing_prefix(chain_id: str, kind: str) -> bytes:
    """The domain prefix of every signed message of `kind` on `chain_id`."""
    return pack([SIG_DOMAIN, chain_id, kind])


def address_of(public_key: bytes) -> Address:
    """The 20-byte address of an Ed25519 public key."""
    return Address(digest(b"address", public_key)[:ADDRESS_LEN])


@lru_cache(maxsize=8192)
def _load_public(public_key: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public_key)


VERIFIED_CACHE_SIZE = 1 << 16
"""Valid signatures remembered (32 bytes each, about 6 MiB with the dict at most): a
transaction verified at admission is not verified again when its block is applied."""


class VerifiedSignatures:
    """The last `size` signatures that verified, each by the digest of (public key, signature,
    signed bytes): a hit means these exact bytes verified before, so a changed body, key or
    signature misses. A failure is never remembered. Oldest first out; safe across threads
    (checks run in worker threads too)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._seen: dict[bytes, None] = {}
        self._lock = threading.Lock()

    def __contains__(self, key: bytes) -> bool:
        with self._lock:
            return key in self._seen

    def add(self, key: bytes) -> None:
        with self._lock:
            self._seen[key] = None
            if len(self._seen) > self._size:
                del self._seen[next(iter(self._seen))]

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


verified_signatures = VerifiedSignatures(VERIFIED_CACHE_SIZE)
"""The process's memory of valid signatures (`clear()` makes the next checks pay again)."""


def verify(public_key: bytes, chain_id: str, kind: str, payload: bytes, signature: bytes) -> None:
    """Check a domain-separated signature; raise `SignatureError` if it does not verify. The
    same bytes verified before (`verified_signatures`) are not verified again."""
    if len(public_key) != PUBKEY_LEN or len(signature) != SIGNATURE_LEN:
        raise SignatureError("malformed public key or signature length")
    message = signing_prefix(chain_id, kind) + payload
    # key and signature have fixed lengths, so the concatenation names one triple
    seen = digest(b"verified-signature", public_key + signature + message)
    if seen in verified_signatures:
        return
    try:
        _load_public(public_key).verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError(f"invalid {kind} signature") from exc
    verified_signatures.add(seen)


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key (32 raw bytes)."""

    raw: bytes

    @property
    def address(self) -> Address:
        return address_of(self.raw)

    def verify(self, chain_id: str, kind: str, payload: bytes, signature: bytes) -> None:
        verify(self.raw, chain_id, kind, payload, signature)


class PrivateKey:
    """An Ed25519 signing key. Its repr and str never show the secret."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = PublicKey(
            key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        )

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> PrivateKey:
        """A key from 32 secret bytes (used for deterministic dev and test keys)."""
        if len(seed) != 32:
            raise KeyFileError("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def address(self) -> Address:
        return self.public_key.address

    def secret_bytes(self) -> bytes:
        """The 32-byte seed. Only for writing key files, printing devnet keys and deriving
        the X25519 key that reads results (`result_crypto`)."""
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def sign(self, chain_id: str, kind: str, payload: bytes) -> bytes:
        """A domain-separated signature of `payload`."""
        return self._key.sign(signing_prefix(chain_id, kind) + payload)

    def __repr__(self) -> str:
        return f"PrivateKey(address={address_to_text(self.address)}, secret=<hidden>)"

    __str__ = __repr__


# --- key files ---------------------------------------------------------------------------------

KEY_FILE_TYPE = "ogpu/ed25519"


def write_key_file(path: Path, key: PrivateKey, *, overwrite: bool = False) -> None:
    """Write `key` to `path` with mode 0600, created that way (never widened, never logged).

    Refuses to replace an existing file unless `overwrite`, because a lost validator key cannot
    be recovered.
    """
    doc = {
        "type": KEY_FILE_TYPE,
        "address": address_to_text(key.address),
        "public_key": key.public_key.raw.hex(),
        "private_key": key.secret_bytes().hex(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} exists; refusing to overwrite a key") from exc
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, 0o600)
        json.dump(doc, f, indent=2)
        f.write("\n")


def read_key_file(path: Path) -> PrivateKey:
    """Load a key file, refusing one that others can read or that does not match itself."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise KeyFileError(f"{path}: malformed key file (not UTF-8 text)") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by others (mode {oct(mode & 0o777)}); chmod 600 it")
    try:
        doc = json.loads(text)
        if doc.get("type") != KEY_FILE_TYPE:
            raise KeyFileError(f"{path}: not an {KEY_FILE_TYPE} key file")
        key = PrivateKey.from_seed(bytes.fromhex(doc["private_key"]))
        public = bytes.fromhex(doc["public_key"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeyFileError(f"{path}: malformed key file") from exc
    if public != key.public_key.raw or doc.get("address") != address_to_text(key.address):
        raise KeyFileError(f"{path}: public key or address does not match the private key")
    return key
