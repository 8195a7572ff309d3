"""Pure functions over bytes: canonical CBOR, wire frames, multiformats and CIDs.

Nothing in this package performs I/O or imports trio or libp2p.
"""
