"""`python -m app.cli` is `preflab`."""

import sys

from app.cli import main

sys.exit(main())
