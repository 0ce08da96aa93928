"""The node daemon: mempool, block production, consensus driving, sync."""
