"""p2pdoc: peer-to-peer exchange of signed official documents between agencies."""

__version__ = "0.1.0"
