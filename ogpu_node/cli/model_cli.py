"""`ogpu model ...`: register ONNX models of your own, and read the registry.

`ogpu model register FILE.onnx --name NAME` inspects the file here (`gpu.onnx_models`: the
same rules every provider applies, so a model the network would refuse is refused before
anything is uploaded or paid), uploads it, sends `REGISTER_MODEL` (which burns the registration
fee) and prints the model id once final. `--from-task TASK_ID` takes the model from a finished
network training (train_net) instead: its result is opened with the client's key and exported
to ONNX (`gpu.onnx_export`), so one command goes from training to a registered model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ogpu_node.address import address_from_text
from ogpu_node.cli.array_files import parse_model_id, tensors_text, write_file
from ogpu_node.cli.common import emit, handle_errors, require_onnx
from ogpu_node.cli.market_cli import opened_result, trained_net
from ogpu_node.cli.sending import (
    JSON_OPTION,
    report,
    send,
    send_options,
    signer,
)
from ogpu_node.ledger.market.payloads import RegisterModel
from ogpu_node.sdk.sync_client import rpc_call, upload_file
from ogpu_node.types import Hash32
from ogpu_node.workloads.models import MAX_MODEL_BYTES, MAX_MODEL_NAME, ModelInfo


@click.group()
def model() -> None:
    """Register ONNX models of your own and look them up."""


def check_name(name: str) -> str:
    """A model's name as the chain takes it: 1..MAX_MODEL_NAME printable characters."""
    if not 1 <= len(name) <= MAX_MODEL_NAME or not name.isprintable():
        raise click.BadParameter(f"a model name is 1..{MAX_MODEL_NAME} printable characters, "
                                 f"got {name!r}", param_hint="--name")
    return name


def read_model_file(path: Path) -> bytes:
    """The bytes of an ONNX file, refused unread when it is over MAX_MODEL_BYTES."""
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise click.UsageError(f"model file {path} is {size:,} bytes; a model is at most "
                                   f"{MAX_MODEL_BYTES:,}")
        return path.read_bytes()
    except OSError as exc:
        raise click.UsageError(f"cannot read model file {path}: {exc}") from exc


def inspected(data: bytes) -> ModelInfo:
    """The model's info, or the reason the network refuses it (`ModelRefused`, exit 1)."""
    from gpu.onnx_models import inspect_model  # onnx loads in 0.7 s: only when needed

    return inspect_model(data)


@model.command("register")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.option("--name", required=True, help=f"The model's name (1..{MAX_MODEL_NAME} "
                                            "printable characters; not unique: ids are).")
@click.option("--from-task", "task_id", default=None,
              help="Register the network a finished train_net task trained (you must be its "
                   "client) instead of FILE.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="--from-task: also write the exported ONNX file here.")
@send_options
@click.pass_obj
@handle_errors
def model_register(rpc: str, file: Path | None, name: str, task_id: str | None,
                   output: Path | None, key_path: Path | None, dev_account: int | None,
                   fee: str | None, timeout: float, as_json: bool) -> None:
    """Register an ONNX model (FILE, or --from-task TASK_ID) and print its id once final.

    \b
    The file is inspected here first; a model the network would refuse (operators outside
    the allowed set, a fixed batch dimension, costs over the caps, ...) is refused with the
    reason before anything is uploaded. Registering burns the registration fee.
    \b
      ogpu model register digits.onnx --name digits-cnn --key me.json
      ogpu model register --from-task TASK_ID --name my-net -o my-net.onnx --key me.json
    """
    check_name(name)
    if file is not None and task_id is not None:
        raise click.UsageError("give FILE or --from-task TASK_ID, not both")
    if output is not None and task_id is None:
        raise click.UsageError("-o writes the model exported from --from-task; FILE is "
                               "already a file")
    require_onnx("ogpu model register")
    key = signer(key_path, dev_account)
    if file is not None:
        data = read_model_file(file)
    elif task_id is not None:
        from gpu.onnx_export import export_onnx

        view, weights = opened_result(rpc, task_id, key_path, dev_account)
        data = export_onnx(trained_net(view), weights)
        if output is not None:
            write_file(output, data)
    else:
        raise click.UsageError("give FILE or --from-task TASK_ID")
    info = inspected(data)
    file_id = Hash32(upload_file(rpc, data))
    receipt = send(rpc, key, RegisterModel(name, file_id, info), fee, True, timeout)
    if receipt.get("state") != "finalized":
        report(receipt, as_json)
        return
    emit({"modelId": receipt["hash"], "height": receipt["height"], "name": name,
          "fileId": file_id.hex(), "fileBytes": info.file_bytes,
          "inputs": tensors_text(info.inputs), "outputs": tensors_text(info.outputs),
          "flopsPerRow": info.flops_per_row, "workUnitsPerRow": info.work_units(1),
          **({"onnx": str(output)} if output is not None else {})}, as_json)


def _tensors(tensors: list[dict[str, Any]]) -> str:
    return ", ".join(f"{t['name']} {t['elemType']} rows of {'x'.join(map(str, t['shape']))}"
                     for t in tensors)


@model.command("get")
@click.argument("model_id")
@click.option("--batch", type=click.IntRange(1, 65_536), default=1, show_default=True,
              help="Also show the work units of a request of this many rows.")
@JSON_OPTION
@click.pass_obj
@handle_errors
def model_get(rpc: str, model_id: str, batch: int, as_json: bool) -> None:
    """A registered model: owner, file, inputs and outputs, what a row costs."""
    view = rpc_call(rpc, "model_get", {"modelId": parse_model_id(model_id).hex(),
                                       "batch": batch})
    if as_json:
        emit(view, True)
        return
    info = view["info"]
    emit({"id": view["id"], "name": view["name"], "owner": view["owner"],
          "file": f"{view['fileId']} ({info['fileBytes']:,} bytes, opset {info['opset']})",
          "registered": f"at {view['registeredMs']} ms",
          "inputs": _tensors(info["inputs"]), "outputs": _tensors(info["outputs"]),
          "flops per row": f"{info['flopsPerRow']:,}",
          "memory": f"{info['weightBytes']:,} bytes of weights, "
                    f"{info['activationBytesPerRow']:,} of activations per row",
          "work units": f"{info['workUnitsPerRow']} per row, {info['workUnits']} for "
                        f"{info['batch']} row(s)",
          "height": str(view["height"])}, False)


@model.command("list")
@click.option("--owner", default=None, help="Only models registered by this address.")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@JSON_OPTION
@click.pass_obj
@handle_errors
def model_list(rpc: str, owner: str | None, limit: int, as_json: bool) -> None:
    """Registered models, newest first."""
    if owner is not None:
        address_from_text(owner)
    listed = rpc_call(rpc, "model_list", {"owner": owner, "limit": limit})
    if as_json:
        emit(listed, True)
        return
    click.echo(f"{len(listed['models'])} of {listed['total']} model(s) at height "
               f"{listed['height']}, newest first")
    for row in listed["models"]:
        click.echo(f"{row['id']}  {row['name']:<24}  {row['workUnitsPerRow']} unit(s)/row  "
                   f"{row['flopsPerRow']:,} flops/row  {row['fileBytes']:,} bytes  "
                   f"{row['owner']}")
