"""Services that act for the node's key in the market: the provider and the verifier."""
