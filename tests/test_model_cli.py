"""`ogpu model ...`, `ogpu pool ...` and the kinds 4 and 5 of `ogpu task submit|result`, driven
as a user would against a served node (the real ledger, real blocks, real files)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
import trio
from onnx import TensorProto, helper

from gpu.artifacts import decode_arrays, encode_arrays
from gpu.inputs import encode_inputs
from gpu.nn.data import seed_params
from gpu.onnx_export import export_onnx
from gpu.onnx_models import inspect_model
from ogpu_node.address import address_to_text
from ogpu_node.blobs import file_id
from ogpu_node.cli import net_toml
from ogpu_node.cli.array_files import load_arrays, write_arrays
from ogpu_node.cli.net_toml import parse_net
from ogpu_node.cli.pool_cli import DEFAULT_MEMBER_BOND
from ogpu_node.ledger.market.payloads import JoinPool, PoolResult
from ogpu_node.result_crypto import ephemeral_public, provider_key
from ogpu_node.types import Hash32
from ogpu_node.types import ogpu as ogpu_units
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
    dropout,
    max_pool,
)
from tests.gpu.onnx_examples import mlp
from tests.rpc.conftest import serving
from tests.rpc.local_node import LocalNode
from tests.rpc.market import EPHEMERAL, Market
from tests.test_cli import ogpu, produce_blocks

NET_TOML = """
input_shape = [1, 8, 8]
loss = "cross_entropy"
seed = 4
batch = 16
steps = 20
val_split = 0.25
max_price = "1"
exec_s = 20
ttl_s = 200

[optimizer]
kind = "adamw"
lr = 0.001
weight_decay = 0.01

[schedule]
kind = "cosine"
warmup_steps = 5
floor = 0.0001

[[layers]]
kind = "conv2d"
channels = 4
kernel = 3
padding = 1
[[layers]]
kind = "relu"
[[layers]]
kind = "max_pool"
kernel = 2
[[layers]]
kind = "flatten"
[[layers]]
kind = "dropout"
rate = 0.1
[[layers]]
kind = "dense"
units = 10
"""
ROWS = 64
NET = NetTrainSpec(
    seed=4, input_shape=(1, 8, 8),
    layers=(conv2d(4, 3, padding=1), RELU, max_pool(2), FLATTEN, dropout(1_000), dense(10)),
    loss=LossKind.CROSS_ENTROPY,
    optimizer=Optimizer(OptimizerKind.ADAMW, 1_000, 900_000, 999_000, 10_000),
    schedule=Schedule(ScheduleKind.COSINE, warmup_steps=5, floor_micros=100),
    n_samples=ROWS, val_bps=2_500, batch=16, steps=20, checkpoint_every=20,
    inputs=bytes(32))
"""What NET_TOML describes, for an inputs file of ROWS rows (inputs and init left out)."""


def savez(path: Path, arrays: dict[str, Any]) -> None:
    """`np.savez` of named arrays (names such as "l0.w" are no keywords)."""
    np.savez(path, **arrays)


def fixed_batch_model() -> bytes:
    """A model whose batch dimension is fixed: the network refuses it."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]
                             ).SerializeToString()


def digits_data(path: Path) -> dict[str, Any]:
    gen = np.random.default_rng(5)
    arrays = {"x": gen.normal(size=(ROWS, 1, 8, 8)), "labels": gen.integers(0, 10, ROWS)}
    savez(path, arrays)
    return arrays


