"""The node's user-facing server: JSON-RPC 2.0 over HTTP and WebSocket, health and metrics.

Nothing is imported here, so that `ogpu_node.rpc.config` (which the configuration reads, and
`ogpu-node` loads before it checks for the node's dependencies) pulls in no server."""
