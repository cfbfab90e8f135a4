"""ztnode: a ZeroTier 1.x node in Python with in-process sockets, a root server and a controller."""

from typing import TYPE_CHECKING

from ztnode import _compiled
from ztnode._version import __version__
from ztnode.errors import (
    AuthenticationError,
    CryptoError,
    DecodeError,
    LocalProtocolError,
    ZtError,
)

# Before anything imports the hot path: compiled, or every module of it from source.
_compiled.install()

if TYPE_CHECKING:
    from ztnode.core import events
    from ztnode.core.events import Event
    from ztnode.identity import Identity
    from ztnode.names.settings import NameSettings
    from ztnode.sockets.aio import EventStream, Network, Node
    from ztnode.sockets.blocking import BlockingNetwork, BlockingNode
    from ztnode.testing.blocking import BlockingLocalWorld
    from ztnode.testing.local import LocalZtWorld
    from ztnode.wire.world import World

__all__ = [
    "AuthenticationError",
    "BlockingLocalWorld",
    "BlockingNetwork",
    "BlockingNode",
    "CryptoError",
    "DecodeError",
    "Event",
    "EventStream",
    "Identity",
    "LocalProtocolError",
    "LocalZtWorld",
    "NameSettings",
    "Network",
    "Node",
    "World",
    "ZtError",
    "__version__",
    "events",
]

# Imported on first use: the sockets layer pulls in the node, the service and the crypto
# backends, which `import ztnode` (and so the CLI's start) should not pay for.
_LAZY = {
    "Event": "ztnode.core.events",
    "EventStream": "ztnode.sockets.aio",
    "Identity": "ztnode.identity",
    "LocalZtWorld": "ztnode.testing.local",
    "NameSettings": "ztnode.names.settings",
    "Network": "ztnode.sockets.aio",
    "Node": "ztnode.sockets.aio",
    "World": "ztnode.wire.world",
    "BlockingLocalWorld": "ztnode.testing.blocking",
    "BlockingNetwork": "ztnode.sockets.blocking",
    "BlockingNode": "ztnode.sockets.blocking",
}


def __getattr__(name: str) -> object:
    if name == "events":  # ``ztnode.events.PeerDirect``: the event classes, as one namespace
        import importlib

        return importlib.import_module("ztnode.core.events")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ztnode' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
