"""Single sign-on on the member side: what a controller's AUTHENTICATION_REQUIRED says.

A module of its own (VL2 only routes the error here): the auth info is kept on the network for
the API (``authenticationURL``) and announced once per URL as an event, so a program can send
its user to log in.
"""

from __future__ import annotations

from collections.abc import Callable

from ztnode.core import events as ev
from ztnode.core.network import Network
from ztnode.wire.netconf import decode_auth_info


def authentication_required(
    net: Network, dictionary: bytes | None, emit: Callable[[ev.Event], None]
) -> None:
    """Keep where the user must log in and say it once per URL. The dictionary is read as the
    reference reads it (cut, never refused); as there, info without a URL changes nothing."""
    if not dictionary:
        return
    info = decode_auth_info(dictionary)
    if not info.login_url:
        return
    changed = net.auth_info is None or net.auth_info.login_url != info.login_url
    net.auth_info = info
    if changed:
        emit(ev.NetworkAuthenticationRequired(net.id, info.login_url))


__all__ = ["authentication_required"]
