"""`ogpu pool ...`: inference pools, for a registered model (by id) or a built-in one (by name).

The owner opens a pool with a budget and a price per request, sends requests (a registered
model's take an inputs file: one array per model input, named as the input, the batch their
rows) and reads the answers, which racers seal for the owner alone
(`result_crypto.open_answer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ogpu_node.address import address_to_text
from ogpu_node.cli.array_files import (
    is_model_id,
    model_request_inputs,
    parse_model_id,
    registered_model,
    write_arrays,
    write_file,
)
from ogpu_node.cli.common import emit, handle_errors, parse_id
from ogpu_node.cli.sending import (
    DEV_OPTION,
    JSON_OPTION,
    KEY_OPTION,
    parse_ogpu,
    report,
    send,
    send_options,
    signer,
)
from ogpu_node.keys import PrivateKey
from ogpu_node.ledger.market.checks import MAX_RACERS
from ogpu_node.ledger.market.payloads import ClosePool, OpenPool, SendRequest, TopUpPool
from ogpu_node.ledger.params import BPS
from ogpu_node.result_crypto import open_answer
from ogpu_node.sdk import RpcCallError, TxReceipt
from ogpu_node.sdk.sync_client import download_file, rpc_call, upload_file
from ogpu_node.types import Hash32
from ogpu_node.workloads.spec import MAX_BATCH

DEFAULT_MEMBER_BOND = "10"
"""OGPU each member of a pool bonds unless --min-stake says otherwise (the chain takes no
pool without a bond: amounts are at least one base unit)."""


@click.group()
def pool() -> None:
    """Open inference pools, send requests, read the answers."""


def _positive_ogpu(text: str, option: str) -> int:
    """An amount in OGPU of at least one base unit (the chain refuses 0 in every amount)."""
    amount = parse_ogpu(text)
    if amount < 1:
        raise click.BadParameter(f"must be more than 0 OGPU, got {text!r}", param_hint=option)
    return amount


def _owned_pool(rpc: str, pool_id: Hash32, key: PrivateKey) -> dict[str, Any]:
    """`pool_get` of a pool whose owner is `key`'s address."""
    view: dict[str, Any] = rpc_call(rpc, "pool_get", {"poolId": pool_id.hex()})
    if view["owner"] != address_to_text(key.address):
        raise click.UsageError(f"only the pool's owner ({view['owner']}) can do this")
    return view


def _finalized(receipt: TxReceipt, as_json: bool) -> bool:
    if receipt.get("state") == "finalized":
        return True
    report(receipt, as_json)
    return False


@pool.command("open")
@click.option("--model", "model_ref", required=True,
              help="A registered model's id (64 hex digits) or a built-in model's name.")
@click.option("--max-batch", type=click.IntRange(1, MAX_BATCH), required=True,
              help="The most rows one request may have.")
@click.option("--price", required=True, help="OGPU paid per answered request.")
@click.option("--budget", required=True, help="OGPU escrowed for the pool's requests.")
@click.option("--racers", type=click.IntRange(1, MAX_RACERS), default=2, show_default=True,
              help="Members racing each request.")
@click.option("--sample-bps", type=click.IntRange(0, BPS), default=500, show_default=True,
              help="Share of the answers a committee checks, in basis points.")
@click.option("--min-stake", default=DEFAULT_MEMBER_BOND, show_default=True,
              help="OGPU each member bonds (a wrong answer costs it the bond).")
@click.option("--request-s", type=click.IntRange(1), default=60, show_default=True,
              help="Seconds a request may wait for its answer.")
@click.option("--ttl-s", type=click.IntRange(1), default=86_400, show_default=True,
              help="Seconds the pool stays open.")
@send_options
@click.pass_obj
@handle_errors
def pool_open(rpc: str, model_ref: str, max_batch: int, price: str, budget: str, racers: int,
              sample_bps: int, min_stake: str, request_s: int, ttl_s: int,
              key_path: Path | None, dev_account: int | None, fee: str | None, timeout: float,
              as_json: bool) -> None:
    """Open a pool (escrows its budget) and print its id once final.

    \b
      ogpu pool open --model MODEL_ID --max-batch 256 --price 0.01 --budget 5 --key me.json
    """
    amounts = (_positive_ogpu(price, "--price"), _positive_ogpu(budget, "--budget"))
    bond = _positive_ogpu(min_stake, "--min-stake")
    name, model_id = model_ref, b""
    if is_model_id(model_ref):
        model_id = parse_model_id(model_ref)
        registered_model(rpc, model_id)  # an unknown id fails here, named
        name = ""
    payload = OpenPool(name, max_batch, *amounts, racers, sample_bps, bond, request_s * 1000,
                       ttl_s * 1000, model_id)
    receipt = send(rpc, signer(key_path, dev_account), payload, fee, True, timeout)
    if _finalized(receipt, as_json):
        emit({"poolId": receipt["hash"], "height": receipt["height"]}, as_json)


@pool.command("request")
@click.argument("pool_id")
@click.option("--inputs", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A registered model's pool: an .npz with one array per model input, named "
                   "as the input; the batch is their rows.")
