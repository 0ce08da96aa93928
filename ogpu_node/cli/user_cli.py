"""`ogpu`: the user's command line (keys and offline signing now; network commands with the RPC)."""

from __future__ import annotations

from pathlib import Path

import click

from ogpu_node.address import address_from_text, address_to_text
from ogpu_node.cli.common import emit, handle_errors
from ogpu_node.keys import PrivateKey, read_key_file, write_key_file
from ogpu_node.ledger import Stake, Transfer, Unstake, sign_transaction
from ogpu_node.ledger.tx import Payload
from ogpu_node.types import Address, Amount, parse_amount

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group()
@click.version_option(package_name="ogpu-node")
def main() -> None:
    """ogpu: use the OpenGPU Network (accounts, transfers, tasks)."""


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


def _amount(text: str) -> Amount:
    try:
        return parse_amount(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _address(text: str) -> Address:
    return address_from_text(text)


@main.command("sign")
@click.argument("kind", type=click.Choice(["transfer", "stake", "unstake"]))
@click.option("--key", "key_path", type=click.Path(path_type=Path), required=True)
@click.option("--chain-id", required=True)
@click.option("--nonce", type=click.IntRange(0), required=True)
@click.option("--fee", default="0.000001", show_default=True, help="Fee in OGPU.")
@click.option("--to", default=None, help="Recipient address (transfer).")
@click.option("--amount", required=True, help="Amount in OGPU, e.g. 1.5.")
@JSON_OPTION
@handle_errors
def sign(kind: str, key_path: Path, chain_id: str, nonce: int, fee: str, to: str | None,
         amount: str, as_json: bool) -> None:
    """Sign a transaction offline and print it (hex of its canonical encoding)."""
    value = _amount(amount)
    payload: Payload
    if kind == "transfer":
        if to is None:
            raise click.UsageError("transfer needs --to")
        payload = Transfer(_address(to), value)
    elif kind == "stake":
        payload = Stake(value)
    else:
        payload = Unstake(value)
    tx = sign_transaction(read_key_file(key_path), chain_id=chain_id, nonce=nonce,
                          fee=_amount(fee), payload=payload)
    emit({"hash": tx.hash.hex(), "tx": tx.encoded.hex()}, as_json)
