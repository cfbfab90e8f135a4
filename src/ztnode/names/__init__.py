"""Names on ZeroTier networks, sans I/O: the unicast DNS client's messages, the DNS server role,
mDNS/DNS-SD and LLMNR engines, the hosts map and the caches.

Why a layer of its own: every engine here is a state machine fed bytes and ``now`` (integer
milliseconds) that returns datagrams to send and deadlines, like the core and the netstack, so
the fake network drives it under a virtual clock and the asyncio adapter
(:mod:`ztnode.sockets.names`) stays thin. DNS messages are dnspython's.
"""
