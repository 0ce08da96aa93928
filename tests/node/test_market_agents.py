"""The market end to end inside one process: 4 validator nodes on the in-memory network, two of
them running the provider agent, all running the verifier agent, real (tiny) workloads in worker
threads. The clock is real, because workloads run in threads; every wait is on a node event
(a finalised block or a task change), bounded by `fail_after`."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import trio
import trio.testing

from gpu.artifacts import decode_arrays, encode_arrays
from gpu.device import Device, cpu_device
from gpu.errors import ArtifactError
from gpu.inputs import encode_inputs
from gpu.nn.data import seed_params
from gpu.verify import checkpoints_to_check
from gpu.workloads import run_workload
from ogpu_node.agents import provider as provider_module
from ogpu_node.agents.closing import Closing
from ogpu_node.agents.provider import ProviderAgent, ProviderPolicy
from ogpu_node.agents.secrets import AgentSecrets
from ogpu_node.agents.verifier import VerifierAgent, VerifierPolicy
from ogpu_node.blobs import DEFAULT_MAX_STORE_BYTES, BlobStore, file_id
from ogpu_node.chain import Chain
from ogpu_node.datasets import digits
from ogpu_node.encoding import encode
from ogpu_node.genesis import Genesis, build_genesis, dev_account_key, load_template
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger import sign_transaction
from ogpu_node.ledger.market.payloads import (
    CancelTask,
    OpenPool,
    RevealVerdict,
    SealVerdict,
    SendRequest,
    SubmitTask,
)
from ogpu_node.ledger.market.records import CloseReason, RequestStatus, Task, TaskStatus
from ogpu_node.ledger.market.rules import NO_BID_REASONS
from ogpu_node.node.node import Node
from ogpu_node.node.run import local_sources
from ogpu_node.node.settings import NodeSettings
from ogpu_node.node_api import TxState
from ogpu_node.result_crypto import (
    ResultKeyError,
    client_key,
    open_answer,
    output_file_number,
)
from ogpu_node.rpc.metrics import NodeMetrics
from ogpu_node.storage import ChainStore, LevelDBKV, MemoryKV
from ogpu_node.types import Hash32, ogpu
from ogpu_node.workloads.kinds import WorkloadSpec
from ogpu_node.workloads.limits import memory_needed_mb
from ogpu_node.workloads.net import NetTrainSpec
from ogpu_node.workloads.spec import TrainSpec
from p2p.memory import MemoryHub
from tests.ledger.market_helpers import NET_TRAIN

VALIDATORS = [PrivateKey.from_seed(bytes([i + 31]) * 32) for i in range(4)]
CLIENT = dev_account_key(0)
SPEC = TrainSpec(seed=5, n_features=8, hidden=(16,), n_classes=4, n_samples=128, batch=16,
                 steps=20, lr_micros=50_000, checkpoint_every=5)
LONG = replace(SPEC, n_features=64, hidden=(256, 256), n_samples=1_024, batch=256, steps=50_000,
               checkpoint_every=200)
SETTINGS = NodeSettings(max_block_interval_ms=250)


def market_genesis() -> Genesis:
    template = load_template()
    template["params"] = {**template["params"], "bid_window_ms": 3_000, "reveal_window_ms": 3_000,
                          "verdict_window_ms": 8_000, "verdict_reveal_window_ms": 8_000,
                          "epoch_length": 100_000, "slot_ms": 500}
    return build_genesis(template, [(f"v{i}", k.public_key.raw) for i, k in enumerate(VALIDATORS)],
                         genesis_time_ms=1_000, dev_accounts=2, validator_balance=ogpu(10_000))


def voters(task: Task) -> list[bytes]:
    """The members who revealed a vote on the task's claim."""
    return [v.member for v in task.attempt.check.votes if v.revealed] if task.attempt.check else []


def accepts(task: Task) -> int:
    check = task.attempt.check
    return sum(v.accept for v in check.votes if v.revealed) if check else 0


