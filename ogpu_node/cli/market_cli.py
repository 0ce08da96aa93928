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
from gpu.inputs import InputsError, check_inputs, encode_inputs
from ogpu_node.address import address_from_text, address_to_text
from ogpu_node.cli.common import emit, handle_errors
from ogpu_node.cli.sending import (
    DEV_OPTION,
    FEE_OPTION,
    JSON_OPTION,
    KEY_OPTION,
    TIMEOUT_OPTION,
    parse_ogpu,
    report,
    send,
    signer,
)
from ogpu_node.encoding import encode
from ogpu_node.ledger.market.payloads import CancelTask, RegisterProvider, SubmitTask
from ogpu_node.ledger.market.records import MAX_DEVICE_NAME, MAX_DEVICES, Device, TaskStatus
from ogpu_node.result_crypto import open_output
from ogpu_node.rpc_client import (
    RpcCallError,
    Subscription,
    download_file,
    rpc_call,
    upload_file,
)
from ogpu_node.types import Amount, Hash32, format_amount
from ogpu_node.workloads.kinds import SPEC_TYPES, WorkloadSpec, decode_spec
from ogpu_node.workloads.limits import input_shapes
from ogpu_node.workloads.spec import WorkloadKind

EXIT_NOT_COMPLETED = 3
"""`ogpu task watch`: the task closed for another reason than `completed`."""
TASK_KEYS = ("kind", "max_price", "min_benchmark", "exec_s", "ttl_s", "inputs")
DEFAULTS: dict[str, Any] = {"min_benchmark": 0, "exec_s": 60, "ttl_s": 600, "seed": 0}
NOT_FOUND = -32001
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
    seconds = {}
    for name in ("exec_s", "ttl_s"):
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise click.UsageError(f"{name}: expected seconds > 0, got {value!r}")
        seconds[name] = round(value * 1000)
    return SubmitTask(kind, encode(spec), parse_price(values["max_price"]),
                      _int_field("min_benchmark", values["min_benchmark"]),
                      seconds["exec_s"], seconds["ttl_s"])


def load_task_file(path: Path) -> dict[str, Any]:
    """The fields of a TOML task file; an `inputs` path is taken relative to the file."""
    try:
        raw = path.read_bytes()
        if len(raw) > MAX_TASK_FILE:
            raise click.UsageError(f"{path}: a task file is at most {MAX_TASK_FILE} bytes")
        fields = tomllib.loads(raw.decode())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise click.UsageError(f"cannot read task file {path}: {exc}") from exc
    if "inputs" in fields:
        if not isinstance(fields["inputs"], str):
            raise click.UsageError(f"inputs: expected a file path, got {fields['inputs']!r}")
        fields["inputs"] = path.parent / fields["inputs"]
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


def trail_table(view: dict[str, Any]) -> Table:
    table = Table(title=f"money trail of task {view['id']}")
    table.add_column("event")
    table.add_column("address")
    table.add_column("OGPU", justify="right")
    for line in view["trail"]:
        table.add_row(line["event"], line["address"], line["amountOgpu"])
    return table


def _task_or_pending(rpc: str, task_id: str) -> dict[str, Any] | None:
    """The task's view; None when its submission is not final yet; an error when unknown."""
    try:
        view: dict[str, Any] = rpc_call(rpc, "task_get", {"taskId": task_id})
        return view
    except RpcCallError as exc:
        if exc.code != NOT_FOUND:
            raise
    receipt = rpc_call(rpc, "tx_status", {"hash": task_id})
    if receipt["state"] != "pending":
        raise RpcCallError(f"no task {task_id} (its submission is {receipt['state']})")
    return None


def watch_task(rpc: str, task_id: str, as_json: bool, idle_timeout: float | None) -> int:
    """Follow a task until it closes; print the final view or the trail; the exit status."""
    view = _task_or_pending(rpc, task_id)
    console = _console()
    display = None if as_json else WatchDisplay(console)
    try:
        if view is None or view["status"] != "closed":
            params = {"kind": "task", "taskId": task_id}
            with Subscription(rpc, params, idle_timeout=idle_timeout) as subscription:
                for update in subscription:
                    view = update
                    if display is not None:
                        display.update(update)
                    if update["status"] == "closed":
                        break
        elif display is not None:
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
    return 0 if view["closeReason"] == "completed" else EXIT_NOT_COMPLETED


