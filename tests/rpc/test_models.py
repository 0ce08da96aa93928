"""Registered models over RPC (`model_get`, `model_list`) and how tasks and pools of kinds 4
(a registered model's inference) and 5 (a network's training) look, on state built by signed
transactions in real blocks."""

from __future__ import annotations

import pytest

from gpu.onnx_models import inspect_model
from ogpu_node.encoding import encode
from ogpu_node.ledger.market.payloads import OpenPool, RegisterModel, SubmitTask
from ogpu_node.types import Hash32, ogpu
from ogpu_node.workloads.kinds import decode_spec
from ogpu_node.workloads.models import ModelInferSpec
from ogpu_node.workloads.net import (
    FLATTEN,
    RELU,
    LossKind,
    NetTrainSpec,
    Optimizer,
    OptimizerKind,
    Schedule,
    ScheduleKind,
    conv2d,
    dense,
    max_pool,
)
from tests.gpu.onnx_examples import mlp
from tests.rpc.conftest import Rpc
from tests.rpc.market import Market
from tests.rpc.test_market import MISSING, assert_param_error, text

INPUTS = Hash32(b"\x05" * 32)
NET = NetTrainSpec(
    seed=4, input_shape=(1, 8, 8),
    layers=(conv2d(4, 3, padding=1), RELU, max_pool(2), FLATTEN, dense(10)),
    loss=LossKind.CROSS_ENTROPY,
    optimizer=Optimizer(OptimizerKind.ADAMW, 1_000, 900_000, 999_000, 10_000),
    schedule=Schedule(ScheduleKind.COSINE, warmup_steps=10, floor_micros=100),
    n_samples=512, val_bps=1_000, batch=32, steps=100, checkpoint_every=50, inputs=INPUTS)


@pytest.fixture
def market(rpc: Rpc) -> Market:
    return Market(rpc.node)


async def register_mlp(market: Market, name: str = "digits-mlp") -> Hash32:
    model = mlp().model
    return (await market.send(market.client, RegisterModel(
        name, Hash32(b"\x09" * 32), inspect_model(model)))).hash


async def test_model_get_shows_the_registered_info_and_costs(rpc: Rpc, market: Market) -> None:
    model_id = await register_mlp(market)
    info = inspect_model(mlp().model)
    view = await rpc.result("model_get", [model_id.hex()])
    record = rpc.node.state.models[model_id]
    assert (view["id"], view["owner"], view["name"], view["fileId"]) == (
        model_id.hex(), text(market.client), "digits-mlp", "09" * 32)
    assert view["registeredMs"] == record.registered_ms and view["height"] == rpc.node.state.height
    assert view["info"] == {
        "inputs": [{"name": "x", "elemType": "float32", "shape": [64]}],
        "outputs": [{"name": "logits", "elemType": "float32", "shape": [10]},
                    {"name": "probs", "elemType": "float32", "shape": [10]}],
        "opset": 21, "fileBytes": info.file_bytes, "flopsPerRow": info.flops_per_row,
        "weightBytes": info.weight_bytes,
        "activationBytesPerRow": info.activation_bytes_per_row,
        "inputBytesPerRow": 256, "outputBytesPerRow": 80, "workUnitsPerRow": 1,
        "batch": 1, "workUnits": 1}
    large = await rpc.result("model_get", {"modelId": model_id.hex(), "batch": 65_536})
    assert large["info"]["workUnits"] == info.work_units(65_536) == 3  # 34,684 flops a row

    error = await rpc.error("model_get", [MISSING])
    assert (error["code"], error["data"]) == (-32001, {"what": "model", "key": MISSING})
    await assert_param_error(rpc, "model_get", ["xyz"], "modelId")
    await assert_param_error(rpc, "model_get", [model_id.hex(), 0], "batch")
    await assert_param_error(rpc, "model_get", [model_id.hex(), 65_537], "batch")


