"""The node's user-facing server: JSON-RPC 2.0 over HTTP and WebSocket, health and metrics."""

from ogpu_node.rpc.config import RpcConfig, RpcConfigError
from ogpu_node.rpc.errors import ErrorCode, RpcError
from ogpu_node.rpc.methods import METHODS
from ogpu_node.rpc.metrics import NodeMetrics
from ogpu_node.rpc.server import RpcAddress, RpcApp, serve_rpc

__all__ = [
    "METHODS", "ErrorCode", "NodeMetrics", "RpcAddress", "RpcApp", "RpcConfig", "RpcConfigError",
    "RpcError", "serve_rpc",
]
