"""Array files on the client's side: reading a NumPy `.npz` (or an artifact file) of named
arrays, writing one from a result, and turning arrays into the inputs of a registered model's
request (`ModelInferSpec`) with the model's info as the node shows it (`model_get`).

Every problem is a `click.UsageError` naming the file and what the spec or model wanted, raised
before anything is uploaded or sent.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import click
import numpy as np
import numpy.typing as npt

from gpu.artifacts import MAGIC as ARTIFACT_MAGIC
from gpu.artifacts import MAX_ARTIFACT_BYTES, decode_arrays
from gpu.errors import ArtifactError
from gpu.inputs import InputsError, encode_inputs
from ogpu_node.cli.common import parse_id
from ogpu_node.sdk.sync_client import rpc_call
from ogpu_node.types import HASH_LEN, Hash32
from ogpu_node.workloads.models import ElemType, ModelInferSpec, ModelInfo, TensorInfo
from ogpu_node.workloads.spec import MAX_BATCH

MAX_ARRAY_FILE_BYTES = MAX_ARTIFACT_BYTES
"""The largest array file read, and the most its arrays may hold once decompressed: an inputs
file is an artifact, which is at most this size."""
ELEM_TYPES = {"float32": ElemType.FLOAT, "int64": ElemType.INT64}
PLACEHOLDER_ID = bytes(HASH_LEN)
"""The inputs id of a spec built to check arrays before they are uploaded (and have an id)."""

Arrays = dict[str, npt.NDArray[Any]]


def load_arrays(path: Path, what: str = "inputs file") -> Arrays:
    """The named arrays of `path`: a NumPy `.npz` (`np.savez`; never pickles) or an artifact
    file (`gpu.artifacts`). A file, or decompressed arrays, over MAX_ARRAY_FILE_BYTES are
    refused before they are read."""
    try:
        size = path.stat().st_size
        if size > MAX_ARRAY_FILE_BYTES:
            raise click.UsageError(f"{what} {path} is {size:,} bytes; at most "
                                   f"{MAX_ARRAY_FILE_BYTES:,}")
        with path.open("rb") as handle:
            if handle.read(len(ARTIFACT_MAGIC)) == ARTIFACT_MAGIC:
                return {name: array for name, array in decode_arrays(path.read_bytes())}
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
            if unpacked > MAX_ARRAY_FILE_BYTES:
                raise click.UsageError(f"{what} {path} holds {unpacked:,} bytes of arrays; "
                                       f"at most {MAX_ARRAY_FILE_BYTES:,}")
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except OSError as exc:
        raise click.UsageError(f"cannot read {what} {path}: {exc}") from exc
    except (ValueError, zipfile.BadZipFile, ArtifactError) as exc:
        raise click.UsageError(f"{what} {path} is neither an .npz nor an artifact: "
                               f"{exc}") from exc


def write_arrays(path: Path, artifact: bytes) -> list[str]:
    """Write the arrays of `artifact` to `path` as an uncompressed `.npz`; their names."""
    arrays = decode_arrays(artifact)
    buffer = io.BytesIO()
    named: dict[str, Any] = dict(arrays)  # names like "l0.w" are no keywords: pass a dict
    np.savez(buffer, **named)
    write_file(path, buffer.getvalue())
    return [name for name, _ in arrays]


def write_file(path: Path, data: bytes) -> None:
    """`data` at `path`, written whole or not at all (through a `.part` file)."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


# --- registered models ----------------------------------------------------------------------------


def parse_model_id(text: str) -> Hash32:
    """A model id: 64 hex digits (a `0x` prefix allowed)."""
    return parse_id(text, "model")


def is_model_id(text: str) -> bool:
    """Whether `text` names a registered model by id (a built-in model has a short name)."""
    try:
        parse_model_id(text)
    except click.BadParameter:
        return False
    return True


def _tensor(view: dict[str, Any]) -> TensorInfo:
    return TensorInfo(view["name"], ELEM_TYPES[view["elemType"]], tuple(view["shape"]))


def info_from_view(info: dict[str, Any]) -> ModelInfo:
    """The `ModelInfo` of a `model_get` answer's `info` (it shows every field)."""
    return ModelInfo(file_bytes=info["fileBytes"], opset=info["opset"],
                     inputs=tuple(_tensor(t) for t in info["inputs"]),
                     outputs=tuple(_tensor(t) for t in info["outputs"]),
                     flops_per_row=info["flopsPerRow"], weight_bytes=info["weightBytes"],
                     activation_bytes_per_row=info["activationBytesPerRow"])


def registered_model(rpc: str, model_id: Hash32) -> tuple[dict[str, Any], ModelInfo]:
    """A registered model's `model_get` view and its info (`RpcCallError` when unknown)."""
    view: dict[str, Any] = rpc_call(rpc, "model_get", {"modelId": model_id.hex()})
    return view, info_from_view(view["info"])


def tensors_text(tensors: tuple[TensorInfo, ...]) -> str:
    """`x float32 rows of 3x32x32, ids int64 rows of 16`."""
    return ", ".join(f"{t.name} {'float32' if t.elem is ElemType.FLOAT else 'int64'} rows of "
                     f"{'x'.join(map(str, t.shape)) or 'scalars'}" for t in tensors)


def model_request_inputs(path: Path, model_id: Hash32, info: ModelInfo,
                         batch: int | None) -> tuple[int, bytes]:
    """(rows, inputs file) of a request to the registered model from the arrays in `path`:
    one per model input, named as the input, with the same number of rows (`batch`, when
    given, must be that number)."""
    arrays = load_arrays(path)
    wanted = f"the model takes {tensors_text(info.inputs)}"
    names = sorted(t.name for t in info.inputs)
    if sorted(arrays) != names:
        raise click.UsageError(f"inputs file {path}: arrays {sorted(arrays)}; {wanted}")
    rows = {array.shape[0] if array.ndim else 0 for array in arrays.values()}
    if len(rows) != 1:
        raise click.UsageError(f"inputs file {path}: the arrays have different numbers of rows "
                               f"({', '.join(f'{n} {a.shape}' for n, a in arrays.items())})")
    found = rows.pop()
    if batch is not None and batch != found:
        raise click.UsageError(f"--batch {batch}, but inputs file {path} holds {found} rows")
    if not 1 <= found <= MAX_BATCH:
        raise click.UsageError(f"inputs file {path}: {found} rows; a request takes "
                               f"1..{MAX_BATCH}")
    spec = ModelInferSpec(model_id, found, PLACEHOLDER_ID, info)
    try:
        return found, encode_inputs(spec, arrays)
    except InputsError as exc:
        raise click.UsageError(f"inputs file {path}: {exc} ({wanted})") from exc
