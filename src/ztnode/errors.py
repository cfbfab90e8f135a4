"""The exception hierarchy shared by every layer.

Errors split the way h11 splits them: a *remote* error means bytes from the network were bad (the
receive path turns it into a counted drop), a *local* error means the caller misused an API (it is
raised at once with a message that says what to do). Anything else escaping a parser is a bug.
"""

from __future__ import annotations


class ZtError(Exception):
    """Base of every ztnode-specific exception."""


class DecodeError(ZtError, ValueError):
    """Bytes that do not parse: truncated, out of range or inconsistent.

    Every codec in ``ztnode.wire`` raises this and nothing else on bad input, so a receive path can
    catch exactly this type and count a drop.
    """


class CryptoError(ZtError, ValueError):
    """A cryptographic operation that cannot succeed on these inputs (bad key, low-order point)."""


class AuthenticationError(ZtError):
    """A MAC or signature did not verify."""


class LocalProtocolError(ZtError):
    """The API was used in a way the protocol does not allow; the message says what to do."""
