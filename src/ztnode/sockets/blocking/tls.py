"""TLS on the blocking facade: ``ssl.SSLContext.wrap_socket`` for ztnode sockets.

Why this shape: the stdlib's ``SSLSocket`` is a kernel socket with OpenSSL reading its
descriptor, which a ztnode socket has not (its ``fileno`` is a readiness signal). OpenSSL can
also run over memory buffers (``SSLObject`` with two ``MemoryBIO``), which is what asyncio's TLS
does; :class:`TlsSocket` drives one over a ztnode :class:`~ztnode.sockets.blocking.Socket` with
the ``SSLSocket`` methods, errors and timeout rules, so code that calls
``context.wrap_socket(sock, server_hostname=...)`` (``http.client.HTTPSConnection``, ``smtplib``,
``ftplib``, servers that wrap accepted connections) works unchanged.

``SSLContext.sslsocket_class`` is the stdlib's documented hook for what ``wrap_socket`` returns.
:func:`install` sets it, on the class, to :class:`_Dispatch`, which hands ztnode sockets to
:class:`TlsSocket` and everything else to ``ssl.SSLSocket`` exactly as before (the same class,
the same code path). It is installed when the blocking facade is imported.
"""

from __future__ import annotations

import contextlib
import errno
import socket as _socket
import ssl
from collections.abc import Callable
from typing import Any, TypeVar, cast

from ztnode.sockets.blocking.common import _oserror
from ztnode.sockets.blocking.facade import Socket

__all__ = ["TlsSocket", "install"]

_T = TypeVar("_T")
_CHUNK = 16 * 1024  # one TLS record's plaintext: writes are cut to it, reads ask for it