# --- task commands ------------------------------------------------------------------------------


@click.group()
def task() -> None:
    """Submit, watch and manage GPU tasks."""


def _check_task_id(task_id: str) -> str:
    text = task_id.removeprefix("0x")
    try:
        if len(bytes.fromhex(text)) == 32:
            return text
    except ValueError:
        pass
    raise click.BadParameter(f"a task id is 64 hex digits, got {task_id!r}")


@task.command("submit")
@click.option("--file", "task_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="A TOML task file (kind, spec fields, max_price, ...).")
@click.option("--kind", type=click.Choice(["matmul", "train", "infer"]), default=None)
@click.option("--n", type=click.IntRange(1), default=None, help="matmul: matrix size.")
@click.option("--seed", type=click.IntRange(0), default=None)
@click.option("--model", default=None, help="infer: a registered model name.")
@click.option("--batch", type=click.IntRange(1), default=None)
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
                   "(matmul), x, labels (train) or x (infer).")
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
def task_submit(rpc: str, /, task_file: Path | None, key_path: Path | None,
                dev_account: int | None, fee: str, timeout: float, watch: bool, as_json: bool,
                **flags: Any) -> None:
    """Submit a task (escrows its budget) and print its id; the exit status is 0 once final."""
    fields = load_task_file(task_file) if task_file is not None else {}
    fields |= {name: value for name, value in flags.items() if value is not None}
    inputs = fields.pop("inputs", None)
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


@task.command("result")
@click.argument("task_id")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              required=True, help="Where to write the output file.")
@KEY_OPTION
@DEV_OPTION
@JSON_OPTION
@click.pass_obj
@handle_errors
def task_result(rpc: str, task_id: str, output: Path, key_path: Path | None,
                dev_account: int | None, as_json: bool) -> None:
    """Download the output of TASK_ID's result, checked against its file id, and open it with
    the client's key (--key or --dev-account): results are sealed until they are paid."""
    view = rpc_call(rpc, "task_get", {"taskId": _check_task_id(task_id)})
    result = view.get("result")
    if result is None:
        raise RpcCallError(f"task {view['id']} has no result (it is {view['status']})")
    key = signer(key_path, dev_account)
    if address_to_text(key.address) != view["client"]:
        raise click.UsageError(f"only the task's client ({view['client']}) can open its result")
    data = open_output(key, view, download_file(rpc, result["outputId"]))
    tmp = output.with_name(output.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(output)
    emit({"file": str(output), "size": len(data), "fileId": result["outputId"]}, as_json)


@task.command("cancel")
@click.argument("task_id")
@KEY_OPTION
@DEV_OPTION
@FEE_OPTION
@TIMEOUT_OPTION
@JSON_OPTION
@click.pass_obj
@handle_errors
def task_cancel(rpc: str, task_id: str, key_path: Path | None, dev_account: int | None,
                fee: str, timeout: float, as_json: bool) -> None:
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
@KEY_OPTION
@DEV_OPTION
@FEE_OPTION
@TIMEOUT_OPTION
@JSON_OPTION
@click.pass_obj
@handle_errors
def provider_register(rpc: str, devices: tuple[str, ...], benchmark: int, floor: str,
                      stake: str, key_path: Path | None, dev_account: int | None, fee: str,
                      timeout: float, as_json: bool) -> None:
    """Register (or update) a provider that is not run by a node's agent: declare devices,
    benchmark and price floor, and bond stake."""
    if len(devices) > MAX_DEVICES:
        raise click.UsageError(f"at most {MAX_DEVICES} devices")
    payload = RegisterProvider(tuple(parse_device(d) for d in devices), benchmark,
                               parse_price(floor, "floor"), parse_ogpu(stake))
    report(send(rpc, signer(key_path, dev_account), payload, fee, True, timeout), as_json)


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
    if as_json:
        emit(view, True)
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


@provider.command("earnings")
@click.argument("address", required=False)
@KEY_OPTION
@DEV_OPTION
@JSON_OPTION
@click.pass_obj
@handle_errors
def provider_earnings(rpc: str, address: str | None, key_path: Path | None,
                      dev_account: int | None, as_json: bool) -> None:
    """What a provider was paid for work and as a verifier, and what it was slashed."""
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
