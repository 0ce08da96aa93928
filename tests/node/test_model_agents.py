"""Registered models through the real agents: a task on a customer's ONNX model is run by a
provider, checked by a committee and paid; a pool serves the model on uploaded inputs; a model
whose file does not give its registered info finds nobody to run it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import trio

from gpu.artifacts import decode_arrays, encode_arrays
from gpu.device import cpu_device
from gpu.inputs import encode_inputs
from gpu.nn.data import seed_params
from gpu.onnx_export import export_onnx
from gpu.onnx_models import inspect_model
from gpu.workloads import run_workload
from ogpu_node.blobs import file_id
from ogpu_node.ledger.market.payloads import OpenPool, RegisterModel, SendRequest
from ogpu_node.ledger.market.records import CloseReason, RequestStatus
from ogpu_node.node.node import Node
from ogpu_node.result_crypto import client_key, open_answer, output_file_number
from ogpu_node.types import Hash32, ogpu
from ogpu_node.workloads.models import ModelInferSpec, ModelInfo
from ogpu_node.workloads.net import (
    FLATTEN,
    TANH,
    LossKind,
    NetTrainSpec,
    Optimizer,
    OptimizerKind,
    Schedule,
    dense,
    embedding,
)
from tests.gpu.onnx_examples import digits_cnn
from tests.gpu.onnx_tasks import task_for
from tests.node.test_market_agents import (
    CLIENT,
    VALIDATORS,
    accepts,
    closed,
    market_network,
    policy,
    registered,
    send_pool_tx,
    submit,
    task_of,
    wait_for,
)


async def register(node: Node, model_file: bytes, info: ModelInfo) -> Hash32:
    """Upload `model_file` to `node` and register it with `info` (a registrant may claim
    anything)."""
    assert node.blobs is not None
    file_id = node.blobs.put_file(model_file)
    return await send_pool_tx(node, RegisterModel("digits-cnn", Hash32(file_id), info))


async def test_a_task_on_a_registered_model_runs_is_checked_and_pays(tmp_path: object) -> None:
    task = task_for(digits_cnn(), batch=300)
    async with market_network(tmp_path, {1: policy()}) as nodes:
        node = nodes[0]
        assert node.blobs is not None
        node.blobs.put_file(task.inputs)
        with trio.fail_after(90):
            await registered(nodes, 1)
            model_id = await register(node, task.model, task.spec.model_info)
            spec = replace(task.spec, model=model_id, info=None)
            task_id = await submit(node, node.next_nonce(CLIENT.address), spec=spec)
            await wait_for(node, closed(node, task_id))
        done = task_of(node, task_id)
        assert done.close_reason == CloseReason.COMPLETED, done.why
        assert accepts(done) >= 2
        assert done.attempt.result is not None and done.attempt.released_key
        sealed = await node.files.fetch_file(done.attempt.result.output_id, attempts=3)
        opened = client_key(CLIENT, done.attempt.released_key, done.attempt.result.key_commitment,
                            task_id, done.attempt.number).open(output_file_number(0), sealed)
        expected = run_workload(task.spec, cpu_device(), inputs=task.inputs, model=task.model)
        assert opened == expected.output  # the provider's logits, bit for bit here


async def test_a_model_whose_file_does_not_give_its_claimed_info_finds_no_bidder(
        tmp_path: object) -> None:
    task = task_for(digits_cnn(), batch=50)
    async with market_network(tmp_path, {1: policy()}) as nodes:
        node = nodes[0]
        assert node.blobs is not None
        node.blobs.put_file(task.inputs)
        with trio.fail_after(60):
            await registered(nodes, 1)
            # a claim of a tenth of the work: the client would pay for a tenth of it
            cheap = task.spec.model_info.flops_per_row // 10
            model_id = await register(node, task.model,
                                      replace(task.spec.model_info, flops_per_row=cheap))
            spec = replace(task.spec, model=model_id, info=None)
            task_id = await submit(node, node.next_nonce(CLIENT.address), spec=spec)
            await wait_for(node, closed(node, task_id))
        done = task_of(node, task_id)
        assert done.close_reason == CloseReason.NO_BIDS
        assert done.attempt.provider is None
        # the provider shows why: the model's file, refused, and the skip it caused
        report = nodes[1].agent_status()["provider"]
        [refused] = report["modelsRefused"]
        assert refused["fileId"] == node.chain.state.models[model_id].file_id.hex()
        assert refused["code"] == "model_mismatch", refused
        codes = [d["code"] for d in report["decisions"] if d["taskId"] == task_id.hex()]
        assert codes[0] == "model_mismatch", codes


@pytest.mark.parametrize("fault", ["none", "corrupt"])
async def test_a_registered_models_pool_answers_uploaded_rows_checked_by_a_committee(
        tmp_path: object, fault: str) -> None:
    task = task_for(digits_cnn(), batch=32)
    async with market_network(tmp_path, {1: policy(fault=fault)}) as nodes:
        node = nodes[0]
        assert node.blobs is not None
        node.blobs.put_file(task.inputs)
        with trio.fail_after(90):
            await registered(nodes, 1)
            model_id = await register(node, task.model, task.spec.model_info)
            # every answer checked (sample 100 %), one racer per request
            pool_id = await send_pool_tx(node, OpenPool(
                "", 64, ogpu(1), ogpu(20), 1, 10_000, ogpu(10), 5_000, 600_000,
                model_id=model_id))
            await wait_for(node, lambda: node.chain.state.pools[pool_id].subscribers != ())
            request_id = await send_pool_tx(node, SendRequest(pool_id, 0, 32, task.spec.inputs))

            def finished() -> bool:
                request = node.chain.state.pools[pool_id].request(request_id)
                return request is not None and request.status in (
                    RequestStatus.PAID, RequestStatus.REJECTED, RequestStatus.EXPIRED)

            await wait_for(node, finished)
        request = node.chain.state.pools[pool_id].request(request_id)
        assert request is not None
        if fault == "corrupt":
            assert request.status == RequestStatus.REJECTED
            assert node.chain.state.pools[pool_id].stake_of(VALIDATORS[1].address) == 0
            return
        assert request.status == RequestStatus.PAID and request.output_id and request.key
        sealed = await node.files.fetch_file(request.output_id, attempts=3)
        answer = dict(decode_arrays(open_answer(CLIENT, request_id, request.key, sealed)))
        want = dict(decode_arrays(run_workload(task.spec, cpu_device(), inputs=task.inputs,
                                               model=task.model).output))
        assert answer.keys() == want.keys()
        for name, values in want.items():
            assert np.array_equal(answer[name], values), name



def token_model() -> tuple[bytes, ModelInfo]:
    """An exported network over 6 token ids from a vocabulary of 20 (int64 input "x")."""
    spec = NetTrainSpec(
        seed=4, input_shape=(6,), layers=(embedding(20, 8), TANH, FLATTEN, dense(3)),
        loss=LossKind.CROSS_ENTROPY, optimizer=Optimizer(OptimizerKind.SGD, 1_000),
        schedule=Schedule(), n_samples=10, val_bps=1_000, batch=2, steps=1, checkpoint_every=1,
        inputs=bytes(32))
    model = export_onnx(spec, encode_arrays(seed_params(spec)))
    return model, inspect_model(model)


async def test_inputs_the_model_fails_on_are_reported_and_the_report_stands(
        tmp_path: object) -> None:
    """Token ids past the vocabulary pass the static checks (whole numbers) but the model
    cannot run on them: the provider reports them malformed, the committee runs the model on
    them, the report stands and the client's collateral pays the provider."""
    model, info = token_model()
    ids = np.random.default_rng(1).integers(0, 20, size=(40, 6))
    ids[17, 2] = 25  # out of the vocabulary
    async with market_network(tmp_path, {1: policy()}) as nodes:
        node = nodes[0]
        assert node.blobs is not None
        with trio.fail_after(90):
            await registered(nodes, 1)
            model_id = await register(node, model, info)
            unbound = ModelInferSpec(model_id, 40, bytes(32), info)
            raw = encode_inputs(unbound, {"x": ids})
            node.blobs.put_file(raw)
            spec = ModelInferSpec(model_id, 40, bytes(file_id(raw)))
            task_id = await submit(node, node.next_nonce(CLIENT.address), spec=spec)
            await wait_for(node, closed(node, task_id))
        done = task_of(node, task_id)
        assert done.close_reason == CloseReason.INPUTS_WITHHELD, done.why
        assert done.why == "inputs_malformed" and accepts(done) >= 2
        events = {m.event: m for m in done.trail}
        assert events["client_collateral_to_provider"].address == VALIDATORS[1].address
