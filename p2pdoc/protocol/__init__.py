"""Sessions between admitted peers: admission, pipelined requests, block exchange, offers.

Works over any :class:`trio.abc.Stream`; imports nothing from libp2p.
"""
