"""``python -m gaussmix`` runs the command-line tool."""

from .cli import main

raise SystemExit(main())
