"""What both CLIs share: error reporting, ids and JSON output."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from ogpu_node.errors import OgpuError
from ogpu_node.types import HASH_LEN, Hash32

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn the node's typed errors into a one-line message and exit status 1, not a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OgpuError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def parse_id(text: str, what: str) -> Hash32:
    """A 32-byte id (a task, pool, request or model id) given as 64 hex digits, `0x` allowed."""
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != HASH_LEN:
        raise click.BadParameter(f"a {what} id is 64 hex digits, got {text!r}")
    return Hash32(raw)


def emit(data: dict[str, Any], as_json: bool) -> None:
    """Print `data` as JSON for scripts, or as aligned `key: value` lines for people."""
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        click.echo(f"{key.ljust(width)}  {value}")


def require_onnx(what: str) -> None:
    """A one-line error naming the extra to install when `what` needs onnx and it is missing
    (the base install, the SDK's, lacks it)."""
    if importlib.util.find_spec("onnx") is None:
        raise click.ClickException(f"{what} needs onnx: pip install 'ogpu-node[onnx]'")
