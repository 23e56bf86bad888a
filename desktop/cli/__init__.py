"""The `permacloud` command: a thin layer of argument parsing and rich output."""
