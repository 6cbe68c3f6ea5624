"""``python -m nitrokit`` runs the ``nitrokit`` command line."""

from nitrokit.cli import main

raise SystemExit(main())
