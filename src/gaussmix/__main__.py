"""``python -m gaussmix`` runs the command-line tool."""

from .cli import console_main

raise SystemExit(console_main())
