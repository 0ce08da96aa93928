"""`ogpu task ...` and `ogpu provider ...`: the GPU market from the command line.

Tasks are submitted from a TOML task file and/or flags (flags win), signed like `ogpu transfer`.
A task may ship its own inputs (`--inputs data.npz`, or `inputs = "data.npz"` in the task file):
they are checked against the spec, uploaded to the node chunk by chunk, and the task names them
by file id.
`ogpu task watch` follows a task over the node's WebSocket `task` subscription (no polling): a
live progress bar on a terminal, one line per change otherwise, then the money trail.
"""

from __future__ import annotations

import dataclasses
import io
import sys
import time
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn
from rich.table import Table

from gpu.artifacts import MAGIC as ARTIFACT_MAGIC
from gpu.artifacts import encode_arrays
from gpu.errors import ArtifactError
from gpu.inputs import InputsError, check_inputs, encode_inputs
from ogpu_node.address import address_from_text, address_to_text
from ogpu_node.cli.array_files import (
    PLACEHOLDER_ID,
    is_model_id,
    load_arrays,
    model_request_inputs,
    parse_model_id,
    registered_model,
    write_arrays,
    write_file,
)
from ogpu_node.cli.common import emit, handle_errors, parse_id, require_onnx
from ogpu_node.cli.net_toml import parse_net
from ogpu_node.cli.sending import (
    DEV_OPTION,
    FEE_OPTION,
    JSON_OPTION,
    KEY_OPTION,
    TIMEOUT_OPTION,
    parse_ogpu,
    report,
    send,
    send_options,
    signer,
)
from ogpu_node.encoding import encode
from ogpu_node.ledger.market.payloads import CancelTask, SubmitTask
from ogpu_node.ledger.market.records import MAX_DEVICE_NAME, MAX_DEVICES, Device, TaskStatus
from ogpu_node.sdk import RpcCallError, SyncClient
from ogpu_node.sdk.sync_client import rpc_call, upload_file
from ogpu_node.types import Amount, Hash32, format_amount
from ogpu_node.workloads.kinds import SPEC_TYPES, WorkloadSpec, decode_spec
from ogpu_node.workloads.limits import input_shapes, limit_refusal
from ogpu_node.workloads.models import ModelInferSpec
from ogpu_node.workloads.net import BPS, MICROS, NetTrainSpec
from ogpu_node.workloads.spec import WorkloadKind

EXIT_NOT_COMPLETED = 3
"""`ogpu task watch`: the task closed for another reason than `completed`."""
TASK_KEYS = ("kind", "max_price", "min_benchmark", "exec_s", "ttl_s", "inputs")
DEFAULTS: dict[str, Any] = {"min_benchmark": 0, "exec_s": 60, "ttl_s": 600, "seed": 0}
MAX_TASK_FILE = 64 * 1024


def _kinds() -> dict[str, int]:
    return {WorkloadKind(k).name.lower(): int(k) for k in SPEC_TYPES}


# --- task files ---------------------------------------------------------------------------------


def parse_price(value: object, name: str = "max_price") -> Amount:
    """A price per work unit: OGPU as text (`"0.25"`), or base units with a `u` (`"250000u"`)."""
    if not isinstance(value, str):
        raise click.UsageError(f"{name}: give it as text, OGPU (\"0.25\") or base units "
                               f"(\"250000u\"), got {value!r}")
    text = value.strip()
    if text.endswith("u"):
        digits = text[:-1].strip()
        if not digits.isdigit():
            raise click.UsageError(f"{name}: {value!r} is not a whole number of base units")
        return Amount(int(digits))
    return parse_ogpu(text)


