"""`python -m normtheory ...`, the same as the `normtheory` console script."""

import sys

from normtheory.cli import main

sys.exit(main())
