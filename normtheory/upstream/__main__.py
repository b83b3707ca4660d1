"""`python -m normtheory.upstream [--markdown] [--json OUT]`, the same as `normtheory upstream`."""

import sys

from normtheory.cli import main

if __name__ == "__main__":
    sys.exit(main(["upstream", *sys.argv[1:]]))
