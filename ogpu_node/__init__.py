"""ogpu_node."""
