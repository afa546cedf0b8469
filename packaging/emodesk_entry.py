"""The bundle's entry point: the same ``emodesk`` command a source install gets."""

import sys

from emodesk.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
