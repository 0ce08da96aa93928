"""`scripts/bench market` parts (d), (e) and (f) at a tiny size: the local pieces run, and the
bare CNN baseline of part (e) computes the same training steps as the engine it is compared
with (else the ratio would compare different work)."""

from __future__ import annotations

import argparse

import numpy as np

from bench.model_bench import (
    BareCnn,
    add_arguments,
    bare_inference_s,
    bare_session,
    bench_cnn_spec,
    digits_inputs,
    infer_requests,
    part_e,
    part_f,
    workload_inference_s,
)
from gpu.device import cpu_device
from gpu.nn.data import batch_rows, net_dataset, seed_params
from gpu.nn.network import Network
from tests.gpu.onnx_examples import mlp


def tiny_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--mlp-hidden", "32", "--cnn-batches", "8", "--cnn-steps", "20",
                              "--repeats", "1", "--verify-rows", "64",
                              "--verify-cnn-steps", "100", *argv])


def test_the_bare_cnn_takes_the_engines_steps() -> None:
    device = cpu_device()
    spec, raw = digits_inputs(bench_cnn_spec(batch=16, steps=5, checkpoint_every=5))
    data = net_dataset(spec, device, raw)
    network = Network(spec, device)
    state = network.state(seed_params(spec))
    bare = BareCnn(spec, data.x, data.target, data.train_rows, device.xp)
    bare.theta[...] = state.theta
    for step in range(spec.steps):
        rows = batch_rows(spec, data, step)
        network.train_step(state, data.x[rows], data.target[rows])
        bare.step_on(rows)
    start = np.concatenate([p.reshape(-1) for _, p in seed_params(spec)])
    moved = np.linalg.norm(state.theta - start)
    assert moved > 0
    assert np.linalg.norm(bare.theta - state.theta) <= 1e-5 * moved


def test_part_d_local_pieces_time_the_same_rows() -> None:
    device = cpu_device()
    example = mlp(hidden=32)
    requests = infer_requests(example, rows=1_100, count=2)
    assert len({r.spec.inputs for r in requests}) == 2  # inputs of their own
    assert bare_inference_s(bare_session(example, device), example, requests) > 0
    wall, cpu = workload_inference_s(example, requests, device)
    assert wall > 0 and cpu > 0


def test_parts_e_and_f_report_their_goals() -> None:
    device = cpu_device()
    e = part_e(tiny_args(), device)
    assert [row[-1] in ("pass", "FAIL") for row in e.rows] == [True, False]
    assert e.results["batch_8"]["ratio"] > 0
    f = part_f(tiny_args(), device)
    verdicts = [row[-1] for row in f.rows if row[-2] == "<= 2%"]
    assert len(verdicts) == 3 and set(verdicts) <= {"pass", "FAIL"}
    assert f.results["cnn_training"]["checkpoints"] == 100
    assert f.results["mlp_cold"]["fraction"] > 0