@click.option("--batch", type=click.IntRange(1, MAX_BATCH), default=None,
              help="Rows (a built-in model's pool; with --inputs it only checks them).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="A built-in model's pool: the seed its inputs are generated from.")
@send_options
@click.pass_obj
@handle_errors
def pool_request(rpc: str, pool_id: str, inputs: Path | None, batch: int | None, seed: int,
                 key_path: Path | None, dev_account: int | None, fee: str | None, timeout: float,
                 as_json: bool) -> None:
    """Send one request to POOL_ID (you must own it) and print the request id once final.

    \b
      ogpu pool request POOL_ID --inputs rows.npz --key me.json
    """
    key = signer(key_path, dev_account)
    pid = parse_id(pool_id, "pool")
    view = _owned_pool(rpc, pid, key)
    if view["closed"]:
        raise click.UsageError(f"pool {pid.hex()} is closed")
    file_id = b""
    if view["modelId"] is not None:
        if inputs is None:
            raise click.UsageError("a registered model's pool needs --inputs data.npz")
        model_id = parse_model_id(view["modelId"])
        _, info = registered_model(rpc, model_id)
        batch, raw = model_request_inputs(inputs, model_id, info, batch)
        if batch > view["maxBatch"]:
            raise click.UsageError(f"{batch} rows; the pool takes at most {view['maxBatch']}")
        file_id = upload_file(rpc, raw)
    elif inputs is not None or batch is None:
        raise click.UsageError("a built-in model's pool generates its inputs from --seed: "
                               "give --batch, not --inputs")
    payload = SendRequest(pid, seed, batch, file_id)
    receipt = send(rpc, key, payload, fee, True, timeout)
    if _finalized(receipt, as_json):
        emit({"requestId": receipt["hash"], "poolId": pid.hex(), "batch": batch,
              "height": receipt["height"]}, as_json)


@pool.command("answer")
@click.argument("pool_id")
@click.argument("request_id")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              required=True, help="Where to write the answer: its arrays as NumPy's .npz when "
                                  "the name ends in .npz, else the file as it is.")
@KEY_OPTION
@DEV_OPTION
@JSON_OPTION
@click.pass_obj
@handle_errors
def pool_answer(rpc: str, pool_id: str, request_id: str, output: Path, key_path: Path | None,
                dev_account: int | None, as_json: bool) -> None:
    """Download the answer to REQUEST_ID, checked against its file id, and open it with the
    pool owner's key (answers are sealed for the owner alone).

    \b
      ogpu pool answer POOL_ID REQUEST_ID -o answer.npz --key me.json
    """
    key = signer(key_path, dev_account)
    view = _owned_pool(rpc, parse_id(pool_id, "pool"), key)
    rid = parse_id(request_id, "request")
    request = next((r for r in view["requests"] if r["id"] == rid.hex()), None)
    if request is None:
        raise RpcCallError(f"request {rid.hex()} is not among pool {view['id']}'s open and "
                           "most recent requests")
    if request["outputId"] is None or request["key"] is None:
        raise RpcCallError(f"request {rid.hex()} has no answer (it is {request['status']})")
    data = open_answer(key, rid, bytes.fromhex(request["key"]),
                       download_file(rpc, request["outputId"]))
    shown: dict[str, Any] = {"file": str(output), "size": len(data),
                             "fileId": request["outputId"], "status": request["status"]}
    if output.suffix == ".npz":
        shown["arrays"] = ", ".join(write_arrays(output, data))
    else:
        write_file(output, data)
    emit(shown, as_json)


@pool.command("get")
@click.argument("pool_id")
@JSON_OPTION
@click.pass_obj
@handle_errors
def pool_get(rpc: str, pool_id: str, as_json: bool) -> None:
    """A pool's terms, members, requests and totals."""
    view = rpc_call(rpc, "pool_get", {"poolId": parse_id(pool_id, "pool").hex()})
    if as_json:
        emit(view, True)
        return
    model = view["modelName"] or "-"
    if view["modelId"] is not None:
        model += f" ({view['modelId']})"
    emit({"id": view["id"], "owner": view["owner"], "model": model,
          "terms": f"at most {view['maxBatch']} rows, {view['priceOgpu']} OGPU a request, "
                   f"{view['maxRacers']} racer(s), {view['sampleBps'] / 100:g}% checked",
          "escrow": f"{view['escrowOgpu']} OGPU", "members": str(len(view["subscribers"])),
          "requests": ", ".join(f"{r['id'][:12]}.. {r['status']}" for r in view["requests"])
                      or "-",
          "totals": f"{view['served']} served, {view['rejected']} rejected, "
                    f"{view['expired']} expired, {view['paidOgpu']} OGPU paid",
          "status": "closed" if view["closed"] else "open",
          "height": str(view["height"])}, False)


@pool.command("close")
@click.argument("pool_id")
@send_options
@click.pass_obj
@handle_errors
def pool_close(rpc: str, pool_id: str, key_path: Path | None, dev_account: int | None,
               fee: str | None, timeout: float, as_json: bool) -> None:
    """Close POOL_ID (you must own it): open requests expire, the rest is refunded."""
    payload = ClosePool(parse_id(pool_id, "pool"))
    report(send(rpc, signer(key_path, dev_account), payload, fee, True, timeout), as_json)


@pool.command("top-up")
@click.argument("pool_id")
@click.option("--amount", required=True, help="OGPU to add to the pool's escrow.")
@send_options
@click.pass_obj
@handle_errors
def pool_top_up(rpc: str, pool_id: str, amount: str, key_path: Path | None,
                dev_account: int | None, fee: str | None, timeout: float, as_json: bool) -> None:
    """Add --amount OGPU to POOL_ID's escrow (you must own it, and it must be open)."""
    payload = TopUpPool(parse_id(pool_id, "pool"), _positive_ogpu(amount, "--amount"))
    report(send(rpc, signer(key_path, dev_account), payload, fee, True, timeout), as_json)