class TlsSocket:
    """What ``context.wrap_socket(ztnode_socket, ...)`` returns (module docstring). It owns the
    wrapped socket, as ``SSLSocket`` does (the stdlib detaches the original)."""

    def __init__(
        self,
        sock: Socket,
        *,
        context: ssl.SSLContext,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        if sock.type != _socket.SOCK_STREAM:
            raise NotImplementedError("only stream sockets are supported")
        if server_side and server_hostname:
            raise ValueError("server_hostname can only be specified in client mode")
        if session is not None and server_side:
            raise ValueError("session can only be specified in client mode")
        if context.check_hostname and not server_side and not server_hostname:
            raise ValueError("check_hostname requires server_hostname")
        if isinstance(server_hostname, bytes):
            server_hostname = server_hostname.decode("ascii")
        self._sock = sock
        self.context = context
        self.server_side = server_side
        self.server_hostname = server_hostname
        self.do_handshake_on_connect = do_handshake_on_connect
        self.suppress_ragged_eofs = suppress_ragged_eofs
        self._session = session
        self._obj: ssl.SSLObject | None = None
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._closed = False  # close() was called
        self._real_closed = False  # ... and no makefile() file holds the stream any more
        self._io_refs = 0
        if self._connected():
            self._make_object()
            if do_handshake_on_connect:
                if sock.gettimeout() == 0.0:
                    raise ValueError(
                        "do_handshake_on_connect should not be specified for non-blocking sockets"
                    )
                self.do_handshake()

    # --- plumbing

    def _connected(self) -> bool:
        try:
            self._sock.getpeername()
        except OSError:
            return False
        return True

    def _make_object(self) -> ssl.SSLObject:
        if self._obj is None:
            self._obj = self.context.wrap_bio(
                self._in,
                self._out,
                server_side=self.server_side,
                server_hostname=self.server_hostname,
                session=self._session,
            )
        return self._obj

    def _object(self) -> ssl.SSLObject:
        if self._real_closed:
            raise _oserror(errno.EBADF)
        if self._obj is None:
            raise _oserror(errno.ENOTCONN)
        return self._obj

    def _flush(self) -> None:
        """What OpenSSL wrote goes out on the socket, in full (under the socket's timeout)."""
        data = self._out.read()
        if data:
            self._sock.sendall(data)

    def _fill(self) -> None:
        """Feed OpenSSL what the socket has (waiting as the socket's timeout says)."""
        try:
            data = self._sock.recv(_CHUNK + 512)
        except BlockingIOError:
            raise ssl.SSLWantReadError("The operation did not complete (read)") from None
        if data:
            self._in.write(data)
        else:
            self._in.write_eof()

    def _run(self, op: Callable[[], _T]) -> _T:
        """One TLS operation, moving bytes between OpenSSL and the socket until it is done."""
        while True:
            try:
                result = op()
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
                continue
            except ssl.SSLWantWriteError:
                self._flush()
                continue
            self._flush()
            return result

    # --- TLS

    def do_handshake(self, block: bool = False) -> None:
        obj = self._object()
        self._run(obj.do_handshake)

    def unwrap(self) -> Socket:
        """Send close_notify, wait for the peer's, and give the plain socket back."""
        obj = self._object()
        with contextlib.suppress(ssl.SSLEOFError):  # the peer closed without answering
            self._run(obj.unwrap)
        sock, self._obj = self._sock, None
        self._closed = self._real_closed = True
        return sock

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._object().getpeercert(binary_form)

    def cipher(self) -> tuple[str, str, int] | None:
        return self._obj.cipher() if self._obj is not None else None

    def shared_ciphers(self) -> list[tuple[str, str, int]] | None:
        return self._obj.shared_ciphers() if self._obj is not None else None

    def compression(self) -> str | None:
        return self._obj.compression() if self._obj is not None else None

    def version(self) -> str | None:
        return self._obj.version() if self._obj is not None else None

    def selected_alpn_protocol(self) -> str | None:
        return self._obj.selected_alpn_protocol() if self._obj is not None else None

    def get_channel_binding(self, cb_type: str = "tls-unique") -> bytes | None:
        return self._obj.get_channel_binding(cb_type) if self._obj is not None else None

    def pending(self) -> int:
        return self._obj.pending() if self._obj is not None else 0

    @property
    def session(self) -> ssl.SSLSession | None:
        return self._obj.session if self._obj is not None else self._session

    @session.setter
    def session(self, value: ssl.SSLSession) -> None:
        self._session = value
        if self._obj is not None:
            self._obj.session = value

    @property
    def session_reused(self) -> bool | None:
        return self._obj.session_reused if self._obj is not None else None

    # --- data

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        obj = self._object()
        try:
            if buffer is not None:
                return self._run(lambda: obj.read(len, buffer))
            return self._run(lambda: obj.read(len))
        except ssl.SSLEOFError:
            if self.suppress_ragged_eofs:
                return 0 if buffer is not None else b""
            raise

    def write(self, data: Any) -> int:
        obj = self._object()
        return self._run(lambda: obj.write(data))

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to recv() on {type(self)}")
        return cast(bytes, self.read(buflen))

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to recv_into() on {type(self)}")
        view = memoryview(buffer).cast("B")
        n = nbytes or len(view)
        return cast(int, self.read(n, view[:n]))

    def send(self, data: Any, flags: int = 0) -> int:
        if flags:
            raise ValueError(f"non-zero flags not allowed in calls to send() on {type(self)}")
        view = memoryview(data).cast("B")
        return self.write(view[:_CHUNK])

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        while view:
            n = self.send(view, flags)
            view = view[n:]

    def recvfrom(self, buflen: int = 1024, flags: int = 0) -> Any:
        raise ValueError(f"recvfrom not allowed on instances of {type(self)}")

    def sendto(self, *args: Any) -> Any:
        raise ValueError(f"sendto not allowed on instances of {type(self)}")

    # --- the socket's own calls

    def connect(self, address: tuple[str, int]) -> None:
        if self._connected():
            raise ValueError("attempt to connect already-connected SSLSocket!")
        self._sock.connect(address)
        self._make_object()
        if self.do_handshake_on_connect:
            self.do_handshake()

    def connect_ex(self, address: tuple[str, int]) -> int:
        try:
            self.connect(address)
        except OSError as e:
            return e.errno or errno.EIO
        return 0

    def accept(self) -> tuple[TlsSocket, Any]:
        conn, addr = self._sock.accept()
        wrapped = TlsSocket(
            conn,
            context=self.context,
            server_side=True,
            do_handshake_on_connect=self.do_handshake_on_connect,
            suppress_ragged_eofs=self.suppress_ragged_eofs,
        )
        return wrapped, addr

    def makefile(self, mode: str = "r", buffering: int | None = None, **kwargs: Any) -> Any:
        """As ``SSLSocket.makefile``: files over the TLS stream (``socket.SocketIO``)."""
        as_socket = cast(_socket.socket, self)
        return _socket.socket.makefile(as_socket, cast(Any, mode), buffering, **kwargs)

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed and self._io_refs <= 0:
            self._really_close()

    def close(self) -> None:
        self._closed = True
        if self._io_refs <= 0:
            self._really_close()

    def _really_close(self) -> None:
        self._real_closed = True
        self._sock.close()

    def detach(self) -> int:
        raise _oserror(errno.EOPNOTSUPP, "a ztnode socket has no OS descriptor to detach")

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def fileno(self) -> int:
        return self._sock.fileno()

    def settimeout(self, value: float | None) -> None:
        self._sock.settimeout(value)

    def gettimeout(self) -> float | None:
        return self._sock.gettimeout()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def __getattr__(self, name: str) -> Any:
        # getsockname, getpeername, setsockopt, getsockopt, bind, listen, family, type...
        return getattr(self._sock, name)

    def __enter__(self) -> TlsSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ztnode.TlsSocket {self.version() or 'no handshake'} over {self._sock!r}>"


class _Dispatch(ssl.SSLSocket):
    """``SSLContext.sslsocket_class`` while installed: ztnode sockets get a
    :class:`TlsSocket`, every other socket the stdlib's ``SSLSocket`` itself."""

    @classmethod
    def _create(cls, sock: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(sock, Socket):
            return TlsSocket(sock, **kwargs)
        create = cast(Any, ssl.SSLSocket)._create.__func__  # the stdlib's, for its own class
        return create(ssl.SSLSocket, sock, *args, **kwargs)


def install() -> None:
    """Make ``SSLContext.wrap_socket`` take ztnode sockets (idempotent; a class set by
    someone else is left alone)."""
    if ssl.SSLContext.sslsocket_class is ssl.SSLSocket:
        ssl.SSLContext.sslsocket_class = _Dispatch
