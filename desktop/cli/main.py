"""Entry point of `permacloud`: builds the parser from the command modules and maps errors.

Each command module exposes `register(subparsers)` and sets `func` on its parser; a command
returns an exit code. `PermaCloudError` becomes a one-line message and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from desktop import __version__
from desktop.core.errors import PermaCloudError
from desktop.memory import bound_allocator

# Command name -> module registering it. Only the module of the command being run is imported,
# so light processes (the tray) never load the engine; `--help` imports them all.
COMMANDS: dict[str, str] = {
    "init": "account",
    "invite": "account",
    "join": "account",
    "daemon": "daemon_cmd",
    "ls": "files",
    "mkdir": "files",
    "mv": "files",
    "rm": "files",
    "versions": "files",
    "restore": "files",
    "share": "files",
    "status": "files",
    "nodes": "files",
    "node": "node",
    "tray": "tray",
    "install-desktop": "desktop_install",
    "uninstall-desktop": "desktop_install",
    "demo": "demo",
    "put": "transfer",
    "get": "transfer",
    "agent": "agent",
    "mount": "mount",
    "unmount": "mount",
    "check": "health",
    "repair": "health",
    "sync": "sync_cmd",
}


def _modules_for(argv: Sequence[str]) -> list[ModuleType]:
    wanted = next((a for a in argv if not a.startswith("-")), None)
    names = [COMMANDS[wanted]] if wanted in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    return [importlib.import_module(f"desktop.cli.{name}") for name in names]


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="permacloud",
        description="Permanent, self-hosted cloud storage for the desktop.",
    )
    parser.add_argument("--version", action="version", version=f"permacloud {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _modules_for(argv):
        module.register(subparsers)
    return parser


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    bound_allocator()
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
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
    except BrokenPipeError:
        # The reader (`| head`, `| grep -q`) left: not an error worth a line. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as error:
        print(
            f"permacloud: error: {error.strerror or error}"
            + (f": {error.filename}" if error.filename else ""),
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
