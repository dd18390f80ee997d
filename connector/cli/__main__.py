"""`python -m connector.cli` runs the `wandb-history` command."""

import sys

from .app import main

sys.exit(main())
