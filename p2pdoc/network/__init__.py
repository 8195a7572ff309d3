"""Transport seam and its implementations (libp2p and in-memory)."""