async def test_model_register_get_list_and_refusals(tmp_path: Path) -> None:
    node = LocalNode(tmp_path / "blobs")
    model = mlp().model
    (tmp_path / "mlp.onnx").write_bytes(model)
    (tmp_path / "fixed.onnx").write_bytes(fixed_batch_model())
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    async with serving(node) as rpc, trio.open_nursery() as blocks:
        blocks.start_soon(produce_blocks, node)
        url = rpc.address.http_url
        before = node.state.account(Market(node).client.address).balance
        code, out = await ogpu(url, "model", "register", str(tmp_path / "mlp.onnx"), "--name",
                               "digits-mlp", "--dev-account", "0", "--json")
        assert code == 0, out
        shown = json.loads(out)
        model_id = Hash32(bytes.fromhex(shown["modelId"]))
        record = node.state.models[model_id]
        assert (record.name, record.file_id, record.info) == (
            "digits-mlp", file_id(model), inspect_model(model))
        assert node.blobs is not None and node.blobs.get_file(record.file_id) == model
        fee = node.state.params.model_registration_fee
        assert node.state.account(record.owner).balance < before - fee + 1  # burned, and fee
        assert shown["inputs"] == "x float32 rows of 64" and shown["workUnitsPerRow"] == 1

        # refused here, with the reason, before anything is uploaded or sent
        height = node.state.height
        code, out = await ogpu(url, "model", "register", str(tmp_path / "fixed.onnx"),
                               "--name", "fixed", "--dev-account", "0")
        assert code == 1 and out.startswith("error: model_refused:") and "batch" in out, out
        assert "Traceback" not in out and len(out.strip().splitlines()) == 1
        code, out = await ogpu(url, "model", "register", str(tmp_path / "junk.onnx"),
                               "--name", "junk", "--dev-account", "0")
        assert code == 1 and "does not parse" in out, out
        code, out = await ogpu(url, "model", "register", str(tmp_path / "mlp.onnx"),
                               "--name", "x" * 65, "--dev-account", "0")
        assert code == 2 and "1..64 printable characters" in out, out
        code, out = await ogpu(url, "model", "register", str(tmp_path / "none.onnx"),
                               "--name", "none", "--dev-account", "0")
        assert code == 2 and "cannot read model file" in out, out
        code, out = await ogpu(url, "model", "register", "--name", "none", "--dev-account", "0")
        assert code == 2 and "give FILE or --from-task" in out, out
        assert node.state.height == height and len(node.state.models) == 1

        code, out = await ogpu(url, "model", "get", model_id.hex(), "--batch", "65536")
        assert code == 0, out
        for line in ("digits-mlp", "x float32 rows of 64",
                     "logits float32 rows of 10, probs float32 rows of 10",
                     "1 per row, 3 for 65536 row(s)", "opset 21"):
            assert line in out, (line, out)
        code, out = await ogpu(url, "model", "get", model_id.hex(), "--json")
        assert json.loads(out)["info"]["flopsPerRow"] == record.info.flops_per_row
        code, out = await ogpu(url, "model", "get", "ab" * 32)
        assert code == 1 and "model not found" in out, out
        code, out = await ogpu(url, "model", "get", "abc")
        assert code == 2 and "64 hex digits" in out, out

        code, out = await ogpu(url, "model", "list")
        assert code == 0 and "1 of 1 model(s)" in out and model_id.hex() in out, out
        code, out = await ogpu(url, "model", "list", "--owner",
                               address_to_text(Market(node).client.address), "--json")
        assert [m["id"] for m in json.loads(out)["models"]] == [model_id.hex()]
        blocks.cancel_scope.cancel()


