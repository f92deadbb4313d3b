"""``python -m fastmlp`` runs the command line (see :mod:`fastmlp.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
