"""The node: sessions, sending, receiving, status reports, composed over a store and a network."""

from p2pdoc.content.documents import FileSource
from p2pdoc.node.clock import Clock, TrioWallClock
from p2pdoc.node.config import DeliveryConfig, EvidenceConfig, NodeConfig, ReceiveConfig
from p2pdoc.node.context import DocumentSigner, NodeCredentials, NodeTrust
from p2pdoc.node.directory import PeerDirectory, PeerRecord
from p2pdoc.node.node import Node, SendHandle
from p2pdoc.node.receiver import InboxItem
from p2pdoc.node.sender import Document
from p2pdoc.node.status import StatusTrail

__all__ = [
    "Clock",
    "DeliveryConfig",
    "Document",
    "DocumentSigner",
    "EvidenceConfig",
    "FileSource",
    "InboxItem",
    "Node",
    "NodeConfig",
    "NodeCredentials",
    "NodeTrust",
    "PeerDirectory",
    "PeerRecord",
    "ReceiveConfig",
    "SendHandle",
    "StatusTrail",
    "TrioWallClock",
]
