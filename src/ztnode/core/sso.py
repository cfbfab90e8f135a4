"""Single sign-on on the member side: what a controller's AUTHENTICATION_REQUIRED says.

A module of its own (VL2 only routes the error here): the auth info is kept on the network for
the API (``authenticationURL``) and announced once per URL as an event, so a program can send
its user to log in.

How the member learns that the user has logged in, as ZeroTierOne 1.14.1 does it: it has no
SSO timer. It keeps asking for its config (every ping check while it has none, else when its
config is a minute old: ``Network.needs_config_request``, Node.cpp:398), and the controller
answers with a config once the member's ``authenticationExpiryTime`` lies ahead
(EmbeddedNetworkController.cpp:1531-1562), or pushes one at once to a member that had a config
before (onNetworkMemberUpdate). A config applied clears the failure and the auth info
(``Network.set_config``; Network.cpp:1130-1141). Expiry works the same way round: the next
request after ``authenticationExpiryTime`` is refused with AUTHENTICATION_REQUIRED, which puts
the network back into that status; the member keeps its config meanwhile, as the reference
keeps ``_config``.
"""

from __future__ import annotations

from collections.abc import Callable

from ztnode.core import events as ev
from ztnode.core.network import Network
from ztnode.wire.netconf import SsoConfig, decode_auth_info


def authentication_required(
    net: Network, dictionary: bytes | None, emit: Callable[[ev.Event], None]
) -> bool:
    """Whether the network is now AUTHENTICATION_REQUIRED (IncomingPacket.cpp:250-303): yes
    without auth info (where to log in is then unknown), yes for version 1, for version 0 only
    with a URL; a version-0 info without one, or an unknown version, changes nothing at all.
    Where to log in is kept and said once per URL (for version 1, once per auth info: a new
    nonce or state is a new login); the dictionary is read as the reference reads it (cut,
    never refused), and a version-1 info without a login URL keeps the one known."""
    if not dictionary:
        net.auth_info = SsoConfig(version=0, enabled=True)
        return True
    info = decode_auth_info(dictionary)
    if (info.version == 0 and not info.authentication_url) or info.version > 1:
        return False
    if info.login_url:
        # Version 1: a new nonce or state is a new login (transport/ssoflow.py makes its URL).
        before = net.auth_info
        changed = before is None or (
            before != info if info.version == 1 else before.login_url != info.login_url
        )
        net.auth_info = info
        if changed:
            emit(ev.NetworkAuthenticationRequired(net.id, info.login_url))
    return True


__all__ = ["authentication_required"]
