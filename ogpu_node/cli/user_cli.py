"""`ogpu`: the user's command line. Network commands talk JSON-RPC to a node (`--rpc`, env
`OGPU_RPC`, default http://127.0.0.1:8545)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import click

from ogpu_node.address import address_from_text, address_to_text
from ogpu_node.cli.common import emit, handle_errors
from ogpu_node.cli.gov_cli import gov
from ogpu_node.cli.market_cli import provider, task
from ogpu_node.cli.model_cli import model
from ogpu_node.cli.pool_cli import pool
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
from ogpu_node.keys import PrivateKey, read_key_file, write_key_file
from ogpu_node.ledger import Stake, Transfer, Unstake, sign_transaction
from ogpu_node.ledger.transition import next_epoch_height
from ogpu_node.ledger.tx import Payload
from ogpu_node.sdk import DEFAULT_RPC
from ogpu_node.sdk.sync_client import rpc_call


@click.group()
@click.version_option(package_name="ogpu-node")
@click.option("--rpc", envvar="OGPU_RPC", default=DEFAULT_RPC, show_default=True,
              help="JSON-RPC URL of a node (env OGPU_RPC).")
@click.pass_context
def main(ctx: click.Context, rpc: str) -> None:
    """ogpu: use the OpenGPU Network (accounts, transfers, blocks, validators, GPU tasks,
    models and pools)."""
    ctx.obj = rpc


main.add_command(task)
main.add_command(provider)
main.add_command(model)
main.add_command(pool)
main.add_command(gov)


@main.group()
def account() -> None:
    """Create and inspect account keys."""


@account.command("new")
@click.argument("path", type=click.Path(path_type=Path))
@JSON_OPTION
@handle_errors
def account_new(path: Path, as_json: bool) -> None:
    """Create an account key file at PATH (mode 0600)."""
    key = PrivateKey.generate()
    write_key_file(path, key)
    emit({"file": str(path), "address": address_to_text(key.address)}, as_json)


@account.command("show")
@click.argument("path", type=click.Path(path_type=Path))
@JSON_OPTION
@handle_errors
def account_show(path: Path, as_json: bool) -> None:
    """Show the address of an account key file."""
    key = read_key_file(path)
    emit({"file": str(path), "address": address_to_text(key.address),
          "public_key": key.public_key.raw.hex()}, as_json)


@main.command("sign")
@click.argument("kind", type=click.Choice(["transfer", "stake", "unstake"]))
@click.option("--key", "key_path", type=click.Path(path_type=Path), required=True)
@click.option("--chain-id", required=True)
@click.option("--nonce", type=click.IntRange(0), required=True)
@click.option("--fee", default="0.000001", show_default=True,
              help="Fee in OGPU (offline: at least the chain's min_fee, see `ogpu status`).")
@click.option("--to", default=None, help="Recipient address (transfer).")
@click.option("--amount", required=True, help="Amount in OGPU, e.g. 1.5.")
@JSON_OPTION
@handle_errors
def sign(kind: str, key_path: Path, chain_id: str, nonce: int, fee: str, to: str | None,
         amount: str, as_json: bool) -> None:
    """Sign a transaction offline and print it (hex of its canonical encoding)."""
    value = parse_ogpu(amount)
    payload: Payload
    if kind == "transfer":
        if to is None:
            raise click.UsageError("transfer needs --to")
        payload = Transfer(address_from_text(to), value)
    elif kind == "stake":
        payload = Stake(value)
    else:
        payload = Unstake(value)
    tx = sign_transaction(read_key_file(key_path), chain_id=chain_id, nonce=nonce,
                          fee=parse_ogpu(fee), payload=payload)
    emit({"hash": tx.hash.hex(), "tx": tx.encoded.hex()}, as_json)


# --- network commands ----------------------------------------------------------------------------


@main.command()
@click.argument("address")
@JSON_OPTION
@click.pass_obj
@handle_errors
def balance(rpc: str, address: str, as_json: bool) -> None:
    """Balance, stake and nonce of ADDRESS (finalised state)."""
    address_from_text(address)  # a typo fails here, with the checksum named
    account = rpc_call(rpc, "account_get", {"address": address})
    if as_json:
        emit(account, True)
        return
    emit({"address": account["address"], "balance": f"{account['balanceOgpu']} OGPU",
          "stake": f"{account['stakeOgpu']} OGPU",
          "unbonding": f"{account['unbondingTotalOgpu']} OGPU" + "".join(
              f"; {u['amountOgpu']} OGPU returns at height {u['releaseHeight']}"
              for u in account["unbonding"]),
          "nonce": str(account["nonce"]), "height": str(account["height"])}, False)


@main.command()
@click.option("--to", required=True, help="Recipient address (ogpu1...).")
@click.option("--amount", required=True, help="Amount in OGPU, e.g. 1.5.")
@click.option("--fee", default="0.000001", show_default=True, help="Fee in OGPU.")
@KEY_OPTION
@DEV_OPTION
@click.option("--no-wait", is_flag=True, help="Return once the node accepted it.")
@click.option("--timeout", type=click.FloatRange(1, 120), default=30, show_default=True)
@JSON_OPTION
@click.pass_obj
@handle_errors
def transfer(rpc: str, to: str, amount: str, fee: str | None, key_path: Path | None,
             dev_account: int | None, no_wait: bool, timeout: float, as_json: bool) -> None:
    """Send OGPU and wait until the transfer is final (unless --no-wait)."""
    payload = Transfer(address_from_text(to), parse_ogpu(amount))
    report(send(rpc, signer(key_path, dev_account), payload, fee, not no_wait, timeout), as_json)


@main.command()
@click.argument("tx_hash")
@JSON_OPTION
@click.pass_obj
@handle_errors
def tx(rpc: str, tx_hash: str, as_json: bool) -> None:
    """The status of a transaction."""
    emit(rpc_call(rpc, "tx_status", {"hash": tx_hash}), as_json)


@main.command()
@click.argument("height", default="latest")
@JSON_OPTION
@click.pass_obj
@handle_errors
def block(rpc: str, height: str, as_json: bool) -> None:
    """A finalised block (HEIGHT or 'latest')."""
    ref: object = int(height) if height.isdigit() else height
    result = rpc_call(rpc, "chain_getBlock", {"block": ref})
    if as_json:
        emit(result, True)
        return
    emit({k: str(v) for k, v in result.items() if k != "txs"} |
         {"txs": str(len(result.get("txs", [])))}, False)


@main.command()
@JSON_OPTION
@click.pass_obj
@handle_errors
def validators(rpc: str, as_json: bool) -> None:
    """The active validator set."""
    result = rpc_call(rpc, "validators_list")
    if as_json:
        emit({"validators": result}, True)
        return
    for v in result["validators"]:
        click.echo(f"{v['address']}  stake {v['stakeOgpu']} OGPU")


@main.command()
@JSON_OPTION
@click.pass_obj
@handle_errors
def status(rpc: str, as_json: bool) -> None:
    """The node's chain status."""
    emit(rpc_call(rpc, "chain_status"), as_json)