async def test_model_list_is_newest_first_filtered_and_bounded(rpc: Rpc, market: Market) -> None:
    first = await register_mlp(market, "first")
    second = await register_mlp(market, "second")
    other = (await market.send(market.other, RegisterModel(
        "theirs", Hash32(b"\x08" * 32), inspect_model(mlp().model)))).hash
    listed = await rpc.result("model_list")
    assert listed["total"] == 3 and listed["height"] == rpc.node.state.height
    assert [m["id"] for m in listed["models"]] == [other.hex(), second.hex(), first.hex()]
    row = listed["models"][2]
    assert (row["name"], row["owner"], row["workUnitsPerRow"]) == ("first", text(market.client),
                                                                  1)
    mine = await rpc.result("model_list", {"owner": text(market.client), "limit": 1})
    assert mine["total"] == 2 and [m["name"] for m in mine["models"]] == ["second"]
    await assert_param_error(rpc, "model_list", {"limit": 201}, "limit")
    await assert_param_error(rpc, "model_list", {"owner": "ogpu1xyz"}, "owner")


async def test_tasks_and_pools_of_a_registered_model_name_it(rpc: Rpc, market: Market) -> None:
    model_id = await register_mlp(market)
    spec = ModelInferSpec(model_id, 128, INPUTS)
    task = await market.send(market.client, SubmitTask(spec.KIND, encode(spec), ogpu(1), 0,
                                                       20_000, 200_000))
    view = await rpc.result("task_get", [task.hash.hex()])
    assert (view["kind"], view["kindId"], view["workUnits"]) == ("model_infer", 4, 1)
    assert view["spec"] == {"model": model_id.hex(), "model_name": "digits-mlp", "batch": 128,
                            "inputs": INPUTS.hex()}
    listed = await rpc.result("task_list")
    assert listed["tasks"][0]["kind"] == "model_infer"

    pool = await market.send(market.client, OpenPool("", 64, ogpu(1), ogpu(10), 2, 0, ogpu(5),
                                                     5_000, 600_000, model_id))
    view = await rpc.result("pool_get", [pool.hash.hex()])
    assert (view["model"], view["modelId"], view["modelName"]) == ("", model_id.hex(),
                                                                   "digits-mlp")
    builtin = await market.send(market.client, OpenPool("mlp-small", 64, ogpu(1), ogpu(10), 2,
                                                        0, ogpu(5), 5_000, 600_000))
    rows = (await rpc.result("pool_list"))["pools"]
    assert [(r["id"], r["modelId"], r["modelName"]) for r in rows] == [
        (builtin.hash.hex(), None, "mlp-small"), (pool.hash.hex(), model_id.hex(), "digits-mlp")]


async def test_a_network_training_task_lists_its_layers_and_training(rpc: Rpc,
                                                                      market: Market) -> None:
    task = await market.send(market.client, SubmitTask(NET.KIND, encode(NET), ogpu(1), 0,
                                                       20_000, 200_000))
    view = await rpc.result("task_get", [task.hash.hex()])
    assert (view["kind"], view["kindId"], view["workUnits"]) == ("train_net", 5,
                                                                 NET.work_units())
    spec = view["spec"]
    assert spec["layers"] == [
        {"kind": "conv2d", "channels": 4, "kernel": 3, "stride": 1, "padding": 1},
        {"kind": "relu"}, {"kind": "max_pool", "kernel": 2, "stride": 2}, {"kind": "flatten"},
        {"kind": "dense", "units": 10}]
    assert spec["summary"] == ("conv2d(channels=4, kernel=3, stride=1, padding=1) -> relu -> "
                               "max_pool(kernel=2, stride=2) -> flatten -> dense(units=10)")
    assert (spec["loss"], spec["optimizer"]["kind"], spec["schedule"]["kind"]) == (
        "cross_entropy", "adamw", "cosine")
    assert spec["optimizer"]["lr_micros"] == 1_000 and spec["schedule"]["floor_micros"] == 100
    assert (spec["steps"], spec["val_bps"], spec["batch"], spec["n_samples"]) == (
        100, 1_000, 32, 512)
    assert (spec["input_shape"], spec["output_shape"], spec["param_count"]) == (
        [1, 8, 8], [10], NET.param_count())
    assert (spec["inputs"], spec["init"]) == (INPUTS.hex(), None)
    assert decode_spec(view["kindId"], bytes.fromhex(view["specHex"])) == NET
