"""What a task asks a provider to compute, in pure Python: workload specs (`spec`) and the
protocol's limits on them (`limits`).

Both the ledger (pricing a task, checking its limits, bid rules) and `gpu/` (running and
verifying it) import this package; it imports neither, nor NumPy, so the state machine stays
pure and `gpu/` depends on the node's foundations and not the other way round.
"""
