"""Which files the chain still needs kept: open tasks' and pools', and closed ones' for a while."""

from __future__ import annotations

from dataclasses import replace

from ogpu_node.blob_retention import ReferencedFiles, referenced_file_ids
from ogpu_node.encoding import encode
from ogpu_node.hashing import digest
from ogpu_node.ledger import State
from ogpu_node.ledger.market.records import (
    Attempt,
    Model,
    Pool,
    PoolRequest,
    RequestStatus,
    Task,
    TaskResult,
    TaskStatus,
)
from ogpu_node.ledger.state import open_task_ids
from ogpu_node.types import Address, Hash32
from ogpu_node.workloads.models import ModelInferSpec
from ogpu_node.workloads.spec import MatmulSpec, WorkloadKind
from tests.ledger.helpers import KEYS, genesis
from tests.ledger.market_helpers import (
    DIGITS_MODEL,
    MATMUL,
    NET_TRAIN,
    PROVIDER_A,
    MarketChain,
)

NOW = 50_000_000
RETENTION_MS = 1_000
OWNER = Address(bytes(20))


def fid(name: str) -> Hash32:
    return digest(b"file", name.encode())


def task(status: TaskStatus, *, inputs: bytes = b"", closed_ms: int = 0,
         output: str | None = None, checkpoints: tuple[str, ...] = ()) -> Task:
    result = None if output is None else TaskResult(
        fid(output), fid("root"), tuple(fid(c) for c in checkpoints), (), fid("key"))
    return Task(OWNER, int(MatmulSpec.KIND), encode(MatmulSpec(64, 1, inputs)), 1, 1, 1, 0,
                1, NOW, 0, 0, status=status, phase_end_ms=closed_ms, attempt=Attempt(result=result))


def request(name: str, output: str | None, deadline_ms: int,
            status: RequestStatus = RequestStatus.PAID) -> PoolRequest:
    return PoolRequest(fid(name), 1, 1, 0, deadline_ms, (), 0, status,
                       output_id=None if output is None else fid(output))


def pool(closed: bool, *requests: PoolRequest) -> Pool:
    return Pool(OWNER, "mlp-small", 1, 1, 1, 0, 1, 1, NOW, 0, 0, requests=requests,
                closed=closed)


def market_state(tasks: dict[Hash32, Task], pools: dict[Hash32, Pool],
                 height: int = 7) -> State:
    return replace(genesis(), height=height, timestamp=NOW, tasks=tasks,
                   open_tasks=open_task_ids(tasks), pools=pools)


def test_open_and_recently_closed_tasks_and_pools_keep_their_files() -> None:
    tasks = {
        fid("bidding"): task(TaskStatus.BIDDING, inputs=fid("inputs")),
        fid("verifying"): task(TaskStatus.VERIFYING, output="out", checkpoints=("c1", "c2")),
        fid("just closed"): task(TaskStatus.CLOSED, inputs=fid("inputs2"), output="out2",
                                 closed_ms=NOW - RETENTION_MS + 1),
        fid("closed long ago"): task(TaskStatus.CLOSED, inputs=fid("old inputs"),
                                     output="old out", closed_ms=NOW - RETENTION_MS),
        fid("seeded"): task(TaskStatus.CLOSED, closed_ms=NOW),  # no inputs, no result
    }
    pools = {
        fid("open pool"): pool(False, request("r1", "answer", NOW - 10 * RETENTION_MS),
                               request("r2", None, NOW + 5, RequestStatus.OPEN)),
        fid("closed pool"): pool(True, request("r3", "late answer", NOW - RETENTION_MS + 1),
                                 request("r4", "old answer", NOW - RETENTION_MS)),
    }
    tasks[fid("fine-tuning")] = replace(
        task(TaskStatus.BIDDING), kind=int(NET_TRAIN.KIND),
        spec=encode(replace(NET_TRAIN, inputs=fid("rows"), init=fid("weights"))))
    pools[fid("model pool")] = pool(False, replace(request("r5", "logits", NOW + 5),
                                                   inputs=fid("images")))
    pools[fid("model pool")] = replace(pools[fid("model pool")], model_id=fid("served"))
    tasks[fid("on a model")] = replace(task(TaskStatus.BIDDING), kind=int(WorkloadKind.MODEL_INFER),
                                       spec=encode(ModelInferSpec(fid("run"), 3, fid("rows4"))))
    models = {fid(name): Model(OWNER, name, fid(f"{name} file"), DIGITS_MODEL, registered)
              for name, registered in (("served", 0), ("run", 0), ("new", NOW - 10),
                                       ("forgotten", 0))}
    state = replace(market_state(tasks, pools), models=models)
    assert referenced_file_ids(state, RETENTION_MS) == {
        fid("inputs"), fid("out"), fid("c1"), fid("c2"), fid("inputs2"), fid("out2"),
        fid("answer"), fid("late answer"), fid("rows"), fid("weights"), fid("logits"),
        fid("images"), fid("rows4"), fid("served file"), fid("run file"), fid("new file")}


def test_the_node_provider_computes_once_per_height() -> None:
    states = [market_state({fid("t"): task(TaskStatus.BIDDING, inputs=fid("a"))}, {})]
    provider = ReferencedFiles(lambda: states[-1], retention_s=1.0)
    assert provider() == {fid("a")} and provider.retention_ms == 1_000
    # The same height is the same state for the node: the answer is reused.
    states.append(market_state({}, {}))
    assert provider() == {fid("a")}
    states.append(market_state({}, {}, height=8))
    assert provider() == set()


def test_a_task_through_the_real_rules_keeps_its_files_for_the_retention_after_closing() -> None:
    chain = MarketChain.start()
    chain.register(PROVIDER_A)
    spec = replace(MATMUL, inputs=bytes(fid("uploaded")))
    task_id = chain.submit(spec)
    assert referenced_file_ids(chain.state, RETENTION_MS) == {fid("uploaded")}
    chain.auction(task_id, {KEYS.index(PROVIDER_A): 10})
    chain.commit_result(task_id, spec)
    result = chain.task(task_id).attempt.result
    assert result is not None
    files = {fid("uploaded"), result.output_id, *result.checkpoint_ids}
    assert referenced_file_ids(chain.state, RETENTION_MS) == files
    chain.vote(task_id, True)
    assert chain.task(task_id).status == TaskStatus.CLOSED
    chain.block(after_ms=RETENTION_MS - 1)
    assert referenced_file_ids(chain.state, RETENTION_MS) == files
    chain.block(after_ms=1)
    assert referenced_file_ids(chain.state, RETENTION_MS) == set()
