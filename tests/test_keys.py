"""Ed25519 keys: domain-separated signatures and key files that never leak the secret."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ogpu_node import keys
from ogpu_node.address import address_to_text
from ogpu_node.errors import KeyFileError, SignatureError
from ogpu_node.keys import PrivateKey, address_of, read_key_file, verify, write_key_file
from tests.ledger.helpers import KEYS

KEY = KEYS[1]
CHAIN = "ogpu-test"
MSG = b"payload bytes"


def test_sign_and_verify() -> None:
    sig = KEY.sign(CHAIN, "tx", MSG)
    assert len(sig) == 64
    KEY.public_key.verify(CHAIN, "tx", MSG, sig)
    verify(KEY.public_key.raw, CHAIN, "tx", MSG, sig)


def test_signatures_are_deterministic_and_bound_to_the_key() -> None:
    assert KEY.sign(CHAIN, "tx", MSG) == KEY.sign(CHAIN, "tx", MSG)
    with pytest.raises(SignatureError):
        KEYS[2].public_key.verify(CHAIN, "tx", MSG, KEY.sign(CHAIN, "tx", MSG))


@pytest.mark.parametrize(
    ("chain", "kind", "msg"),
    [("ogpu-other", "tx", MSG), (CHAIN, "block", MSG), (CHAIN, "tx", MSG + b"\0"),
     (CHAIN + "x", "tx", MSG), ("", "tx", MSG), (CHAIN, "", MSG)],
    ids=["other-chain", "other-kind", "other-payload", "chain-prefix", "empty-chain", "empty-kind"],
)
def test_domain_separation(chain: str, kind: str, msg: bytes) -> None:
    sig = KEY.sign(CHAIN, "tx", MSG)
    with pytest.raises(SignatureError):
        KEY.public_key.verify(chain, kind, msg, sig)


def test_domain_boundaries_cannot_be_shifted() -> None:
    # chain "ab" + kind "c" must not sign the same bytes as chain "a" + kind "bc": the prefix is
    # a length-delimited encoding, not a concatenation.
    sig = KEY.sign("ab", "c", MSG)
    with pytest.raises(SignatureError):
        KEY.public_key.verify("a", "bc", MSG, sig)


def test_raw_signature_without_domain_does_not_verify() -> None:
    # A signature over the bare payload (no domain prefix) is refused.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = Ed25519PrivateKey.from_private_bytes(KEY.secret_bytes()).sign(MSG)
    with pytest.raises(SignatureError):
        KEY.public_key.verify(CHAIN, "tx", MSG, raw)


@pytest.mark.parametrize(
    ("public_key", "signature"),
    [(b"\0" * 31, b"\0" * 64), (b"\0" * 33, b"\0" * 64), (None, b"\0" * 63), (None, b"")],
)
def test_malformed_key_or_signature_lengths(public_key: bytes | None, signature: bytes) -> None:
    with pytest.raises(SignatureError):
        verify(public_key or KEY.public_key.raw, CHAIN, "tx", MSG, signature)


def test_flipped_signature_bits_are_rejected() -> None:
    sig = KEY.sign(CHAIN, "tx", MSG)
    for i in range(len(sig)):
        bad = sig[:i] + bytes((sig[i] ^ 0x01,)) + sig[i + 1 :]
        with pytest.raises(SignatureError):
            KEY.public_key.verify(CHAIN, "tx", MSG, bad)


def test_invalid_curve_point_is_a_signature_error() -> None:
    # 0xff..ff is not a valid encoding of a point: a typed error, not a ValueError.
    with pytest.raises(SignatureError):
        verify(b"\xff" * 32, CHAIN, "tx", MSG, b"\0" * 64)


def test_from_seed() -> None:
    seed = bytes(range(32))
    key = PrivateKey.from_seed(seed)
    assert key.secret_bytes() == seed
    assert key.address == address_of(key.public_key.raw)
    with pytest.raises(KeyFileError):
        PrivateKey.from_seed(seed[:31])


def test_repr_and_str_hide_the_secret() -> None:
    secret = KEY.secret_bytes().hex()
    for text in (repr(KEY), str(KEY), f"{KEY}", f"{KEY!r}", repr([KEY])):
        assert secret not in text
        assert secret.upper() not in text
        assert address_to_text(KEY.address) in text


def test_generate_gives_distinct_keys() -> None:
    assert PrivateKey.generate().secret_bytes() != PrivateKey.generate().secret_bytes()


# --- key files -----------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_file_round_trip_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "validator.json"
    write_key_file(path, KEY)
    assert _mode(path) == 0o600
    assert read_key_file(path).secret_bytes() == KEY.secret_bytes()


def test_key_file_mode_ignores_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_key_file(tmp_path / "k.json", KEY)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k.json") == 0o600


def test_key_file_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    write_key_file(path, KEY)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="exists"):
        write_key_file(path, KEYS[2])
    assert path.read_bytes() == before
    write_key_file(path, KEYS[2], overwrite=True)
    assert read_key_file(path).address == KEYS[2].address


def test_overwrite_narrows_the_mode_of_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_text("old")
    path.chmod(0o644)
    write_key_file(path, KEY, overwrite=True)
    assert _mode(path) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601, 0o610])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.json"
    write_key_file(path, KEY)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match="readable by others"):
        read_key_file(path)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        read_key_file(tmp_path / "absent.json")


def _doc() -> dict[str, str]:
    return {
        "type": "ogpu/ed25519",
        "address": address_to_text(KEY.address),
        "public_key": KEY.public_key.raw.hex(),
        "private_key": KEY.secret_bytes().hex(),
    }


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    return path


def test_hand_written_valid_file_is_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "k.json", json.dumps(_doc()))
    assert read_key_file(path).address == KEY.address


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"\xff\xfe\x00garbage", b"[1, 2]", b"null", b'"text"', b"{}",
     json.dumps({**_doc(), "type": "rsa"}).encode(),
     json.dumps({k: v for k, v in _doc().items() if k != "private_key"}).encode(),
     json.dumps({k: v for k, v in _doc().items() if k != "public_key"}).encode(),
     json.dumps({**_doc(), "private_key": "zz"}).encode(),
     json.dumps({**_doc(), "private_key": "00" * 31}).encode(),
     json.dumps({**_doc(), "private_key": 5}).encode(),
     json.dumps({**_doc(), "public_key": None}).encode()],
    ids=["empty", "not-json", "not-utf8", "list", "null", "string", "empty-object", "wrong-type",
         "no-private", "no-public", "bad-hex", "short-seed", "int-seed", "null-public"],
)
def test_malformed_key_files_are_refused(tmp_path: Path, content: bytes) -> None:
    path = _write(tmp_path / "k.json", content)
    with pytest.raises(KeyFileError):
        read_key_file(path)


@pytest.mark.parametrize(
    "changes",
    [{"public_key": KEYS[2].public_key.raw.hex()}, {"address": address_to_text(KEYS[2].address)},
     {"address": "ogpu1qqqq"}],
    ids=["other-public-key", "other-address", "bad-address"],
)
def test_mismatched_key_files_are_refused(tmp_path: Path, changes: dict[str, str]) -> None:
    path = _write(tmp_path / "k.json", json.dumps({**_doc(), **changes}))
    with pytest.raises(KeyFileError, match="does not match"):
        read_key_file(path)


def test_a_signature_verified_once_is_not_verified_again_but_changed_bytes_are(
        monkeypatch: pytest.MonkeyPatch) -> None:
    key = PrivateKey.from_seed(b"\x09" * 32)
    payload = b"a transaction body"
    signature = key.sign("chain", "tx", payload)
    checked: list[bytes] = []
    load = keys._load_public

    def counting(public_key: bytes) -> object:
        checked.append(public_key)
        return load(public_key)

    monkeypatch.setattr(keys, "_load_public", counting)
    keys.verified_signatures.clear()
    verify(key.public_key.raw, "chain", "tx", payload, signature)
    verify(key.public_key.raw, "chain", "tx", payload, signature)  # admission, then the block
    assert len(checked) == 1
    other = PrivateKey.from_seed(b"\x0a" * 32)
    for args in [(key.public_key.raw, "chain", "tx", payload + b"!", signature),  # body
                 (key.public_key.raw, "other", "tx", payload, signature),  # chain
                 (key.public_key.raw, "chain", "block", payload, signature),  # kind
                 (other.public_key.raw, "chain", "tx", payload, signature),  # key
                 (key.public_key.raw, "chain", "tx", payload, bytes(64))]:  # signature
        for _ in range(2):  # a failure is never remembered
            with pytest.raises(SignatureError):
                verify(*args)
    assert len(checked) == 11


def test_the_memory_of_valid_signatures_is_bounded_oldest_first() -> None:
    seen = keys.VerifiedSignatures(3)
    for i in range(4):
        seen.add(bytes([i]) * 32)
    assert [bytes([i]) * 32 in seen for i in range(4)] == [False, True, True, True]
    seen.clear()
    assert bytes([3]) * 32 not in seen