@asynccontextmanager
async def market_network(tmp_path: object, providers: dict[int, ProviderPolicy],
                         store_bytes: dict[int, int] | None = None, intervals: int = 4,
                         verifiers: frozenset[int] = frozenset(range(4)),
                         leveldb: frozenset[int] = frozenset(),
                         devices: dict[int, Device] | None = None
                         ) -> AsyncIterator[list[Node]]:
    """`store_bytes` caps some nodes' blob stores (default: the store's own cap); each verifier
    (on the nodes in `verifiers`) replays `intervals` training intervals; the nodes in
    `leveldb` keep their chain in LevelDB (the others in memory); `devices` gives some
    providers a device of their own (default: this machine's CPU)."""
    genesis = market_genesis()
    hub = MemoryHub()
    stores = [ChainStore(LevelDBKV(str(tmp_path / f"chain{i}"))  # type: ignore[operator]
                         if i in leveldb else MemoryKV()) for i in range(4)]
    async with trio.open_nursery() as nursery:
        nets = [hub.node(f"n{i}") for i in range(4)]
        for net in nets:
            await nursery.start(net.serve)
        for a in range(4):
            for b in range(a + 1, 4):
                await nets[a].connect(nets[b].listen_addrs[0])
        nodes = []
        for i, net in enumerate(nets):
            node = Node(chain=Chain.open(stores[i], genesis), network=net,
                        genesis_hash=genesis.hash, validator_key=VALIDATORS[i], moniker=f"n{i}",
                        settings=SETTINGS,
                        blobs=BlobStore(tmp_path / f"blobs{i}",  # type: ignore[operator]
                                        (store_bytes or {}).get(i, DEFAULT_MAX_STORE_BYTES)))
            await nursery.start(node.serve)
            nodes.append(node)
        for i, node in enumerate(nodes):
            if i in verifiers:
                await nursery.start(VerifierAgent(node, VerifierPolicy(
                    intervals=intervals, process=False), cpu_device()).serve)
            if i in providers:
                device = (devices or {}).get(i, cpu_device())
                await nursery.start(ProviderAgent(node, providers[i], device).serve)
        try:
            yield nodes
        except trio.TooSlowError:
            print(describe_nodes(nodes))  # shown by pytest with the failure
            raise
        nursery.cancel_scope.cancel()
    for store in stores:
        store.close()


def describe_nodes(nodes: list[Node]) -> str:
    """Each node's chain and consensus state, to tell a stalled chain from a slow market."""
    now = trio.current_time()
    return "\n".join(
        f"{node.moniker}: height {node.chain.state.height}, syncing {node.sync.syncing}, "
        f"{len(node.consensus.processing)} blocks in consensus, "
        f"{len(node.mempool)} txs in the mempool, "
        f"last finalised {now - node.last_finalized_at:.1f} s ago, tasks "
        + ", ".join(f"{bytes(t).hex()[:8]} {task.status.name}"
                    for t, task in node.chain.state.tasks.items())
        for node in nodes)


async def wait_for(node: Node, done: object) -> None:
    """Wait, block by block, until `done()` holds on `node`'s finalised state."""
    async with node.subscribe_blocks() as blocks:
        while not done():  # type: ignore[operator]
            await blocks.receive()


async def submit(node: Node, nonce: int, spec: WorkloadSpec = SPEC, **changes: int) -> Hash32:
    fields = {"max_price": ogpu(1), "min_benchmark": 0, "exec_ms": 10_000, "ttl_ms": 60_000}
    fields.update(changes)
    tx = sign_transaction(CLIENT, chain_id=node.chain.state.chain_id, nonce=nonce, fee=1_000,
                          payload=SubmitTask(spec.KIND, encode(spec), **fields))
    await node.submit_tx(tx)
    receipt = await node.wait_for_tx(tx.hash)
    assert receipt.state is TxState.FINALIZED, receipt
    return tx.hash


def task_of(node: Node, task_id: Hash32) -> Task:
    return node.chain.state.tasks[task_id]


def status_of(node: Node, task_id: Hash32) -> TaskStatus | None:
    task = node.chain.state.tasks.get(task_id)
    return task.status if task is not None else None


def closed(node: Node, task_id: Hash32) -> object:
    return lambda: status_of(node, task_id) == TaskStatus.CLOSED


def policy(fault: str = "none", price_floor: int = 1_000, process: bool = False
           ) -> ProviderPolicy:
    """Workloads run in a thread here (starting a child process takes 0.4 s or more on a loaded
    machine, a sizeable part of these tests' seconds-long deadlines) but in the honest-task test,
    which runs them in a child process as a node does by default."""
    return ProviderPolicy(price_floor=price_floor, stake=ogpu(500), benchmark=100, fault=fault,
                          process=process)


async def registered(nodes: list[Node], count: int) -> None:
    await wait_for(nodes[0], lambda: len(nodes[0].chain.state.providers) == count)