def _int_field(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise click.UsageError(f"{name}: expected a whole number >= 0, got {value!r}")
    return value


def _hidden(value: object) -> tuple[int, ...]:
    if isinstance(value, str):
        try:
            return tuple(int(part) for part in value.split(",") if part.strip())
        except ValueError:
            raise click.UsageError(f"hidden: expected widths like 64,64, got {value!r}"
                                   ) from None
    if isinstance(value, list):
        return tuple(_int_field("hidden", v) for v in value)
    raise click.UsageError(f"hidden: expected a list of widths, got {value!r}")


def build_submit(fields: dict[str, Any]) -> SubmitTask:
    """The `SubmitTask` payload a task file (plus flags) describes; a usage error naming every
    problem otherwise."""
    kinds = _kinds()
    kind_text = fields.get("kind")
    if kind_text not in kinds:
        raise click.UsageError(f"kind: expected one of {', '.join(kinds)}, got {kind_text!r}")
    kind = kinds[kind_text]
    spec_type = SPEC_TYPES[kind]
    names = [f.name for f in dataclasses.fields(spec_type) if f.name != "inputs"]
    unknown = sorted(set(fields) - set(names) - set(TASK_KEYS))
    if unknown:
        raise click.UsageError(f"unknown field(s) for a {kind_text} task: {', '.join(unknown)} "
                               f"(expected {', '.join([*TASK_KEYS, *names])})")
    values = {**DEFAULTS, **fields}
    missing = [n for n in (*names, "max_price") if values.get(n) is None]
    if missing:
        raise click.UsageError(f"missing field(s) for a {kind_text} task: {', '.join(missing)}")
    spec_args: dict[str, Any] = {}
    for name in names:
        if name == "hidden":
            spec_args[name] = _hidden(values[name])
        elif name == "model":
            if not isinstance(values[name], str):
                raise click.UsageError(f"model: expected a model name, got {values[name]!r}")
            spec_args[name] = values[name]
        else:
            spec_args[name] = _int_field(name, values[name])
    spec = spec_type(**spec_args)
    problems = spec.problems()
    if problems:
        raise click.UsageError(f"{kind_text} spec: " + "; ".join(problems))
    return SubmitTask(kind, encode(spec), *task_terms(values))


def _seconds_ms(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise click.UsageError(f"{name}: expected seconds > 0, got {value!r}")
    return round(value * 1000)


def task_terms(fields: dict[str, Any]) -> tuple[Amount, int, int, int]:
    """(max_price, min_benchmark, exec_ms, ttl_ms) of a task file's fields, with defaults."""
    values = {**DEFAULTS, **fields}
    if values.get("max_price") is None:
        raise click.UsageError("missing field: max_price (per work unit, e.g. \"0.001\")")
    return (parse_price(values["max_price"]),
            _int_field("min_benchmark", values["min_benchmark"]),
            _seconds_ms("exec_s", values["exec_s"]), _seconds_ms("ttl_s", values["ttl_s"]))


def _path_field(fields: dict[str, Any], name: str, what: str) -> Path | None:
    value = fields.get(name)
    if value is not None and not isinstance(value, str | Path):
        raise click.UsageError(f"{name}: expected a file path, got {value!r}")
    return None if value is None else Path(value)


def _refuse_over_limit(spec: WorkloadSpec) -> None:
    refusal = limit_refusal(spec)
    if refusal is not None:
        raise click.UsageError(f"the task is over a protocol limit: {refusal}")


def build_model_task(rpc: str, fields: dict[str, Any]) -> SubmitTask:
    """The `SubmitTask` of a registered model's inference (kind 4): `model` (its id), the
    arrays of `inputs` (named as the model's inputs; their rows are the batch, which `batch`
    may restate) uploaded, and the task's terms."""
    allowed = {"kind", "model", "batch", "inputs", *TASK_KEYS}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise click.UsageError(f"unknown field(s) for a registered model's task: "
                               f"{', '.join(unknown)} (expected {', '.join(sorted(allowed))})")
    inputs = _path_field(fields, "inputs", "inputs file")
    if inputs is None:
        raise click.UsageError("a registered model's task needs its inputs: --inputs data.npz "
                               "with one array per model input, named as the input")
    terms = task_terms(fields)
    if not isinstance(fields.get("model"), str):
        raise click.UsageError("a registered model's task needs --model MODEL_ID")
    model_id = parse_model_id(fields["model"])
    batch = fields.get("batch")
    if batch is not None:
        batch = _int_field("batch", batch)
    _, info = registered_model(rpc, model_id)
    rows, raw = model_request_inputs(inputs, model_id, info, batch)
    _refuse_over_limit(ModelInferSpec(model_id, rows, PLACEHOLDER_ID, info))
    spec = ModelInferSpec(model_id, rows, upload_file(rpc, raw))
    return SubmitTask(spec.KIND, encode(spec), *terms)


def weights_file(spec: NetTrainSpec, path: Path) -> bytes:
    """The initial weights file of `spec` from `path`: the network's parameters by name
    (`l0.w`, `l0.b`, ...; other arrays, such as a checkpoint's `opt.*`, are left out), checked
    as a provider checks them."""
    from gpu.nn.data import uploaded_params  # NumPy-only, but not needed by other commands

    arrays = load_arrays(path, "weights file")
    wanted = spec.param_shapes()
    missing = [name for name, _ in wanted if name not in arrays]
    if missing:
        raise click.UsageError(f"weights file {path}: missing {', '.join(missing)} (the network "
                               f"has {', '.join(f'{n} {shape}' for n, shape in wanted)})")
    try:
        raw = encode_arrays([(name, np.asarray(arrays[name], dtype=np.float32))
                             for name, _ in wanted])
        uploaded_params(spec, raw)
    except (InputsError, ArtifactError, ValueError) as exc:
        raise click.UsageError(f"weights file {path}: {exc}") from exc
    return raw


def build_net_task(rpc: str, fields: dict[str, Any]) -> SubmitTask:
    """The `SubmitTask` of a network's training (kind 5) from a network file's fields
    (`net_toml`): its inputs file (and initial weights, `init`) uploaded, n_samples taken from
    the rows of its "x"."""
    net = {k: v for k, v in fields.items() if k not in (*TASK_KEYS, "kind", "init")}
    inputs = _path_field(fields, "inputs", "inputs file")
    init = _path_field(fields, "init", "weights file")
    if inputs is None:
        raise click.UsageError("a network's training needs its data: --inputs data.npz with "
                               "\"x\" and \"labels\" (cross_entropy) or \"targets\" (mse)")
    terms = task_terms({k: v for k, v in fields.items() if k in TASK_KEYS})
    arrays = load_arrays(inputs)
    x = arrays.get("x")
    if x is None or x.ndim < 2:
        raise click.UsageError(f"inputs file {inputs}: needs an array \"x\" of rows of the "
                               f"input shape, got arrays {sorted(arrays)}")
    spec = parse_net(net, x.shape[0], PLACEHOLDER_ID, PLACEHOLDER_ID if init else b"")
    try:
        raw = encode_inputs(spec, arrays)
    except InputsError as exc:
        wanted = ", ".join(f"{name} {'x'.join(map(str, shape))}"
                           for name, shape in spec.input_arrays())
        raise click.UsageError(f"inputs file {inputs}: {exc} (this network needs "
                               f"{wanted})") from exc
    _refuse_over_limit(spec)
    weights = weights_file(spec, init) if init is not None else None
    spec = dataclasses.replace(spec, inputs=upload_file(rpc, raw),
                               init=upload_file(rpc, weights) if weights is not None else b"")
    return SubmitTask(spec.KIND, encode(spec), *terms)


def load_task_file(path: Path) -> dict[str, Any]:
    """The fields of a TOML task file; `inputs` and `init` paths are taken relative to the
    file."""
    try:
        raw = path.read_bytes()
        if len(raw) > MAX_TASK_FILE:
            raise click.UsageError(f"{path}: a task file is at most {MAX_TASK_FILE} bytes")
        fields = tomllib.loads(raw.decode())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise click.UsageError(f"cannot read task file {path}: {exc}") from exc
    for name in ("inputs", "init"):
        if name in fields:
            if not isinstance(fields[name], str):
                raise click.UsageError(f"{name}: expected a file path, got {fields[name]!r}")
            fields[name] = path.parent / fields[name]
    return fields


def read_inputs(path: Path, spec: WorkloadSpec) -> bytes:
    """The inputs file for `spec` from `path`: a NumPy `.npz` whose arrays are named as
    `gpu.inputs` says (cast to float32), or an artifact file as is; checked either way."""
    try:
        raw = path.read_bytes()
        if raw[:4] == ARTIFACT_MAGIC:
            check_inputs(spec, raw)
            return raw
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            return encode_inputs(spec, {name: npz[name] for name in npz.files})
    except OSError as exc:
        raise click.UsageError(f"cannot read inputs file {path}: {exc}") from exc
    except (ValueError, zipfile.BadZipFile) as exc:
        raise click.UsageError(f"inputs file {path} is neither an .npz nor an artifact: "
                               f"{exc}") from exc
    except InputsError as exc:
        wanted = ", ".join(f"{name} {'x'.join(map(str, shape))}"
                           for name, shape in input_shapes(spec))
        raise click.UsageError(f"inputs file {path}: {exc} (this task needs {wanted})") from exc


def attach_inputs(rpc: str, payload: SubmitTask, path: Path) -> SubmitTask:
    """`payload` naming the inputs in `path`, once uploaded to the node."""
    spec = decode_spec(payload.kind, payload.spec)
    fid = upload_file(rpc, read_inputs(path, spec))
    return dataclasses.replace(payload, spec=encode(dataclasses.replace(spec, inputs=fid)))


# --- watching -----------------------------------------------------------------------------------


def phase_line(view: dict[str, Any]) -> str:
    """One line saying where the task is."""
    status, attempt = view["status"], f"attempt {view['attempt']}"
    bids = view["bids"]
    if status == "bidding":
        return f"{attempt}: bidding, {len(bids)} sealed bid(s)"
    if status == "revealing":
        revealed = sum(b["revealed"] for b in bids)
        return f"{attempt}: revealing, {revealed}/{len(bids)} bid(s) revealed"
    if status == "running":
        done = view.get("progressBps")
        progress = "no progress report yet" if done is None else f"{done / 100:.0f}%"
        return (f"{attempt}: running on {view['provider']} at {view['priceOgpu']} OGPU/unit, "
                f"{progress}")
    if status == "verifying":
        return f"{attempt}: verifying, {check_progress(view)}"
    if status == "releasing":
        return (f"{attempt}: accepted; {view['provider']} is to release the key that opens "
                "the result")
    if status == "checking_inputs":
        return (f"{attempt}: the provider reports the inputs {view['why'] or 'missing'}; "
                f"{check_progress(view)}")
    why = f" ({view['why']})" if view.get("why") else ""
    return f"closed: {view['closeReason']}{why}"


def check_progress(view: dict[str, Any]) -> str:
    """Where the committee's check of a task's result (or report) is, in a few words."""
    check = view.get("check") or {}
    phase, sealed = check.get("phase"), len(check.get("sealed", []))
    round_ = f"round {check['round']}: " if check.get("round", 1) > 1 else ""
    if phase == "drawing":
        return f"{round_}committee drawn at height {check['drawHeight']}"
    if phase == "sealing":
        return f"{round_}{sealed}/{len(check['committee'])} verdicts sealed"
    accepts = sum(v["accept"] for v in view["verdicts"])
    return (f"{round_}{len(check.get('revealed', []))}/{sealed} verdicts revealed "
            f"({accepts} accept)")


def phase_percent(view: dict[str, Any]) -> float:
    if view["status"] == "running":
        return (view.get("progressBps") or 0) / 100
    return 100.0 if view["status"] in ("verifying", "checking_inputs", "closed") else 0.0


def _console() -> Console:
    # Off a terminal (pipes, logs, tests) rich would wrap at 80 columns: addresses do not fit.
    return Console() if sys.stdout.isatty() else Console(width=160)


class WatchDisplay:
    """A rich progress bar on a terminal; elsewhere one line each time the phase line changes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.last = ""
        self.progress: Progress | None = None
        self.bar = None
        if console.is_terminal:
            self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                     BarColumn(), TaskProgressColumn(), console=console)
            self.progress.start()
            self.bar = self.progress.add_task("waiting for the task", total=100)

    def update(self, view: dict[str, Any]) -> None:
        line = phase_line(view)
        if self.progress is not None and self.bar is not None:
            self.progress.update(self.bar, description=line, completed=phase_percent(view))
        elif line != self.last:
            self.console.print(line, highlight=False)
        self.last = line

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def metrics_text(metrics: dict[str, int]) -> str:
    """A result's metrics for people: `train_loss 0.018745, val_accuracy 99.06%, ...` (the
    chain holds losses in millionths and accuracies in basis points); others as they are."""
    parts = []
    for name, value in sorted(metrics.items()):
        if name.endswith("_micros"):
            parts.append(f"{name.removesuffix('_micros')} {value / MICROS:.6f}")
        elif name.endswith("_bps"):
            parts.append(f"{name.removesuffix('_bps')} {100 * value / BPS:.2f}%")
        else:
            parts.append(f"{name} {value}")
    return ", ".join(parts)


def trail_table(view: dict[str, Any]) -> Table:
    table = Table(title=f"money trail of task {view['id']}")
    table.add_column("event")
    table.add_column("address")
    table.add_column("OGPU", justify="right")
    for line in view["trail"]:
        table.add_row(line["event"], line["address"], line["amountOgpu"])
    return table


def watch_task(rpc: str, task_id: str, as_json: bool, idle_timeout: float | None) -> int:
    """Follow a task until it closes; print the final view or the trail; the exit status."""
    console = _console()
    display = None if as_json else WatchDisplay(console)
    view: dict[str, Any] | None = None
    try:
        with SyncClient(rpc) as client:
            for update in client.watch_task(task_id, idle_timeout=idle_timeout):
                view = dict(update)
                if display is not None:
                    display.update(view)
    finally:
        if display is not None:
            display.close()
    if view is None:  # the node ended the subscription without a view: cannot happen
        raise RpcCallError("the subscription ended before the task appeared")
    if as_json:
        emit(view, True)
    else:
        console.print(trail_table(view))
        if view["result"] is not None and view["result"]["metrics"]:
            console.print(f"result metrics: {metrics_text(view['result']['metrics'])}",
                          highlight=False)
    return 0 if view["closeReason"] == "completed" else EXIT_NOT_COMPLETED


# --- task commands ------------------------------------------------------------------------------


@click.group()
def task() -> None:
    """Submit, watch and manage GPU tasks."""


def _check_task_id(task_id: str) -> str:
    return parse_id(task_id, "task").hex()


@task.command("submit")
@click.option("--file", "task_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="A TOML task file (kind, spec fields, max_price, ...).")
@click.option("--spec", "net_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="train_net: a TOML file describing a network of your own "
                                 "(layers, loss, optimizer, schedule; see below).")
@click.option("--kind", type=click.Choice(["matmul", "train", "infer", "model_infer",
                                           "train_net"]), default=None,
              help="Inferred from --model ID (model_infer) and --spec (train_net).")
@click.option("--n", type=click.IntRange(1), default=None, help="matmul: matrix size.")
@click.option("--seed", type=click.IntRange(0), default=None)
@click.option("--model", default=None,
              help="A registered model's id (64 hex digits: model_infer), or a built-in "
                   "model's name (infer: mlp-small, mlp-large).")
@click.option("--batch", type=click.IntRange(1), default=None,
              help="Rows; model_infer: the rows of the inputs file (this only checks it).")
@click.option("--n-features", type=click.IntRange(1), default=None)
@click.option("--hidden", default=None, help="train: hidden widths, e.g. 64,64.")
@click.option("--n-classes", type=click.IntRange(1), default=None)
@click.option("--n-samples", type=click.IntRange(1), default=None)
@click.option("--steps", type=click.IntRange(1), default=None)
@click.option("--lr-micros", type=click.IntRange(1), default=None,
              help="train: learning rate in millionths.")
@click.option("--checkpoint-every", type=click.IntRange(1), default=None)
@click.option("--inputs", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Upload these inputs instead of using the seed: an .npz with arrays A, B "
                   "(matmul), x, labels (train), x (infer), one array per model input "
                   "(model_infer), x and labels or targets (train_net).")
@click.option("--init", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="train_net: initial weights, an .npz of the network's parameters "
                   "(l0.w, l0.b, ...; a result written by `task result -o` works).")
@click.option("--max-price", default=None,
              help="Highest price per work unit: OGPU (0.25) or base units (250000u).")
@click.option("--min-benchmark", type=click.IntRange(0), default=None,
              help="Least provider benchmark, GFLOP/s.")
@click.option("--exec-s", type=click.FloatRange(0, min_open=True), default=None,
              help="Seconds a provider has from its award to its result (default 60).")
@click.option("--ttl-s", type=click.FloatRange(0, min_open=True), default=None,
              help="Seconds the task may be re-offered (default 600).")
@KEY_OPTION
@DEV_OPTION
@FEE_OPTION
@TIMEOUT_OPTION
@click.option("--watch", is_flag=True, help="Then follow it as `ogpu task watch` does.")
@JSON_OPTION
@click.pass_obj
@handle_errors
def task_submit(rpc: str, /, task_file: Path | None, net_file: Path | None,
                key_path: Path | None, dev_account: int | None, fee: str | None, timeout: float,
                watch: bool, as_json: bool, **flags: Any) -> None:
    """Submit a task (escrows its budget) and print its id; the exit status is 0 once final.

    \b
    A registered model's inference (model_infer):
      ogpu task submit --model MODEL_ID --inputs data.npz --max-price 0.001 --key me.json
    the arrays of data.npz named as the model's inputs (`ogpu model get ID`), the batch
    their number of rows.

    \b
    A network of your own (train_net):
      ogpu task submit --spec net.toml --inputs data.npz [--init weights.npz] ...
    data.npz holds "x" (rows of input_shape) and "labels" (cross_entropy) or "targets"
    (mse). net.toml:
      input_shape = [1, 8, 8]
      loss = "cross_entropy"        # or "mse"
      batch = 64
      steps = 500
      val_split = 0.1               # rows held out for validation
      [optimizer]
      kind = "adamw"                # sgd (lr, momentum) | adam | adamw
      lr = 0.001                    # beta1, beta2, weight_decay optional
      [schedule]                    # optional: constant | step (every, gamma)
      kind = "cosine"               # | cosine (floor); warmup_steps
      [[layers]]
      kind = "conv2d"               # channels, kernel, stride = 1, padding = 0
      channels = 16
      kernel = 3
      padding = 1
      [[layers]]
      kind = "relu"                 # gelu, tanh, sigmoid, flatten, layer_norm
      [[layers]]
      kind = "max_pool"             # avg_pool; kernel, stride = kernel
      kernel = 2
      [[layers]]
      kind = "flatten"
      [[layers]]
      kind = "dense"                # units; also embedding (vocab, dim), dropout (rate)
      units = 10
    max_price, exec_s, ttl_s may go in the same file (flags win). The full schema:
    docs/rpc.md, "Networks as TOML".
    """
    if task_file is not None and net_file is not None:
        raise click.UsageError("give --file or --spec, not both")
    fields: dict[str, Any] = {}
    if task_file is not None:
        fields = load_task_file(task_file)
    if net_file is not None:
        fields = {"kind": "train_net", **load_task_file(net_file)}
    fields |= {name: value for name, value in flags.items() if value is not None}
    kind = fields.get("kind")
    if kind is None and is_model_id(str(fields.get("model"))):
        kind = "model_infer"
    if kind == "model_infer":
        payload = build_model_task(rpc, fields)
    elif kind == "train_net":
        payload = build_net_task(rpc, fields)
    else:
        inputs = fields.pop("inputs", None)
        if fields.pop("init", None) is not None:
            raise click.UsageError("--init is a network's training's (train_net) only")
        payload = build_submit(fields)
        if inputs is not None:
            payload = attach_inputs(rpc, payload, Path(inputs))
    key = signer(key_path, dev_account)
    receipt = send(rpc, key, payload, fee, True, timeout)
    if receipt.get("state") != "finalized":
        report(receipt, as_json)
        return
    task_id = str(receipt["hash"])
    if watch:
        if not as_json:
            click.echo(f"task {task_id}")
        sys.exit(watch_task(rpc, task_id, as_json, None))
    view = rpc_call(rpc, "task_get", {"taskId": task_id})
    emit({"taskId": task_id, "height": receipt["height"], "kind": view["kind"],
          "workUnits": view["workUnits"], "budgetOgpu": view["budgetOgpu"],
          "escrowOgpu": view["escrowOgpu"], "status": view["status"]}, as_json)


@task.command("watch")
@click.argument("task_id")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=None,
              help="Give up after this many seconds without news (default: never).")
@JSON_OPTION
@click.pass_obj
@handle_errors
def task_watch(rpc: str, task_id: str, timeout: float | None, as_json: bool) -> None:
    """Follow TASK_ID live (bidding, revealing, running with percent, verifying, closed), then
    print its money trail. Exit status 0 when it completed, 3 when it closed otherwise."""
    sys.exit(watch_task(rpc, _check_task_id(task_id), as_json, timeout))


def opened_result(rpc: str, task_id: str, key_path: Path | None, dev_account: int | None
                  ) -> tuple[dict[str, Any], bytes]:
    """TASK_ID's `task_get` view and its output, downloaded and opened with the client's key
    (`--key` or `--dev-account`): results are sealed until they are paid."""
    key = signer(key_path, dev_account)
    with SyncClient(rpc) as client:
        output = client.fetch_result(_check_task_id(task_id), key)
    return dict(output.task), output.data


def trained_net(view: dict[str, Any]) -> NetTrainSpec:
    """The network a task's view trains; a usage error for a task of another kind."""
    spec = decode_spec(view["kindId"], bytes.fromhex(view["specHex"]))
    if not isinstance(spec, NetTrainSpec):
        raise click.UsageError(f"task {view['id']} is a {view['kind']} task: only a network's "
                               "training (train_net) exports a model")
    return spec


@task.command("result")
@click.argument("task_id")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Where to write the output: its arrays as NumPy's .npz when "
                                 "the name ends in .npz, else the file as it is.")
