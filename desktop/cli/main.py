"""Entry point of `permacloud`: builds the parser from the command modules and maps errors.

Each command module exposes `register(subparsers)` and sets `func` on its parser; a command
returns an exit code. `PermaCloudError` becomes a one-line message and a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from desktop import __version__
from desktop.cli import account as account_command
from desktop.cli import daemon_cmd as daemon_command
from desktop.cli import demo as demo_command
from desktop.cli import desktop_install as desktop_install_command
from desktop.cli import files as files_command
from desktop.cli import node as node_command
from desktop.cli import transfer as transfer_command
from desktop.cli import tray as tray_command
from desktop.core.errors import PermaCloudError

COMMAND_MODULES: list[ModuleType] = [
    account_command,
    daemon_command,
    files_command,
    node_command,
    tray_command,
    desktop_install_command,
    demo_command,
    transfer_command,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="permacloud",
        description="Permanent, self-hosted cloud storage for the desktop.",
    )
    parser.add_argument("--version", action="version", version=f"permacloud {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except PermaCloudError as error:
        print(f"permacloud: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("permacloud: interrupted", file=sys.stderr)
        return 130
    except OSError as error:
        print(
            f"permacloud: error: {error.strerror or error}"
            + (f": {error.filename}" if error.filename else ""),
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