async def test_honest_training_task_settles_and_pays(tmp_path: object) -> None:
    providers = {1: policy(process=True), 2: policy(price_floor=2_000, process=True)}
    async with market_network(tmp_path, providers) as nodes:
        with trio.fail_after(90):
            await registered(nodes, 2)
            task_id = await submit(nodes[0], 0)
            await wait_for(nodes[0], closed(nodes[0], task_id))
        task = task_of(nodes[0], task_id)
        assert task.close_reason == CloseReason.COMPLETED
        assert task.attempt.provider == VALIDATORS[1].address  # the lower floor wins ...
        assert task.attempt.price == 2_000  # ... at the second price
        assert accepts(task) >= 2
        events = [m.event for m in task.trail]
        assert events[0] == "escrow" and "payment" in events and events[-1] == "refund"
        provider = nodes[0].chain.state.providers[VALIDATORS[1].address]
        assert provider.completed == 1 and provider.locked == 0
        # each agent tells what it decided, newest first (`agent_status`)
        for node, outcome in ((nodes[1], "won"), (nodes[2], "lost")):
            decisions = [d for d in node.agent_status()["provider"]["decisions"]
                         if d["taskId"] == task_id.hex()]
            assert [d["code"] for d in decisions] == [outcome, "bid"], decisions
            assert decisions[0]["kind"] == "train" and decisions[0]["attempt"] == 1
            assert decisions[0]["text"].endswith("at 2000 per unit")
        assert nodes[0].agent_status() == {"running": {}, "provider": None}
        # /metrics of the winner's node, as `run_node` wires it
        usage = nodes[1].agents.workers["provider"]
        assert usage.jobs_done == 1 and usage.busy_seconds() > 0
        metrics = NodeMetrics()
        metrics.watch(local_sources(nodes[1]))
        text = metrics.exposition().decode()
        for line in ('ogpu_market_tasks_closed{reason="completed"} 1.0',
                     'ogpu_market_bids{state="committed"} 2.0',
                     'ogpu_worker_jobs_running{agent="provider"} 0.0',
                     'ogpu_worker_busy_seconds_total{agent="provider"}',
                     'ogpu_worker_memory_bytes{agent="verifier"}', "ogpu_blob_store_bytes"):
            assert line in text, line
        # every node holds the same state (bounded: a stalled follower fails, never hangs)
        with trio.fail_after(30):
            await wait_for(nodes[3], lambda: nodes[3].chain.state.height >=
                           nodes[0].chain.state.height)


@pytest.mark.parametrize("fault,reason", [("corrupt", "rejected"), ("vanish", "timed_out")])
async def test_a_faulty_provider_is_slashed_and_another_completes(tmp_path: object, fault: str,
                                                                  reason: str) -> None:
    providers = {1: policy(fault=fault), 2: policy(price_floor=5_000)}
    async with market_network(tmp_path, providers) as nodes:
        with trio.fail_after(120):
            await registered(nodes, 2)
            stake = nodes[0].chain.state.providers[VALIDATORS[1].address].stake
            task_id = await submit(nodes[0], 0, exec_ms=3_000)
            await wait_for(nodes[0], closed(nodes[0], task_id))
        task = task_of(nodes[0], task_id)
        assert task.close_reason == CloseReason.COMPLETED and task.attempt.number == 2
        assert task.excluded == (VALIDATORS[1].address,)
        assert task.attempt.provider == VALIDATORS[2].address
        faulty = nodes[0].chain.state.providers[VALIDATORS[1].address]
        assert faulty.failed == 1 and faulty.stake < stake
        events = [m.event for m in task.trail]
        assert "provider_slashed" in events and "slash_to_client" in events


