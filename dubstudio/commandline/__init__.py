"""Sub-commands of the `dubstudio` command line (one module per area)."""
