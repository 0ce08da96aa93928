"""Sealed results (`ogpu_node.result_crypto`): a provider's files are ciphertexts only the
client (after the release) and the committee (given the provider's key) can open, and the
checks run on them as on plain files."""

from __future__ import annotations

import numpy as np
import pytest

from gpu.artifacts import checkpoint_chain, decode_arrays
from gpu.device import Device
from gpu.errors import ArtifactError
from gpu.verify import verify_matmul, verify_training
from gpu.workloads import WorkloadResult, run_workload
from ogpu_node.blobs import file_id
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger.market.records import key_commitment
from ogpu_node.result_crypto import (
    ResultKeyError,
    client_key,
    ephemeral_public,
    member_key,
    new_ephemeral,
    output_file_number,
    provider_key,
    x25519_private_of,
    x25519_public_of,
)
from tests.gpu.conftest import MATMUL, TRAIN

CLIENT = PrivateKey.from_seed(b"\x21" * 32)
TASK = b"\x33" * 32
EPHEMERAL = new_ephemeral()
SEALER = provider_key(EPHEMERAL, CLIENT.public_key.raw, TASK, 1)
COMMITMENT = key_commitment(ephemeral_public(EPHEMERAL))


@pytest.fixture(scope="module")
def sealed_training(device: Device) -> WorkloadResult:
    return run_workload(TRAIN, device, sealer=SEALER)


def test_an_ed25519_key_and_its_x25519_image_agree() -> None:
    for seed in range(16):
        key = PrivateKey.from_seed(bytes([seed]) * 32)
        assert (x25519_private_of(key).public_key().public_bytes_raw()
                == x25519_public_of(key.public_key.raw))


def test_sealed_training_is_checked_like_a_plain_one(
        device: Device, trained: WorkloadResult, sealed_training: WorkloadResult) -> None:
    sealed = sealed_training
    assert sealed.metrics == trained.metrics
    assert sealed.checkpoint_ids != trained.checkpoint_ids  # ids of the ciphertexts
    assert sealed.checkpoint_root == checkpoint_chain(sealed.checkpoint_ids)
    assert all(file_id(c) == i for c, i in zip(sealed.checkpoints, sealed.checkpoint_ids,
                                                strict=True))
    assert sealed.output_id == sealed.checkpoint_ids[-1]
    member = member_key(EPHEMERAL, COMMITMENT, CLIENT.public_key.raw, TASK, 1)
    args = (TRAIN, sealed.checkpoints, sealed.checkpoint_ids, sealed.checkpoint_root,
            sealed.metrics, len(TRAIN.checkpoint_steps), np.random.default_rng(0), device)
    verdict = verify_training(*args, sealer=member)
    assert verdict.ok and "bit-exact" in verdict.checked, verdict
    # a member without the key learns nothing and cannot pass the result
    assert verify_training(*args).code != "ok"
    wrong = provider_key(new_ephemeral(), CLIENT.public_key.raw, TASK, 1)
    assert verify_training(*args, sealer=wrong).code == "output_unreadable"


def test_only_the_client_opens_the_released_output(device: Device,
                                                   multiplied: WorkloadResult) -> None:
    sealed = run_workload(MATMUL, device, sealer=SEALER)
    assert sealed.output != multiplied.output
    with pytest.raises(ArtifactError):  # ciphertext, not an artifact
        decode_arrays(sealed.output)
    released = ephemeral_public(EPHEMERAL)
    opened = client_key(CLIENT, released, COMMITMENT, TASK, 1).open(output_file_number(0),
                                                                     sealed.output)
    assert opened == multiplied.output
    assert verify_matmul(MATMUL, opened, 8, np.random.default_rng(0), device).ok
    stranger = PrivateKey.from_seed(b"\x22" * 32)
    with pytest.raises(ResultKeyError):  # a third peer holding the released key
        client_key(stranger, released, COMMITMENT, TASK, 1).open(0, sealed.output)
    with pytest.raises(ResultKeyError):  # a key other than the committed one
        client_key(CLIENT, ephemeral_public(new_ephemeral()), COMMITMENT, TASK, 1)


def test_a_member_refuses_a_key_its_result_did_not_commit_to() -> None:
    with pytest.raises(ResultKeyError):
        member_key(new_ephemeral(), COMMITMENT, CLIENT.public_key.raw, TASK, 1)
    with pytest.raises(ResultKeyError):  # the key of another attempt opens nothing
        provider_key(EPHEMERAL, CLIENT.public_key.raw, TASK, 2).open(0, SEALER.seal(0, b"x"))