# --- staking -------------------------------------------------------------------------------------


def staking_terms(rpc: str, result: Mapping[str, object], unstake: bool) -> dict[str, object]:
    """When a final stake or unstake takes effect: the epoch boundary whose validator set it
    changes and, for an unstake, the height its funds return to the balance (empty while the
    transaction is not final)."""
    height = result.get("height")
    if result.get("state") != "finalized" or not isinstance(height, int):
        return {}
    terms = rpc_call(rpc, "validators_list")
    out: dict[str, object] = {
        "epochBoundary": next_epoch_height(height, terms["epochLength"]),
        "minValidatorStake": terms["minValidatorStake"],
        "minValidatorStakeOgpu": terms["minValidatorStakeOgpu"]}
    if unstake:
        out["releaseHeight"] = height + terms["unbondingPeriod"]
    return out


def _stake_command(unstake: bool, rpc: str, amount: str, fee: str | None, key_path: Path | None,
                   dev_account: int | None, no_wait: bool, timeout: float, as_json: bool
                   ) -> None:
    key = signer(key_path, dev_account)
    payload = Unstake(parse_ogpu(amount)) if unstake else Stake(parse_ogpu(amount))
    result = send(rpc, key, payload, fee, not no_wait, timeout)
    terms = staking_terms(rpc, result, unstake)
    if as_json:
        report(result | terms, True)
        return
    report(result, False)
    if not terms:
        click.echo("its effect is known once final: check `ogpu balance` and `ogpu validators`")
        return
    account = rpc_call(rpc, "account_get", {"address": address_to_text(key.address)})
    boundary = int(str(terms["epochBoundary"]))
    if unstake:
        click.echo(f"unbonding {amount} OGPU: it stops counting at the epoch boundary at height "
                   f"{boundary} and returns to the balance at height {terms['releaseHeight']}")
    elif int(account["stake"]) >= int(str(terms["minValidatorStake"])):
        click.echo(f"stake {account['stakeOgpu']} OGPU counts from the epoch boundary at height "
                   f"{boundary}: this key validates from block {boundary + 1}")
    else:
        click.echo(f"stake {account['stakeOgpu']} OGPU is bonded, below the validator minimum of "
                   f"{terms['minValidatorStakeOgpu']} OGPU: not a validator until it reaches it")


def _stake_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options `stake` and `unstake` share (those of `transfer`, less --to)."""
    for option in (JSON_OPTION, TIMEOUT_OPTION,
                   click.option("--no-wait", is_flag=True,
                                help="Return once the node accepted it."),
                   DEV_OPTION, KEY_OPTION, FEE_OPTION, click.argument("amount")):
        command = option(command)
    return command


@main.command("stake")
@_stake_options
@click.pass_obj
@handle_errors
def stake(rpc: str, amount: str, fee: str | None, key_path: Path | None, dev_account: int | None,
          no_wait: bool, timeout: float, as_json: bool) -> None:
    """Bond AMOUNT OGPU of the sender's balance as validator stake. It counts for the validator
    set from the next epoch boundary, once the account's stake reaches the minimum."""
    _stake_command(False, rpc, amount, fee, key_path, dev_account, no_wait, timeout, as_json)


@main.command("unstake")
@_stake_options
@click.pass_obj
@handle_errors
def unstake(rpc: str, amount: str, fee: str | None, key_path: Path | None, dev_account: int | None,
            no_wait: bool, timeout: float, as_json: bool) -> None:
    """Start unbonding AMOUNT OGPU of stake: it leaves the validator set's weight at the next
    epoch boundary and returns to the balance after the unbonding period."""
    _stake_command(True, rpc, amount, fee, key_path, dev_account, no_wait, timeout, as_json)
