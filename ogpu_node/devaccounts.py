"""Print the well-known devnet accounts and their private keys (as anvil does).

These keys are public knowledge: they exist so that a developer can sign transactions on a local
devnet at once. Never fund them on a real network.
"""

from __future__ import annotations

import argparse

from ogpu_node.address import address_to_text
from ogpu_node.genesis import dev_account_key


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ogpu_node.devaccounts")
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args(argv)
    print("Dev accounts (well-known keys: for local devnets only)")
    for i in range(args.count):
        key = dev_account_key(i)
        print(f"  ({i}) {address_to_text(key.address)}  private key {key.secret_bytes().hex()}")


if __name__ == "__main__":
    main()
