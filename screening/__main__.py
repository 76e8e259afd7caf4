"""`python -m screening` is `screening`."""

import sys

from screening.cli import main

sys.exit(main())
