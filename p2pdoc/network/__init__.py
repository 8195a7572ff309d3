"""Transport seam and its implementations (libp2p and in-memory)."""

from p2pdoc.network.base import Network, StreamHandler
from p2pdoc.network.libp2p import Libp2pConfig, Libp2pNetwork
from p2pdoc.network.memory import Faults, MemoryNetwork, MemoryRouter, RouterStats, memory_addr

__all__ = [
    "Faults",
    "Libp2pConfig",
    "Libp2pNetwork",
    "MemoryNetwork",
    "MemoryRouter",
    "Network",
    "RouterStats",
    "StreamHandler",
    "memory_addr",
]