async def test_inference_tasks_and_pools_of_a_registered_model(tmp_path: Path) -> None:
    node = LocalNode(tmp_path / "blobs")
    market = Market(node)
    (tmp_path / "mlp.onnx").write_bytes(mlp().model)
    info = inspect_model(mlp().model)
    x = np.random.default_rng(1).normal(size=(5, 64))
    np.savez(tmp_path / "x.npz", x=x)
    np.savez(tmp_path / "wrong.npz", y=x)
    np.savez(tmp_path / "narrow.npz", x=x[:, :10])
    async with serving(node) as rpc, trio.open_nursery() as blocks:
        blocks.start_soon(produce_blocks, node)
        url = rpc.address.http_url
        code, out = await ogpu(url, "model", "register", str(tmp_path / "mlp.onnx"), "--name",
                               "digits-mlp", "--dev-account", "0", "--json")
        assert code == 0, out
        model_id = Hash32(bytes.fromhex(json.loads(out)["modelId"]))

        code, out = await ogpu(url, "task", "submit", "--model", model_id.hex(), "--inputs",
                               str(tmp_path / "x.npz"), "--max-price", "0.001",
                               "--dev-account", "0", "--json")
        assert code == 0, out
        submitted = json.loads(out)
        assert (submitted["kind"], submitted["workUnits"]) == ("model_infer", 1)
        task = node.state.tasks[Hash32(bytes.fromhex(submitted["taskId"]))]
        expected = file_id(encode_inputs(ModelInferSpec(model_id, 5, bytes(32), info),
                                         {"x": x}))
        assert decode_spec(task.kind, task.spec) == ModelInferSpec(model_id, 5, expected)
        assert node.blobs is not None and node.blobs.get_file(expected) is not None

        height = node.state.height
        for args, problem in [
            (("--inputs", str(tmp_path / "wrong.npz")),
             "arrays ['y']; the model takes x float32 rows of 64"),
            (("--inputs", str(tmp_path / "narrow.npz")), "the model takes x float32 rows of 64"),
            (("--inputs", str(tmp_path / "x.npz"), "--batch", "6"),
             "--batch 6, but inputs file"),
            ((), "needs its inputs"),
        ]:
            code, out = await ogpu(url, "task", "submit", "--model", model_id.hex(),
                                   "--max-price", "0.001", "--dev-account", "0", *args)
            assert code == 2 and problem in out and "Traceback" not in out, (problem, out)
        code, out = await ogpu(url, "task", "submit", "--model", "cd" * 32, "--inputs",
                               str(tmp_path / "x.npz"), "--max-price", "1", "--dev-account", "0")
        assert code == 1 and "model not found" in out, out
        assert node.state.height == height

        # a pool on the model: open, request with arrays, read the sealed answer as arrays
        await market.register(market.provider_a)
        code, out = await ogpu(url, "pool", "open", "--model", model_id.hex(), "--max-batch",
                               "8", "--price", "0.01", "--budget", "1", "--min-stake", "5",
                               "--dev-account", "0", "--json")
        assert code == 0, out
        pool_id = Hash32(bytes.fromhex(json.loads(out)["poolId"]))
        assert node.state.pools[pool_id].model_id == model_id
        await market.send(market.provider_a, JoinPool(pool_id, ogpu_units(5)))
        code, out = await ogpu(url, "pool", "request", pool_id.hex(), "--inputs",
                               str(tmp_path / "x.npz"), "--dev-account", "0", "--json")
        assert code == 0, out
        request_id = Hash32(bytes.fromhex(json.loads(out)["requestId"]))
        request = node.state.pools[pool_id].request(request_id)
        assert request is not None and (request.batch, request.inputs) == (5, expected)
        code, out = await ogpu(url, "pool", "answer", pool_id.hex(), request_id.hex(), "-o",
                               str(tmp_path / "answer.npz"), "--dev-account", "0")
        assert code == 1 and "has no answer (it is open)" in out, out

        logits = np.arange(50, dtype=np.float32).reshape(5, 10)
        answer = encode_arrays([("logits", logits), ("probs", logits / 100)])
        owner = node.state.account(market.client.address).public_key
        sealed = provider_key(EPHEMERAL, owner, request_id, 0).seal(0, answer)
        node.blobs.put_file(sealed)
        await market.send(market.provider_a, PoolResult(pool_id, request_id, file_id(sealed),
                                                        ephemeral_public(EPHEMERAL)))
        code, out = await ogpu(url, "pool", "answer", pool_id.hex(), request_id.hex(), "-o",
                               str(tmp_path / "answer.npz"), "--dev-account", "0", "--json")
        assert code == 0, out
        assert json.loads(out)["arrays"] == "logits, probs"
        with np.load(tmp_path / "answer.npz") as opened:
            assert np.array_equal(opened["logits"], logits)
        code, out = await ogpu(url, "pool", "answer", pool_id.hex(), request_id.hex(), "-o",
                               str(tmp_path / "theirs.npz"), "--dev-account", "1")
        assert code == 2 and "only the pool's owner" in out, out
        code, out = await ogpu(url, "pool", "get", pool_id.hex(), "--json")
        assert code == 0 and json.loads(out)["modelName"] == "digits-mlp", out
        escrow = int(json.loads(out)["escrow"])
        code, out = await ogpu(url, "pool", "top-up", pool_id.hex(), "--amount", "2",
                               "--dev-account", "0", "--json")
        assert code == 0 and json.loads(out)["state"] == "finalized", out
        code, out = await ogpu(url, "pool", "get", pool_id.hex(), "--json")
        assert int(json.loads(out)["escrow"]) == escrow + ogpu_units(2), out
        code, out = await ogpu(url, "pool", "top-up", pool_id.hex(), "--amount", "2",
                               "--dev-account", "1")
        assert code == 1 and "only the pool's owner may top it up" in out, out
        code, out = await ogpu(url, "pool", "get", pool_id.hex())
        assert code == 0 and f"digits-mlp ({model_id.hex()})" in out, out
        code, out = await ogpu(url, "pool", "request", pool_id.hex(), "--dev-account", "0")
        assert code == 2 and "needs --inputs" in out, out
        blocks.cancel_scope.cancel()


