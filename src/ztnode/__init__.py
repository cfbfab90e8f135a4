"""ztnode: a ZeroTier 1.x node in Python with in-process sockets, a root server and a controller."""

from ztnode._version import __version__
from ztnode.errors import (
    AuthenticationError,
    CryptoError,
    DecodeError,
    LocalProtocolError,
    ZtError,
)

__all__ = [
    "AuthenticationError",
    "CryptoError",
    "DecodeError",
    "LocalProtocolError",
    "ZtError",
    "__version__",
]
