"""``python -m p2pdoc``: the content-addressing command line (see :mod:`p2pdoc.content.cli`)."""

from p2pdoc.content.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
