"""`python -m desktop.tray`: the tray without loading the other CLI commands' modules."""

import sys

from desktop.cli.tray import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
