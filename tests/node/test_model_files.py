"""The agents' model files: fetched by the registered file id, believed only when the file gives
the registered info and the runtime runs it, refusals remembered (by file and claim), fetch
failures not, and a file that breaks `onnx` itself refused like any other."""

from __future__ import annotations

from dataclasses import replace

import onnx
import pytest
import trio
from onnx import TensorProto, helper

from gpu.onnx_models import ModelRefused, inspect_model
from gpu.onnx_run import check_model_file
from ogpu_node.agents.model_files import ModelFiles
from ogpu_node.agents.task_files import FilesUnusable
from ogpu_node.blobs import BlobError, FileTooLarge, file_id
from ogpu_node.ledger.market.records import Model
from ogpu_node.types import Address, Hash32
from ogpu_node.workloads.models import ElemType, ModelInfo, TensorInfo
from tests.gpu.onnx_examples import digits_cnn, mlp
from tests.gpu.onnx_tasks import task_for


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


async def check_here(data: bytes, info: ModelInfo) -> None:
    """The agents' check (`gpu.onnx_run.check_model_file`), in a thread of this process."""
    await trio.to_thread.run_sync(check_model_file, data, info)


def record(model_file: bytes, info: ModelInfo | None = None,
           flops_per_row: int | None = None) -> Model:
    """A registration of `model_file` claiming `info` (default: the digits CNN's), with another
    `flops_per_row` when given."""
    claim = info or task_for(digits_cnn(), 4).spec.model_info
    if flops_per_row is not None:
        claim = replace(claim, flops_per_row=flops_per_row)
    return Model(Address(bytes(20)), "m", Hash32(file_id(model_file)), claim, 0)


async def test_a_file_that_gives_its_info_is_fetched_once_and_kept() -> None:
    model = digits_cnn().model
    files = Files(model)
    models = ModelFiles(files.fetch, check_here)
    assert not models.checked(record(model))
    assert await models.get(record(model)) == model
    assert await models.get(record(model)) == model
    assert files.fetched == [bytes(file_id(model))]
    assert models.checked(record(model)) and models.refusal(record(model)) is None


async def test_a_file_that_does_not_give_its_info_is_refused_for_good() -> None:
    model = digits_cnn().model
    files = Files(model)
    models = ModelFiles(files.fetch, check_here)
    cheap = record(model, flops_per_row=1_000)
    with pytest.raises(FilesUnusable, match="model_mismatch") as info:
        await models.get(cheap)
    assert info.value.reason == "inputs_malformed"
    await models.check(cheap)  # never raises; the refusal is remembered
    assert models.checked(cheap) and "model_mismatch" in (models.refusal(cheap) or "")
    assert len(files.fetched) == 1
    assert await models.get(record(model)) == model  # the same file under its true info


async def test_another_models_file_under_the_registered_info_is_refused() -> None:
    """The registered file id binds the weights: the info of a digits network does not make
    an MLP's file acceptable, nor does a file larger than the registered size get fetched."""
    other = mlp().model
    claimed = record(digits_cnn().model)
    models = ModelFiles(Files(other).fetch, check_here)
    with pytest.raises(FilesUnusable, match="inputs_missing"):  # not the registered file id
        await models.get(claimed)
    lying = replace(claimed, file_id=Hash32(file_id(other)))
    with pytest.raises(FilesUnusable, match="model_mismatch") as info:
        await models.get(lying)
    assert info.value.reason == "inputs_malformed"


async def test_a_file_nobody_serves_is_tried_again_later() -> None:
    model = digits_cnn().model
    files = Files()
    models = ModelFiles(files.fetch, check_here)
    with pytest.raises(FilesUnusable, match="inputs_missing"):
        await models.get(record(model))
    assert not models.checked(record(model))
    files.files[bytes(file_id(model))] = model  # someone uploads it
    assert await models.get(record(model)) == model


def one_node_model(node: onnx.NodeProto, x_type: int, y_type: int) -> bytes:
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", x_type, ["batch", 4])],
        [helper.make_tensor_value_info("y", y_type, ["batch", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


async def test_a_file_that_breaks_onnx_is_refused_and_remembered() -> None:
    """A Cast to element type 0 made onnx's own code raise ValueError, which escaped the
    inspection and ended every provider agent that checked the model (review finding)."""
    model = one_node_model(helper.make_node("Cast", ["x"], ["y"], to=0),
                           TensorProto.FLOAT, TensorProto.FLOAT)
    with pytest.raises(ModelRefused, match="model_refused"):
        inspect_model(model)
    claim = ModelInfo(len(model), 17, (TensorInfo("x", ElemType.FLOAT, (4,)),),
                      (TensorInfo("y", ElemType.FLOAT, (4,)),), 4, 0, 16)
    models = ModelFiles(Files(model).fetch, check_here)
    await models.check(record(model, claim))  # never raises
    assert "model_refused" in (models.refusal(record(model, claim)) or "")


async def test_a_file_the_runtime_cannot_run_is_refused_before_any_bid() -> None:
    """Relu on int64 passes the inspection but ONNX Runtime has no kernel for it: checking only
    the info let a client make every winner return its task at a penalty (review finding)."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Cast", ["r"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.INT64, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = proto.SerializeToString()
    info = inspect_model(model)  # the inspection alone accepts it
    models = ModelFiles(Files(model).fetch, check_here)
    with pytest.raises(FilesUnusable, match="model_refused") as refused:
        await models.get(record(model, info))
    assert refused.value.reason == "inputs_malformed"