@click.option("--onnx", "onnx_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="train_net: write the trained network as an ONNX model.")
@KEY_OPTION
@DEV_OPTION
@JSON_OPTION
@click.pass_obj
@handle_errors
def task_result(rpc: str, task_id: str, output: Path | None, onnx_path: Path | None,
                key_path: Path | None, dev_account: int | None, as_json: bool) -> None:
    """Download the output of TASK_ID's result, checked against its file id, and open it with
    the client's key (--key or --dev-account): results are sealed until they are paid. A
    network's training (train_net) outputs its final checkpoint; --onnx exports it."""
    if output is None and onnx_path is None:
        raise click.UsageError("give -o FILE and/or --onnx FILE")
    if onnx_path is not None:
        require_onnx("ogpu task result --onnx")
    view, data = opened_result(rpc, task_id, key_path, dev_account)
    shown: dict[str, Any] = {"fileId": view["result"]["outputId"], "size": len(data)}
    if view["result"]["metrics"]:
        metrics = view["result"]["metrics"]
        shown["metrics"] = metrics if as_json else metrics_text(metrics)
    if onnx_path is not None:
        from gpu.onnx_export import export_onnx  # onnx loads in 0.7 s: only when asked

        model = export_onnx(trained_net(view), data)
        write_file(onnx_path, model)
        shown |= {"onnx": str(onnx_path), "onnxBytes": len(model)}
    if output is not None:
        if output.suffix == ".npz":
            shown["arrays"] = ", ".join(write_arrays(output, data))
        else:
            write_file(output, data)
        shown = {"file": str(output), **shown}
    emit(shown, as_json)


@task.command("cancel")
@click.argument("task_id")
@send_options
@click.pass_obj
@handle_errors
def task_cancel(rpc: str, task_id: str, key_path: Path | None, dev_account: int | None,
                fee: str | None, timeout: float, as_json: bool) -> None:
    """Cancel TASK_ID (free before its award; after it, the client's collateral goes to the
    provider)."""
    payload = CancelTask(Hash32(bytes.fromhex(_check_task_id(task_id))))
    report(send(rpc, signer(key_path, dev_account), payload, fee, True, timeout), as_json)


@task.command("why")
@click.argument("task_id")
@JSON_OPTION
@click.pass_obj
@handle_errors
def task_why(rpc: str, task_id: str, as_json: bool) -> None:
    """Why TASK_ID has (or had) no usable bid."""
    why = rpc_call(rpc, "task_why", {"taskId": _check_task_id(task_id)})
    if as_json:
        emit(why, True)
        return
    emit({"task": why["id"], "status": why["status"] + (f" ({why['closeReason']})"
                                                         if why["closeReason"] else ""),
          "code": why["code"] or "-", "why": why["explanation"],
          "providers": f"{why['registered']} registered, {why['eligible']} eligible",
          "bids": str(why["bids"])}, False)


@task.command("list")
@click.option("--status", type=click.Choice([s.name.lower() for s in TaskStatus]), default=None)
@click.option("--client", default=None, help="Only tasks of this client address.")
@click.option("--provider", default=None, help="Only tasks awarded to this address.")
@click.option("--open", "only_open", is_flag=True, help="Only tasks not closed.")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@JSON_OPTION
@click.pass_obj
@handle_errors
def task_list(rpc: str, status: str | None, client: str | None, provider: str | None,
              only_open: bool, limit: int, as_json: bool) -> None:
    """Tasks, newest first."""
    for address in (client, provider):
        if address is not None:
            address_from_text(address)
    listed = rpc_call(rpc, "task_list", {"status": status, "client": client,
                                         "provider": provider, "open": only_open,
                                         "limit": limit})
    if as_json:
        emit(listed, True)
        return
    # Plain lines, not a table: ids stay whole (to copy) at any terminal width.
    click.echo(f"{len(listed['tasks'])} of {listed['total']} task(s) at height "
               f"{listed['height']}, newest first")
    for row in listed["tasks"]:
        status_text = row["status"] + (f" ({row['closeReason']})" if row["closeReason"] else "")
        click.echo(f"{row['id']}  {row['kind']:<6}  {status_text:<28}  attempt {row['attempt']}"
                   f"  {row['workUnits']} units  max {row['maxPriceOgpu']} OGPU/unit"
                   f"  {row['provider'] or '-'}")


# --- provider commands --------------------------------------------------------------------------


@click.group()
def provider() -> None:
    """Register as a GPU provider and follow its record and earnings."""


def parse_device(text: str) -> Device:
    model, sep, memory = text.rpartition(":")
    if not sep or not model or not memory.isdigit() or len(model) > MAX_DEVICE_NAME:
        raise click.BadParameter(f"expected MODEL:MEMORY_MB (e.g. 'RTX 4090:24564'), "
                                 f"got {text!r}")
    return Device(model, int(memory))


@provider.command("register")
@click.option("--device", "devices", multiple=True, required=True,
              help="MODEL:MEMORY_MB, once per device.")
@click.option("--benchmark", type=click.IntRange(1), required=True,
              help="Measured benchmark, GFLOP/s (float32 matrix product).")
@click.option("--floor", default="0u", show_default=True,
              help="Lowest price per work unit you take: OGPU or base units (1000u).")
@click.option("--stake", default="0", show_default=True,
              help="OGPU to add to the provider bond (the first registration needs the "
                   "minimum).")
@send_options
@click.pass_obj
@handle_errors
def provider_register(rpc: str, devices: tuple[str, ...], benchmark: int, floor: str,
                      stake: str, key_path: Path | None, dev_account: int | None, fee: str | None,
                      timeout: float, as_json: bool) -> None:
    """Register (or update) a provider that is not run by a node's agent: declare devices,
    benchmark and price floor, and bond stake."""
    if len(devices) > MAX_DEVICES:
        raise click.UsageError(f"at most {MAX_DEVICES} devices")
    declared = [parse_device(d) for d in devices]
    price_floor, bond = parse_price(floor, "floor"), parse_ogpu(stake)
    fee_units = None if fee is None else parse_ogpu(fee)
    with SyncClient(rpc) as client:
        receipt = client.register_provider(signer(key_path, dev_account), declared, benchmark,
                                           price_floor=price_floor, stake=bond, fee=fee_units,
                                           wait_s=timeout)
    report(receipt, as_json)


def _provider_view(rpc: str, address: str | None, key_path: Path | None,
                   dev_account: int | None) -> dict[str, Any]:
    """`provider_get` of ADDRESS, or of the address of --key / --dev-account."""
    if address is not None:
        address_from_text(address)
    else:
        address = address_to_text(signer(key_path, dev_account).address)
    view: dict[str, Any] = rpc_call(rpc, "provider_get", {"address": address})
    return view


@provider.command("status")
@click.argument("address", required=False)
@KEY_OPTION
@DEV_OPTION
@JSON_OPTION
@click.pass_obj
@handle_errors
def provider_status(rpc: str, address: str | None, key_path: Path | None,
                    dev_account: int | None, as_json: bool) -> None:
    """A provider's declaration, stake, record, reputation and flags (ADDRESS, or the address
    of --key / --dev-account)."""
    view = _provider_view(rpc, address, key_path, dev_account)
    agent = rpc_call(rpc, "agent_status")["provider"]
    if agent is not None and agent["address"] != view["address"]:
        agent = None  # the node's agent is another provider
    if as_json:
        emit({**view, "agent": agent}, True)
        return
    counters = view["counters"]
    delivered = view["deliveredGflops"]
    emit({
        "address": view["address"], "active": "yes" if view["active"] else "no (stake below "
                                                                          "the minimum)",
        "devices": ", ".join(f"{d['model']} ({d['memoryMb']} MB)" for d in view["devices"]),
        "benchmark": f"{view['benchmark']} GFLOP/s",
        "delivered": f"{delivered} GFLOP/s" if delivered is not None else "-",
        "price floor": f"{view['priceFloorOgpu']} OGPU/unit",
        "stake": f"{view['stakeOgpu']} OGPU ({view['lockedOgpu']} locked, "
                 f"{view['freeStakeOgpu']} free)",
        "record": f"{counters['completed']} completed, {counters['failed']} failed, "
                  f"{counters['bids']} bids ({counters['unrevealed']} unrevealed)",
        "reputation": f"{view['reputationBps'] / 100:.2f}%",
        "flags": ", ".join(view["flags"]) or "-",
        "height": str(view["height"]),
    }, False)
    if agent is not None:
        print_agent_decisions(agent)


def print_earnings_by_period(rpc: str, address: str | None, key_path: Path | None,
                             dev_account: int | None, period: str, limit: int,
                             as_json: bool) -> None:
    """`provider_earnings`: one line per period, newest first."""
    if address is None:
        address = address_to_text(signer(key_path, dev_account).address)
    view = rpc_call(rpc, "provider_earnings", {"address": address, "period": period,
                                               "limit": limit})
    if as_json:
        emit(view, True)
        return
    click.echo(f"{'period':<22} {'paid':>14} {'fees':>12} {'slashed':>12} {'net':>14}  OGPU")
    for b in view["buckets"]:
        when = (f"epoch {b['epoch']}" if period == "epoch" else time.strftime(
            "%Y-%m-%d %H:00" if period == "hour" else "%Y-%m-%d",
            time.gmtime(b["startMs"] / 1000)))
        click.echo(f"{when:<22} {b['paidOgpu']:>14} {b['verifierFeesOgpu']:>12} "
                   f"{b['slashedOgpu']:>12} {b['netOgpu']:>14}")
    if not view["buckets"]:
        click.echo(f"nothing paid to or taken from {view['address']} yet")
    elif view["truncated"]:
        click.echo(f"(the latest {limit} {period}s; --limit for more)")


AGENT_DECISIONS_SHOWN = 20
"""Recent decisions `ogpu provider status` prints (`--json` has all the node keeps)."""


def print_agent_decisions(agent: dict[str, Any]) -> None:
    """The node's provider agent: its running jobs and its latest decisions, newest first."""
    for job in agent["jobs"]:
        click.echo(f"running   {job['id'][:12]} (attempt {job['attempt']}) "
                   f"{job['progress'] * 100:.0f}%")
    for model in agent["modelsRefused"]:
        click.echo(f"model     {model['fileId'][:12]} refused: {model['code']}: {model['text']}")
    for d in agent["decisions"][:AGENT_DECISIONS_SHOWN]:
        said = d["text"] if d["outcome"] else f"{d['code']}: {d['text']}"
        click.echo(f"{d['code'] if d['outcome'] else 'skipped':<9} {d['taskId'][:12]} "
                   f"({d['kind']}, attempt {d['attempt']}, block {d['height']}): {said}")


@provider.command("earnings")
@click.argument("address", required=False)
@click.option("--by", "period", type=click.Choice(["hour", "day", "epoch"]), default=None,
              help="Per hour or day of block time, or per epoch, newest first (default: "
                   "totals).")
@click.option("--limit", type=click.IntRange(1, 1000), default=30, show_default=True,
              help="Periods shown with --by.")
@KEY_OPTION
@DEV_OPTION
@JSON_OPTION
@click.pass_obj
@handle_errors
def provider_earnings(rpc: str, address: str | None, period: str | None, limit: int,
                      key_path: Path | None, dev_account: int | None, as_json: bool) -> None:
    """What a provider was paid for work and as a verifier, and what it was slashed."""
    if period is not None:
        print_earnings_by_period(rpc, address, key_path, dev_account, period, limit, as_json)
        return
    view = _provider_view(rpc, address, key_path, dev_account)
    earnings = {"address": view["address"], "height": view["height"], **view["earnings"]}
    if as_json:
        emit(earnings, True)
        return
    net = (int(earnings["earned"]) + int(earnings["verifierFees"])
           - int(earnings["slashed"]))
    emit({"address": view["address"],
          "earned": f"{earnings['earnedOgpu']} OGPU from {earnings['paidTasks']} task(s)",
          "verifier fees": f"{earnings['verifierFeesOgpu']} OGPU",
          "slashed": f"{earnings['slashedOgpu']} OGPU",
          "net": f"{format_amount(net)} OGPU",
          "height": str(view["height"])}, False)
