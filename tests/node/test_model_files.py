"""The agents' model files: fetched by the registered file id, believed only when the file gives
the registered info, refusals remembered, fetch failures not."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ogpu_node.agents.model_files import ModelFiles
from ogpu_node.agents.task_files import FilesUnusable
from ogpu_node.blobs import BlobError, FileTooLarge, file_id
from ogpu_node.ledger.market.records import Model
from ogpu_node.types import Address, Hash32
from tests.gpu.onnx_examples import digits_cnn, mlp
from tests.gpu.onnx_tasks import task_for

MODEL_ID = Hash32(b"\x11" * 32)


class Files:
    """A blob store's fetch: the files it holds, refusing what is over the caller's bound."""

    def __init__(self, *files: bytes) -> None:
        self.files = {bytes(file_id(f)): f for f in files}
        self.fetched: list[bytes] = []

    async def fetch(self, wanted: bytes, max_bytes: int) -> bytes:
        self.fetched.append(wanted)
        data = self.files.get(wanted)
        if data is None:
            raise BlobError("no peer serves it")
        if len(data) > max_bytes:
            raise FileTooLarge(f"{len(data)} bytes, more than {max_bytes}")
        return data


def record(model_file: bytes, **claim: object) -> Model:
    info = replace(task_for(digits_cnn(), 4).spec.model_info, **claim)  # type: ignore[arg-type]
    return Model(Address(bytes(20)), "m", Hash32(file_id(model_file)), info, 0)


async def test_a_file_that_gives_its_info_is_fetched_once_and_kept() -> None:
    model = digits_cnn().model
    files = Files(model)
    models = ModelFiles(files.fetch)
    assert not models.checked(MODEL_ID)
    assert await models.get(MODEL_ID, record(model)) == model
    assert await models.get(MODEL_ID, record(model)) == model
    assert files.fetched == [bytes(file_id(model))]
    assert models.checked(MODEL_ID) and models.refusal(MODEL_ID) is None


async def test_a_file_that_does_not_give_its_info_is_refused_for_good() -> None:
    model = digits_cnn().model
    files = Files(model)
    models = ModelFiles(files.fetch)
    cheap = record(model, flops_per_row=1_000)
    with pytest.raises(FilesUnusable, match="model_mismatch") as info:
        await models.get(MODEL_ID, cheap)
    assert info.value.reason == "inputs_malformed"
    await models.check(MODEL_ID, cheap)  # never raises; the refusal is remembered
    assert models.checked(MODEL_ID) and "model_mismatch" in (models.refusal(MODEL_ID) or "")
    assert len(files.fetched) == 1


async def test_another_models_file_under_the_registered_info_is_refused() -> None:
    """The registered file id binds the weights: the info of a digits network does not make
    an MLP's file acceptable, nor does a file larger than the registered size get fetched."""
    other = mlp().model
    claimed = record(digits_cnn().model)
    models = ModelFiles(Files(other).fetch)
    with pytest.raises(FilesUnusable, match="inputs_missing"):  # not the registered file id
        await models.get(MODEL_ID, claimed)
    lying = replace(claimed, file_id=Hash32(file_id(other)))
    with pytest.raises(FilesUnusable, match="model_mismatch") as info:
        await models.get(MODEL_ID, lying)
    assert info.value.reason == "inputs_malformed"


async def test_a_file_nobody_serves_is_tried_again_later() -> None:
    model = digits_cnn().model
    files = Files()
    models = ModelFiles(files.fetch)
    with pytest.raises(FilesUnusable, match="inputs_missing"):
        await models.get(MODEL_ID, record(model))
    assert not models.checked(MODEL_ID)
    files.files[bytes(file_id(model))] = model  # someone uploads it
    assert await models.get(MODEL_ID, record(model)) == model
