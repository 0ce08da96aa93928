"""The engine of `NetTrainSpec` (workload kind 5): layers with their forward and backward passes
(`layers`), losses (`losses`), optimisers (`optim`) and the network that strings them together
over one flat parameter buffer (`network`), written once against the device's array module
`xp` (NumPy or CuPy) and deterministic: no atomics, no reductions whose order depends on
scheduling, dropout masks drawn on the host from (seed, step, layer).
"""
