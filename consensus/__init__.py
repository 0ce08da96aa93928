"""Sans-I/O stake-weighted Snowman consensus (see docs/consensus.md).

Time, randomness and messages come in as arguments; decisions and messages to send come out
as values. ``consensus.engine.Engine`` is the entry point; ``consensus.sim`` simulates networks.
"""