@pytest.mark.parametrize("fault", ["none", "corrupt"])
async def test_members_fetch_an_intervals_end_only_when_its_replay_is_not_bit_exact(
        tmp_path: object, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    # every node runs on the same device model: an honest result's replays are bit-exact, so a
    # member fetches its interval's start and the final checkpoint, never the end; a corrupted
    # one's are not, so the member fetches the end, compares, and rejects
    caplog.set_level("INFO", logger="ogpu.verifier")
    async with market_network(tmp_path, {1: policy(fault=fault)}, intervals=1) as nodes:
        with trio.fail_after(120):
            await registered(nodes, 1)
            task_id = await submit(nodes[0], 0, exec_ms=3_000)
            if fault == "corrupt":  # rejected: the provider is slashed
                await wait_for(nodes[0], lambda: nodes[0].chain.state.providers[
                    VALIDATORS[1].address].failed >= 1)
            else:
                await wait_for(nodes[0], closed(nodes[0], task_id))
        task = task_of(nodes[0], task_id)
        refetched = [r for r in caplog.records if "fetching the intervals' ends" in r.message]
        if fault == "corrupt":
            assert refetched
            return
        assert task.close_reason == CloseReason.COMPLETED and not refetched, refetched
        assert task.attempt.result is not None
        ids = task.attempt.result.checkpoint_ids
        left_out: list[int] = []
        for i, node in enumerate(nodes):
            if i == 1 or VALIDATORS[i].address not in voters(task):
                continue  # the provider, or a member that did not vote
            rng = VerifierAgent(node, VerifierPolicy(intervals=1))._rng(task_id,
                                                                        task.attempt.number)
            read = checkpoints_to_check(SPEC, 1, rng, ends=False)
            ends = set(checkpoints_to_check(SPEC, 1, rng)) - set(read)
            assert node.blobs is not None
            assert all(node.blobs.get(ids[k]) is not None for k in read)
            assert all(node.blobs.get(ids[k]) is None for k in ends)
            left_out += ends
        assert left_out  # members 0, 2 and 3 draw intervals 0, 1 and 1 here: none the last


async def test_a_provider_whose_device_is_too_small_does_not_bid_and_another_runs_it(
        tmp_path: object) -> None:
    # node1's declared device has less memory than the task needs: it would win on price, but
    # bid eligibility (`device_too_small`, the chain's rule) keeps it out, so it neither wins a
    # task it could only return nor pays for one; node2 runs it
    small = replace(cpu_device(), memory_bytes=(memory_needed_mb(SPEC) - 1) * 2**20)
    providers = {1: policy(), 2: policy(price_floor=5_000)}
    async with market_network(tmp_path, providers, devices={1: small}) as nodes:
        me = VALIDATORS[1].address
        with trio.fail_after(90):
            await registered(nodes, 2)
            stake = nodes[0].chain.state.providers[me].stake
            task_id = await submit(nodes[0], 0, exec_ms=60_000, ttl_ms=120_000)
            await wait_for(nodes[0], closed(nodes[0], task_id))
        task = task_of(nodes[0], task_id)
        assert task.close_reason == CloseReason.COMPLETED and task.attempt.number == 1
        assert task.attempt.provider == VALIDATORS[2].address and task.excluded == ()
        assert all(b.bidder != me for b in task.attempt.bids)
        untouched = nodes[0].chain.state.providers[me]
        assert untouched.stake == stake and untouched.failed == 0 and untouched.bids == 0


async def test_client_cancelling_after_award_pays_its_collateral_and_frees_the_provider(
        tmp_path: object) -> None:
    async with market_network(tmp_path, {1: policy()}) as nodes:
        with trio.fail_after(120):
            await registered(nodes, 1)
            # minutes of work at the declared benchmark: still running when the client cancels
            task_id = await submit(nodes[0], 0, spec=LONG, max_price=10_000, exec_ms=600_000,
                                   ttl_ms=900_000)
            await wait_for(nodes[0], lambda: status_of(nodes[0], task_id) == TaskStatus.RUNNING)
            tx = sign_transaction(CLIENT, chain_id=nodes[0].chain.state.chain_id, nonce=1,
                                  fee=1_000, payload=CancelTask(task_id))
            await nodes[0].submit_tx(tx)
            await wait_for(nodes[0], closed(nodes[0], task_id))
            # its only place (max_concurrent 1) is free again: it serves the next task
            next_id = await submit(nodes[0], 2)
            await wait_for(nodes[0], closed(nodes[0], next_id))
        assert task_of(nodes[0], next_id).close_reason == CloseReason.COMPLETED
        assert task_of(nodes[0], next_id).attempt.provider == VALIDATORS[1].address
        task = task_of(nodes[0], task_id)
        assert task.close_reason == CloseReason.CANCELLED_AFTER_AWARD
        collateral = next(m for m in task.trail if m.event == "client_collateral_to_provider")
        assert collateral.address == VALIDATORS[1].address and collateral.amount > 0
        assert nodes[0].chain.state.providers[VALIDATORS[1].address].locked == 0


async def test_a_task_nobody_can_serve_ends_with_the_reason(tmp_path: object) -> None:
    async with market_network(tmp_path, {1: policy()}) as nodes:
        with trio.fail_after(60):
            await registered(nodes, 1)
            task_id = await submit(nodes[0], 0, min_benchmark=10_000)
            await wait_for(nodes[0], closed(nodes[0], task_id))
        task = task_of(nodes[0], task_id)
        assert task.close_reason == CloseReason.NO_BIDS
        assert task.why == "below_min_benchmark"
        # the provider says why it skipped the task, once however many blocks it looked
        report = nodes[1].agent_status()["provider"]
        skips = [d for d in report["decisions"] if d["taskId"] == task_id.hex()]
        assert [(d["code"], d["text"], d["outcome"]) for d in skips] == [
            ("below_min_benchmark", NO_BID_REASONS["below_min_benchmark"], False)]
        assert report["benchmark"] == 100 and report["device"]["kind"] == "cpu"


async def test_a_measured_benchmark_is_measured_again_and_registered_when_it_moved(
        tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    # the first measure caught a busy start-up; the second, the device on its own; later ones
    # are within a fifth of it
    # (measured on the provider's CPUs: here the last one this process may use)
    scores = [12, 95, 96]
    calls: list[set[int]] = []
    cpu = max(os.sched_getaffinity(0))

    def measure(device: object) -> int:
        calls.append(os.sched_getaffinity(0))
        return scores[min(len(calls), len(scores)) - 1]

    monkeypatch.setattr(provider_module, "benchmark_score", measure)
    measured = replace(policy(), benchmark=0, benchmark_settle_s=0.2, benchmark_refresh_s=0.2,
                       cpus=frozenset({cpu}))
    async with market_network(tmp_path, {1: measured}) as nodes:
        me = nodes[1].key.address  # type: ignore[union-attr]

        def registered_score() -> int:
            return nodes[0].chain.state.providers[me].benchmark

        with trio.fail_after(60):
            await registered(nodes, 1)
            # registered with 12 first; the second measure (0.2 s later) may already have
            # replaced it when the first registration is seen
            assert registered_score() in (12, 95)
            await wait_for(nodes[0], lambda: registered_score() == 95)
            await wait_for(nodes[0], lambda: len(calls) >= 6)  # 96 measured 4 times by now
        assert registered_score() == 95
        assert all(cpus == {cpu} for cpus in calls)


async def test_a_provider_whose_store_is_full_fails_the_task_and_the_node_goes_on(
        tmp_path: object) -> None:
    # node1 cannot store its checkpoints: its worker is stopped, it commits nothing, it returns
    # the task (worker_failed) and the task is offered again; the node keeps running throughout
    async with market_network(tmp_path, {1: policy(process=True)}, {1: 1_024}) as nodes:
        me = nodes[1].key.address  # type: ignore[union-attr]
        with trio.fail_after(60):
            await registered(nodes, 1)
            task_id = await submit(nodes[0], 0, exec_ms=3_000)
            await wait_for(nodes[0], lambda: task_of(nodes[0], task_id).attempt.number >= 2)
            height = nodes[1].chain.state.height
            await wait_for(nodes[1], lambda: nodes[1].chain.state.height > height)
        assert nodes[0].chain.state.providers[me].failed >= 1
        assert "return_penalty" in [m.event for m in task_of(nodes[0], task_id).trail]


def uploaded_spec() -> tuple[TrainSpec, bytes]:
    """SPEC on a dataset of the client's own (a rule of the first two features), and its file."""
    x = np.random.default_rng(9).normal(size=(SPEC.n_samples, SPEC.n_features))
    labels = 2 * (x[:, 0] > 0) + (x[:, 1] > 0)
    raw = encode_inputs(SPEC, {"x": x, "labels": labels})
    return replace(SPEC, inputs=bytes(file_id(raw))), raw


async def test_uploaded_inputs_are_fetched_trained_on_and_verified(tmp_path: object) -> None:
    """... and the result stays sealed to everyone but the committee until it is paid; then
    only the client opens it."""
    spec, raw = uploaded_spec()
    async with market_network(tmp_path, {1: policy()}) as nodes:
        assert nodes[0].blobs is not None
        nodes[0].blobs.put_file(raw)  # the client uploaded them to node 0 (`blob_put...`)
        with trio.fail_after(90):
            await registered(nodes, 1)
            task_id = await submit(nodes[0], 0, spec=spec)
            await wait_for(nodes[0], lambda: status_of(nodes[0], task_id) == TaskStatus.VERIFYING)
            early = task_of(nodes[0], task_id)
            assert early.attempt.result is not None and not early.attempt.released_key
            # the client's node (or any peer) fetches the committed output: ciphertext
            sealed = await nodes[0].files.fetch_file(early.attempt.result.output_id, attempts=3)
            with pytest.raises(ArtifactError):
                decode_arrays(sealed)
            await wait_for(nodes[0], closed(nodes[0], task_id))
        task = task_of(nodes[0], task_id)
        assert task.close_reason == CloseReason.COMPLETED
        assert accepts(task) >= 2
        assert nodes[1].blobs is not None and nodes[1].blobs.get_file(spec.inputs) == raw
        # the committed weights are those of training on the uploaded data, not the seed's
        assert task.attempt.result is not None and task.attempt.released_key
        expected = run_workload(spec, cpu_device(), inputs=raw)
        number = output_file_number(len(task.attempt.result.checkpoint_ids))
        released, commitment = task.attempt.released_key, task.attempt.result.key_commitment
        opened = client_key(CLIENT, released, commitment, task_id,
                            task.attempt.number).open(number, sealed)
        assert opened == expected.output
        with pytest.raises(ResultKeyError):  # anyone else, holding the released key too
            client_key(VALIDATORS[2], released, commitment, task_id,
                       task.attempt.number).open(number, sealed)


def fine_tuning_spec() -> tuple[NetTrainSpec, bytes, bytes]:
    """A small convolutional network fine-tuned on 400 real digits from weights of the
    client's own (here the seed's), with the inputs and weights files."""
    data = digits().take(np.arange(400))
    spec = replace(NET_TRAIN, n_samples=400, steps=60, checkpoint_every=20)
    inputs = encode_inputs(spec, {"x": data.x, "labels": data.labels})
    weights = encode_arrays(seed_params(replace(spec, seed=77)))
    return (replace(spec, inputs=bytes(file_id(inputs)), init=bytes(file_id(weights))), inputs,
            weights)


async def test_a_network_fine_tuned_from_uploaded_weights_is_verified_and_paid(
        tmp_path: object) -> None:
    spec, inputs, weights = fine_tuning_spec()
    async with market_network(tmp_path, {1: policy()}) as nodes:
        assert nodes[0].blobs is not None
        nodes[0].blobs.put_file(inputs)
        nodes[0].blobs.put_file(weights)
        with trio.fail_after(90):
            await registered(nodes, 1)
            task_id = await submit(nodes[0], 0, spec=spec)
            await wait_for(nodes[0], closed(nodes[0], task_id))
        task = task_of(nodes[0], task_id)
        assert task.close_reason == CloseReason.COMPLETED, task.why
        assert accepts(task) >= 2
        assert nodes[1].blobs is not None and nodes[1].blobs.get_file(spec.init) == weights
        assert task.attempt.result is not None
        metrics = dict(task.attempt.result.metrics)
        expected = run_workload(spec, cpu_device(), inputs=inputs, weights=weights)
        assert metrics == expected.metrics and metrics["val_accuracy_bps"] > 5_000


@pytest.mark.parametrize("fault", ["none", "false_report"])
async def test_a_report_of_missing_inputs_is_checked_by_the_committee(tmp_path: object,
                                                                      fault: str) -> None:
    """Inputs nobody serves: the report stands and the client's collateral pays the provider.
    Inputs that are served, reported missing anyway: the provider is slashed, another serves."""
    spec, raw = uploaded_spec()
    providers = {1: policy(fault=fault), 2: policy(price_floor=5_000)}
    async with market_network(tmp_path, providers) as nodes:
        if fault == "false_report":
            assert nodes[0].blobs is not None
            nodes[0].blobs.put_file(raw)
        with trio.fail_after(120):
            await registered(nodes, 2)
            task_id = await submit(nodes[0], 0, spec=spec)
            await wait_for(nodes[0], closed(nodes[0], task_id))
        task = task_of(nodes[0], task_id)
        reporter = nodes[0].chain.state.providers[VALIDATORS[1].address]
        events = {m.event: m for m in task.trail}
        if fault == "none":
            assert task.close_reason == CloseReason.INPUTS_WITHHELD and task.attempt.number == 1
            assert task.why == "inputs_missing"
            assert accepts(task) >= 2  # the committee upheld it
            assert events["client_collateral_to_provider"].address == VALIDATORS[1].address
            assert reporter.failed == 0 and reporter.locked == 0
        else:
            assert task.close_reason == CloseReason.COMPLETED and task.attempt.number == 2
            assert task.excluded == (VALIDATORS[1].address,)
            assert task.attempt.provider == VALIDATORS[2].address
            assert reporter.failed == 1 and "provider_slashed" in events


async def send_pool_tx(node: Node, payload: object) -> Hash32:
    tx = sign_transaction(CLIENT, chain_id=node.chain.state.chain_id,
                          nonce=node.next_nonce(CLIENT.address), fee=1_000,
                          payload=payload)  # type: ignore[arg-type]
    await node.submit_tx(tx)
    receipt = await node.wait_for_tx(tx.hash)
    assert receipt.state is TxState.FINALIZED, receipt
    return tx.hash


@pytest.mark.parametrize("fault", ["none", "corrupt"])
async def test_pool_requests_are_raced_checked_and_paid(tmp_path: object, fault: str) -> None:
    async with market_network(tmp_path, {1: policy(fault=fault), 2: policy()}) as nodes:
        node = nodes[0]
        with trio.fail_after(90):
            await registered(nodes, 2)
            # every result checked (sample 100 %), one racer per request
            pool_id = await send_pool_tx(node, OpenPool(
                "mlp-small", 64, ogpu(1), ogpu(20), 1, 10_000, ogpu(10), 5_000, 600_000))
            await wait_for(node, lambda: len(node.chain.state.pools[pool_id].subscribers) == 2)
            requests = [await send_pool_tx(node, SendRequest(pool_id, seed, 32))
                        for seed in range(4)]

            def finished() -> bool:
                pool = node.chain.state.pools[pool_id]
                done = {r.request_id for r in pool.requests if r.status in (
                    RequestStatus.PAID, RequestStatus.REJECTED, RequestStatus.EXPIRED)}
                return set(requests) <= done

            await wait_for(node, finished)
        pool = node.chain.state.pools[pool_id]
        by_winner = {r.winner: r.status for r in pool.requests}
        if fault == "none":
            assert pool.served == 4 and pool.rejected == 0
        else:  # the corrupting member is caught at its first answer, slashed and removed; the
            # requests it was drawn for after that expire (one racer per request here)
            assert by_winner.get(VALIDATORS[1].address) in (None, RequestStatus.REJECTED)
            assert pool.served + pool.rejected + pool.expired == 4
            if pool.rejected:
                assert pool.stake_of(VALIDATORS[1].address) == 0
                assert node.chain.state.providers[VALIDATORS[1].address].failed == pool.rejected
        assert by_winner.get(VALIDATORS[2].address) in (None, RequestStatus.PAID)
        if fault == "none":  # answers are sealed for the pool's owner: it opens one, no other
            paid = pool.requests[0]
            assert paid.status == RequestStatus.PAID and paid.output_id and paid.key
            sealed = await node.files.fetch_file(paid.output_id, attempts=3)
            logits = decode_arrays(open_answer(CLIENT, paid.request_id, paid.key, sealed))
            assert logits[0][1].shape[0] == 32  # the request's batch
            with pytest.raises(ArtifactError):
                decode_arrays(sealed)
            with pytest.raises(ResultKeyError):
                open_answer(VALIDATORS[3], paid.request_id, paid.key, sealed)


def test_a_verifiers_random_choices_are_its_own_and_nobody_elses_to_predict() -> None:
    """Seeds come from the member's key: the same after a restart, different for every member,
    and not a function of public data (task, attempt, address) that a provider could compute."""
    genesis = market_genesis()
    hub = MemoryHub()
    names = iter(range(10))

    def verifier(key: PrivateKey) -> VerifierAgent:
        node = Node(chain=Chain.open(ChainStore(MemoryKV()), genesis),
                    network=hub.node(f"v{next(names)}"),
                    genesis_hash=genesis.hash, validator_key=key)
        return VerifierAgent(node, VerifierPolicy(), cpu_device())

    task_id = bytes(32)
    first, again, other = verifier(VALIDATORS[0]), verifier(VALIDATORS[0]), verifier(VALIDATORS[1])
    assert first.seed(task_id, 1) == again.seed(task_id, 1)
    assert len({first.seed(task_id, 1), first.seed(task_id, 2), other.seed(task_id, 1)}) == 3
    # the same address with another key (what a provider without the key would have to guess)
    impostor = verifier(VALIDATORS[0])
    impostor.wallet.key = VALIDATORS[2]
    assert impostor.seed(task_id, 1) != first.seed(task_id, 1)


async def test_an_agent_being_cancelled_tells_its_worker_threads_at_once() -> None:
    """trio cannot cancel a worker thread: the thread polls `Closing.set`, which must turn true
    when the agent is cancelled, not after its nursery has waited for the thread."""
    closing = Closing()
    saw: list[bool] = []

    def worker() -> None:  # like `Worker.call`: poll the flag while the child works
        give_up = time.monotonic() + 10  # (never hang the test run)
        while not closing.set and time.monotonic() < give_up:
            time.sleep(0.01)
        saw.append(closing.set)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(closing.watch)
        nursery.start_soon(partial(trio.to_thread.run_sync, worker))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert saw == [True]


class _NeverReveals(VerifierAgent):
    """Test-only: a verifier that stops (as a node going down) before it reveals."""

    async def _send(self, action: object, payload: SealVerdict | RevealVerdict) -> None:
        if not isinstance(payload, RevealVerdict):
            await super()._send(action, payload)


async def test_a_verifier_restarted_between_seal_and_reveal_still_reveals(
        tmp_path: object) -> None:
    """node3's verifier seals its vote and goes down before revealing; a new one on the same
    store (as after a restart) reveals the vote it kept there."""
    async with market_network(tmp_path, {1: policy()}, verifiers=frozenset({0, 2})) as nodes:
        node, me = nodes[3], VALIDATORS[3].address

        def sealed_by_me() -> bool:
            task = node.chain.state.tasks.get(task_id)
            return bool(task and task.attempt.check and task.attempt.check.vote_of(me))

        with trio.fail_after(90):
            await registered(nodes, 1)
            task_id = await submit(nodes[0], 0)
            async with trio.open_nursery() as first:
                await first.start(_NeverReveals(node, VerifierPolicy(process=False),
                                                cpu_device()).serve)
                await wait_for(node, sealed_by_me)
                first.cancel_scope.cancel()  # down before its reveal
            async with trio.open_nursery() as second:
                await second.start(VerifierAgent(node, VerifierPolicy(process=False),
                                                 cpu_device()).serve)
                await wait_for(node, closed(node, task_id))
                second.cancel_scope.cancel()
        task = task_of(node, task_id)
        assert task.close_reason == CloseReason.COMPLETED
        assert me in voters(task)  # revealed by the second agent, from the store
        assert not any(m.event == "silence_penalty" for m in task.trail)


async def test_a_provider_restarted_between_its_bid_and_the_reveal_still_reveals(
        tmp_path: object) -> None:
    """The sealed price and salt are in the node's LevelDB before the bid is sent: an agent
    started afresh on the same store (as after a restart) reveals the bid its predecessor
    sealed and wins the task; the secret is forgotten once the task is over. (Written by a
    helper for an equivalent store, ported here.)"""
    async with market_network(tmp_path, {}, leveldb=frozenset({1})) as nodes:
        node = nodes[1]
        me = VALIDATORS[1].address
        with trio.fail_after(60):
            async with trio.open_nursery() as jobs:  # (no job starts: nothing is awarded yet)
                first = ProviderAgent(node, policy(), cpu_device())
                await first.step(jobs)  # registers
                await wait_for(node, lambda: me in node.chain.state.providers)
                task_id = await submit(nodes[0], 0)
                await wait_for(node, lambda: status_of(node, task_id) == TaskStatus.BIDDING)
                await first.step(jobs)  # seals its bid: the only provider, so bidding ends
                await wait_for(node, lambda: status_of(node, task_id) == TaskStatus.REVEALING)
                del first
                again = ProviderAgent(node, policy(), cpu_device())
                assert again.bids.recorded() == [[bytes(task_id), 1]]
                await again.step(jobs)  # reveals what the first one sealed
                await wait_for(node, lambda: status_of(node, task_id) != TaskStatus.REVEALING)
                task = task_of(node, task_id)
                assert task.status == TaskStatus.RUNNING and task.attempt.provider == me
                assert task.attempt.bids[0].revealed
                await send_pool_tx(nodes[0], CancelTask(task_id))  # (the client's next nonce)
                await wait_for(node, closed(node, task_id))
                await again.step(jobs)
        assert AgentSecrets(node.chain.store, "bid").recorded() == []
        assert node.chain.state.providers[me].unrevealed == 0