async def test_pool_open_bonds_members_by_default_and_refuses_zero_amounts(
        tmp_path: Path) -> None:
    node = LocalNode(tmp_path / "blobs")
    async with serving(node) as rpc, trio.open_nursery() as blocks:
        blocks.start_soon(produce_blocks, node)
        url = rpc.address.http_url
        terms = ("--max-batch", "8", "--price", "0.01", "--budget", "1", "--dev-account", "0")
        code, out = await ogpu(url, "pool", "open", "--model", "mlp-small", *terms, "--json")
        assert code == 0, out  # the chain takes no pool whose members bond nothing
        pool_id = Hash32(bytes.fromhex(json.loads(out)["poolId"]))
        assert node.state.pools[pool_id].min_stake == ogpu_units(int(DEFAULT_MEMBER_BOND))
        height = node.state.height
        for option in ("--min-stake", "--price", "--budget"):
            code, out = await ogpu(url, "pool", "open", "--model", "mlp-small", *terms,
                                   option, "0")
            assert code == 2 and f"Invalid value for {option}: must be more than 0 OGPU" in out
        assert node.state.height == height
        blocks.cancel_scope.cancel()


async def test_a_network_from_toml_trains_exports_and_registers(tmp_path: Path) -> None:
    node = LocalNode(tmp_path / "blobs")
    market = Market(node)
    (tmp_path / "net.toml").write_text(NET_TOML)
    arrays = digits_data(tmp_path / "digits.npz")
    weights = seed_params(NET)
    savez(tmp_path / "weights.npz", dict(weights))
    async with serving(node) as rpc, trio.open_nursery() as blocks:
        blocks.start_soon(produce_blocks, node)
        url = rpc.address.http_url
        await market.fund_validator()
        await market.register(market.provider_a)
        code, out = await ogpu(url, "task", "submit", "--spec", str(tmp_path / "net.toml"),
                               "--inputs", str(tmp_path / "digits.npz"), "--init",
                               str(tmp_path / "weights.npz"), "--dev-account", "0", "--json")
        assert code == 0, out
        submitted = json.loads(out)
        task_id = Hash32(bytes.fromhex(submitted["taskId"]))
        task = node.state.tasks[task_id]
        inputs_id = file_id(encode_inputs(NET, arrays))
        init_id = file_id(encode_arrays(weights))
        spec = replace(NET, inputs=inputs_id, init=init_id)
        assert decode_spec(task.kind, task.spec) == spec
        assert submitted["kind"] == "train_net" and task.work_units == spec.work_units()
        view = await rpc.result("task_get", [task_id.hex()])
        assert view["spec"]["summary"].startswith("conv2d(channels=4, kernel=3, stride=1, "
                                                  "padding=1) -> relu")

        # a provider trains it; the client opens the final checkpoint as arrays and as ONNX
        await market.award(task_id, {1: ogpu_units(1) // 4})
        checkpoint = encode_arrays([*weights, ("opt.step", np.ones(1, np.float32))])
        await market.commit_result(task_id, checkpoint, checkpoints=1)
        await market.vote(task_id, True)
        code, out = await ogpu(url, "task", "result", task_id.hex(), "-o",
                               str(tmp_path / "out.npz"), "--onnx", str(tmp_path / "net.onnx"),
                               "--dev-account", "0", "--json")
        assert code == 0, out
        exported = export_onnx(spec, checkpoint)
        assert (tmp_path / "net.onnx").read_bytes() == exported
        with np.load(tmp_path / "out.npz") as out_arrays:
            assert sorted(out_arrays.files) == sorted([*dict(weights), "opt.step"])
            assert np.array_equal(out_arrays["l0.w"], dict(weights)["l0.w"])

        # one command from the training to a registered model
        code, out = await ogpu(url, "model", "register", "--from-task", task_id.hex(), "--name",
                               "my-net", "-o", str(tmp_path / "again.onnx"), "--dev-account",
                               "0", "--json")
        assert code == 0, out
        model = node.state.models[Hash32(bytes.fromhex(json.loads(out)["modelId"]))]
        assert (model.name, model.file_id, model.info) == ("my-net", file_id(exported),
                                                           inspect_model(exported))
        assert (tmp_path / "again.onnx").read_bytes() == exported
        code, out = await ogpu(url, "model", "register", "--from-task", task_id.hex(), "--name",
                               "theirs", "--dev-account", "1")
        assert code == 1 and "only the task's client" in out, out

        # the weights file must be the network's, the data its inputs
        savez(tmp_path / "bad_weights.npz", {"l0.w": np.zeros((4, 1, 3, 3))})
        np.savez(tmp_path / "bad_labels.npz", x=arrays["x"], labels=arrays["labels"] + 10)
        height = node.state.height
        for args, problem in [
            (("--inputs", str(tmp_path / "digits.npz"), "--init",
              str(tmp_path / "bad_weights.npz")), "missing l0.b, l5.w, l5.b"),
            (("--inputs", str(tmp_path / "bad_labels.npz")), "labels must be whole numbers in "
                                                            "0..9"),
            (("--inputs", str(tmp_path / "weights.npz")), "needs an array \"x\""),
            ((), "needs its data"),
        ]:
            code, out = await ogpu(url, "task", "submit", "--spec", str(tmp_path / "net.toml"),
                                   "--dev-account", "0", *args)
            assert code == 2 and problem in out and "Traceback" not in out, (problem, out)
        assert node.state.height == height
        blocks.cancel_scope.cancel()


@pytest.mark.parametrize(("change", "problem"), [
    ({"layers": [{"kind": "dense", "units": 10, "bias": 1}]}, "unknown key(s) bias"),
    ({"layers": [{"kind": "lstm"}]}, "layers[0].kind: expected one of dense, conv2d"),
    ({"layers": [{"kind": "conv2d", "channels": 4}]}, "missing kernel"),
    ({"layers": [{"kind": "flatten"}, {"kind": "conv2d", "channels": 4, "kernel": 3}]},
     "layer 1 (conv2d): conv2d needs rows of shape (C, H, W)"),
    ({"optimizer": {"kind": "adam", "lr": 0.0000001}}, "at most 6 decimals"),
    ({"optimizer": {"kind": "sgd", "lr": 0.1, "beta1": 0.9}}, "unknown key(s) beta1"),
    ({"optimizer": {"kind": "sgd"}}, "missing lr"),
    ({"schedule": {"kind": "step", "every": 5}}, "needs every and gamma"),
    ({"val_split": 0.9}, "val_bps must be within"),
    ({"epochs": 3}, "unknown key(s) for a network: epochs"),
    ({"input_shape": 64}, "input_shape: expected a list"),
])
def test_network_files_are_checked_with_the_reason(change: dict[str, Any], problem: str
                                                   ) -> None:
    fields: dict[str, Any] = {"input_shape": [1, 8, 8], "batch": 8, "steps": 10,
                              "layers": [{"kind": "flatten"}, {"kind": "dense", "units": 10}],
                              "optimizer": {"kind": "sgd", "lr": 0.1, "momentum": 0.9}}
    spec = parse_net(fields, 64, bytes(32))
    assert spec.optimizer == Optimizer(OptimizerKind.SGD, 100_000, 900_000)
    assert (spec.val_bps, spec.checkpoint_every, spec.schedule) == (1_000, 10, Schedule())
    with pytest.raises(click.UsageError) as raised:
        parse_net(fields | change, 64, bytes(32))
    assert problem in raised.value.format_message()


def test_decoded_result_arrays_round_trip(tmp_path: Path) -> None:
    data = encode_arrays([("a.b", np.ones((2, 3), np.float32))])
    assert write_arrays(tmp_path / "r.npz", data) == ["a.b"]
    loaded = load_arrays(tmp_path / "r.npz")
    assert list(loaded) == ["a.b"] and decode_arrays(data)[0][1].tolist() == \
        loaded["a.b"].tolist()


def test_the_documented_network_files_are_valid() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "rpc.md").read_text()
    section = docs.split("### Networks as TOML", 1)[1]
    module_doc = str(net_toml.__doc__)
    examples = [text.split("```toml\n", 1)[1].split("```", 1)[0]
                for text in (section, module_doc)]
    for text in examples:
        fields = tomllib.loads(text)
        fields.pop("max_price", None)
        spec = parse_net(fields, 1_000, bytes(32))
        assert spec.input_shape == (1, 28, 28) and spec.output_shape == (10,)
        assert spec.optimizer.kind is OptimizerKind.ADAMW
