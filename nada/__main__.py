"""``python -m nada``: the command line."""

from .cli import main

raise SystemExit(main())
