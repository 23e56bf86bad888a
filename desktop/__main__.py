"""`python -m desktop` is the `permacloud` command."""

from desktop.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
