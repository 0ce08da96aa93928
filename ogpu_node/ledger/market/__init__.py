"""The GPU task market on the ledger: providers, auctions, escrow, verdicts, settlement."""
