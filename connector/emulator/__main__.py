"""``python -m connector.emulator``: see `connector.emulator.serve.main`."""

from .serve import main

raise SystemExit(main())
