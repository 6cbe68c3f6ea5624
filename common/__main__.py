"""``python -m common`` runs the ``nitrokit`` command line."""

from common.cli import main

raise SystemExit(main())
