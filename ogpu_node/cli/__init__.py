"""Command-line interfaces: `ogpu-node` for operators, `ogpu` for users."""
