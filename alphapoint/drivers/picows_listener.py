"""A client WebSocket on picows (asyncio and uvloop): ``pip install 'alphapoint[fast]'``.

The asyncio protocol driver (:mod:`.asyncio_protocol`) spends about a fifth of
a Ping in websockets' Sans-I/O parser, written in Python; picows parses and
builds frames in C, on asyncio's buffered-protocol callbacks. This driver is
picows's ``WSListener``: each frame is handed to it in the read callback, and
a whole message goes to the connection's ``on_message`` at once, as under the
asyncio driver (:class:`.CallbackWebSocket` is what the two share).

It keeps the rules of the other drivers, where picows leaves them to its user:

* messages are assembled from fragments, bounded in frames
  (``max_fragments``, 1008) and in bytes (``max_message_size``, 1009; picows
  bounds each frame by it too), and a text message that is not UTF-8 fails
  the connection with 1007;
* pings are answered here, not by picows, so that pongs written while the
  gateway does not read are counted against ``max_send_buffer``;
* the peer's close frame is echoed at once and the connection closed; the
  wait for the peer's half of a closing handshake this side starts is
  bounded by its caller, who aborts by its deadline (``close_timeout``:
  :meth:`Connection.aclose <alphapoint.connection.Connection.aclose>`);
* a frame picows refuses (masked, oversized, a bad opcode) ends the
  connection with the close code picows sent, and :class:`ConnectionClosed`
  says why, as for the other drivers.

Direct connections only: a proxy goes through the anyio driver (``"auto"``
takes it; ``driver="picows"`` with a proxy is refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import operator
import socket
import ssl as ssl_module
from typing import Any

from picows import (
    WSCloseCode,
    WSFrame,
    WSHandshakeError,
    WSInvalidStatusError,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_connect,
)
from websockets.frames import Opcode
from websockets.uri import WebSocketURI

from ..errors import NetworkError, ProtocolError
from .asyncio_protocol import CallbackWebSocket
from .base import (
    DEFAULT_MAX_FRAGMENTS,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SEND_BUFFER,
    QuietLogger,
    refused_upgrade,
)

__all__ = ["PicowsWebSocket", "open_picows_websocket"]

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONT = WSMsgType.CONTINUATION
_PING = WSMsgType.PING
_CLOSE = WSMsgType.CLOSE
_NORMAL = WSCloseCode.OK
#: picows's message types as websockets' opcodes (what the shared assembly reads).
_OPCODES = {_TEXT: Opcode.TEXT, _BINARY: Opcode.BINARY, _CONT: Opcode.CONT}

#: picows logs every connection at INFO, every frame at its own level 9 (with
#: the payload: passwords included), and a frame it refuses at ERROR, which
#: the driver reports as the ConnectionClosed that ends every call (as the
#: other drivers do, without a log record): only its CRITICAL records pass.
_logger = QuietLogger(logging.getLogger("alphapoint.picows"), {}, lowest=logging.CRITICAL)
# picows asks it some four times a connection: ``level >= CRITICAL`` in C, not a
# method of Python. A CRITICAL record still reaches the logger only if the
# logger takes it: the adapter's ``log`` hands it to ``Logger.log``, which asks.
_logger.isEnabledFor = functools.partial(operator.le, logging.CRITICAL)  # type: ignore[method-assign]

#: What is handed over in one turn of the loop (see ``_spend``): 64 KiB, each
#: message counted as 256 bytes more than its size, so at most 256 messages
#: (a burst of small events reaches a consumer's buffer, 1,024 by default, a
#: quarter at a time; READ_SLICE's 4 KiB let 2,048 two-byte messages through)
#: and some 85 Level1 updates, where READ_SLICE took 8: each turn costs a poll
#: of the loop and a wake-up of the connection's task and of the consumer's
#: (docs/performance.md, "Fan-out, fifth session").
_SLICE = 65536
_PER_MESSAGE = 256

#: A frame's header on the wire, at most (for counting answers).
_HEADER = 14


class PicowsWebSocket(CallbackWebSocket, WSListener):
    """One client WebSocket whose frames picows parses, in asyncio's read callback."""

    def __init__(
        self,
        *,
        close_timeout: float,
        max_fragments: int = DEFAULT_MAX_FRAGMENTS,
        max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        super().__init__(
            None,
            close_timeout=close_timeout,
            max_fragments=max_fragments,
            max_send_buffer=max_send_buffer,
            max_message_size=max_message_size,
        )
        self._ws: WSTransport | None = None
        #: Whether a close frame went out from this side, and whether the peer's came.
        self._close_sent = False
        self._close_received = False
        #: Open: connected, and no close frame sent or received, nor ended.
        self._open = False
        #: What is left of this read's slice (see _spend), and whether messages
        #: are held for later turns of the loop.
        self._budget = _SLICE
        self._held = False
        #: Whether the opener gave up (a timeout, a cancellation) before the handshake ended.
        self.abandoned = False

    @property
    def is_open(self) -> bool:
        return self._open

    def _finished(self) -> bool:
        return self._ended

    # -- picows's callbacks ---------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._ws = transport
        self._transport = transport.underlying_transport
        self._open = True
        if self.abandoned:
            transport.disconnect(False)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if transport.is_close_frame_sent and not self._close_sent:
            # picows refused a frame and failed the connection; it may still
            # hand over the rest of that frame when it arrives: nothing more
            # is read.
            self._refused_by_picows(transport)
            return
        kind = frame.msg_type
        if kind is _TEXT and frame.fin and self._fragment_opcode is None:
            # The hot path: a whole text message in one frame.
            try:
                text = frame.get_payload_as_utf8_text()
            except UnicodeDecodeError:
                self._fail_once(
                    ProtocolError("the peer sent a text message that is not UTF-8"),
                    1007,
                    "invalid UTF-8",
                )
                return
            if self._held:
                # Past this read's slice already: after those waiting, for
                # _release (which starts the next read's slice afresh). The
                # read's time was read when it was held (reading is paused
                # until then: these frames are all of that read).
                self._messages.append(text)
                return
            # picows hands a read's frames over in one callback and marks the
            # last one (always: it looks for the next frame before it hands
            # one over): the time of the read, read once for all of them.
            if frame.last_in_buffer:
                self.last_received = self.clock()
                self._budget = _SLICE  # the read is done: the next one starts afresh
            else:
                # _spend, inline (a call per message of a burst fewer).
                self._budget -= frame.payload_size + _PER_MESSAGE
                if self._budget < 0:
                    self._hold()
                    if self._held:
                        self._messages.append(text)
                        return
            on_message = self._on_message
            if on_message is None or self._messages:
                self._messages.append(text)  # in order, after those waiting
                self._deliver_messages()
                return
            # The usual case: straight to the connection (as _deliver_messages hands it).
            try:
                wakeup = on_message(text)
            except Exception as exc:  # noqa: BLE001 - a bug: run() raises it in the task
                self._on_message_failed(exc)
                return
            if wakeup and not self._wakeup_due:
                # An event: wake the task now (see _deliver_messages).
                self._wakeup_due = True
                self._wake()
            return
        if frame.last_in_buffer:
            self.last_received = self.clock()
        if self._failure is not None:
            return  # this side failed the connection: nothing more is read
        opcode = _OPCODES.get(kind)
        if opcode is not None:
            self._assemble(opcode, frame.fin, frame.get_payload_as_bytes())
            self._spend(frame.payload_size + _PER_MESSAGE)
            if not self._held:
                self._deliver_messages()
        elif kind is _PING:
            payload = frame.get_payload_as_bytes()
            if self.is_open:
                transport.send_pong(payload)
                self._count_answers(len(payload) + _HEADER)
        elif kind is _CLOSE:
            self._on_close(transport, frame)

    def _spend(self, size: int) -> None:
        """Count a frame against this read's slice (:data:`_SLICE`); hold the rest past it.

        picows hands over every frame of a read in one callback: a read of
        many small messages (a burst of events) would all reach the
        connection before its task had a turn to hand any to their
        consumer. Past a slice's worth, messages wait here, a slice per turn
        of the loop, with reading paused meanwhile (the bytes wait in the
        kernel), as under the asyncio driver.
        """
        self._budget -= size
        if self._budget < 0 and not self._held:
            self._hold()

    def _hold(self) -> None:
        """Past this read's slice: hold the messages still to come for later turns.

        The read's time is read here: the frames still to come are all of
        this read (reading is paused), and are held without looking at it.
        """
        if self._transport is not None:
            self.last_received = self.clock()
            self._held = True
            self._transport.pause_reading()
            self._loop.call_soon(self._release)

    def _release(self) -> None:
        """Deliver the next slice of held messages; resume reading once none are left."""
        self._deliver_messages(budget=_SLICE, per_message=_PER_MESSAGE)
        if self._messages and not self._ended and self._on_message is not None:
            self._loop.call_soon(self._release)
            return
        self._held = False
        self._budget = _SLICE
        if self._transport is not None and not self._ended:
            self._transport.resume_reading()

    def _on_close(self, transport: WSTransport, frame: WSFrame) -> None:
        """The peer's close frame: echo it (unless it answers ours) and close."""
        self._close_received, self._open = True, False
        if not self._close_sent:
            self._close_sent, self._open = True, False
            payload = frame.get_payload_as_bytes()
            transport.send(_CLOSE, payload)  # the echo, as websockets sends it
            self._count_answers(len(payload) + _HEADER)
        self._close_transport()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._ended, self._open = True, False
        if transport.is_close_frame_sent and not self._close_sent:
            self._refused_by_picows(transport)
        self._set_drained()
        self._deliver_messages()
        self._wake()

    def _refused_by_picows(self, transport: WSTransport) -> None:
        """picows refused a frame: the close frame it sent says why. Drop the connection."""
        self._close_sent, self._open = True, False
        handshake = transport.close_handshake
        sent = handshake.sent if handshake is not None else None
        if sent is not None and self._failure is None:
            if sent.code.value == 1009:  # said as websockets says it
                why = (
                    f"the peer sent a message over the size limit "
                    f"(frame exceeds limit of {self._max_message_size} bytes)"
                )
            else:
                why = f"the peer broke the WebSocket protocol ({sent.reason})"
            self._failure = ProtocolError(why)
        self._close_transport()

    def _connection_lost(self, exc: BaseException | None) -> None:
        """The OS error that ended the connection, if one did (see :class:`_SeeLoss`)."""
        if isinstance(exc, OSError) and self._lost is None:
            self._lost = exc.strerror or type(exc).__name__

    # -- what the shared code asks of a driver --------------------------------

    def _close_state(self) -> tuple[int | None, str, bool]:
        ws = self._ws
        handshake = ws.close_handshake if ws is not None else None
        received = handshake.recv if handshake is not None else None
        if received is not None:
            # An empty close frame has no code: websockets calls that 1005.
            # (int(): an IntEnum's value in C, where .value is two calls of Python.)
            return int(received.code) or 1005, received.reason or "", True  # type: ignore[call-overload]
        if self._ended:
            return 1006, "", False  # ended without the peer's close frame
        return None, "", False

    def _fail_with(self, code: int, reason: str) -> None:
        ws = self._ws
        if ws is not None and self.is_open:
            self._close_sent, self._open = True, False
            ws.send_close(WSCloseCode(code), reason.encode())
        self._close_transport()

    # -- writing --------------------------------------------------------------

    def send_text_now(self, text: str) -> bool:
        ws = self._ws
        if self._paused or not self._open or ws is None:
            return False  # send_text() waits for room, or says why it cannot send
        ws.send(_TEXT, text)
        return True

    async def send_text(
        self, text: str, *, deadline: float = float("inf"), coalesce: bool = False
    ) -> None:
        if self._paused and self._open:
            await self._drain(deadline)
        ws = self._ws
        if ws is None or not self._open:
            raise self._closed_error("the connection is closed")
        ws.send(_TEXT, text)

    async def send_close(self, code: int = 1000, reason: str = "") -> None:
        ws = self._ws
        if ws is not None and self._open:  # (is_open, without its call)
            self._close_sent, self._open = True, False
            # (The usual code and reason without the enum's call of Python.)
            ws.send_close(
                _NORMAL if code == 1000 else WSCloseCode(code), reason.encode() if reason else b""
            )
            # No timer of its own for the peer's half: the caller bounds it
            # (Connection.aclose aborts by its deadline, one timer of the
            # loop's for both; a timer costs a login some 20 k instructions).


class _SeeLoss(asyncio.BufferedProtocol):
    """picows's protocol, with the reason its connection was lost told to the driver.

    picows tells its listener that the connection ended, not why ("Connection
    reset by peer"), which the other drivers say in :class:`ConnectionClosed`.
    Every other callback is picows's own bound method, called with no frame
    of Python in between.

    Slots, not a dictionary: made at every connection, and the transport
    looks up ``get_buffer`` and ``buffer_updated`` at every read (a slot is
    found in this class's own namespace, before the protocol base's methods).
    """

    __slots__ = (
        "_protocol",
        "_websocket",
        "buffer_updated",
        "eof_received",
        "get_buffer",
        "is_buffered_protocol",
        "pause_writing",
        "resume_writing",
    )

    def __init__(self, protocol: Any, websocket: PicowsWebSocket) -> None:
        self._protocol = protocol
        self._websocket = websocket
        self.get_buffer = protocol.get_buffer  # type: ignore[method-assign]
        self.buffer_updated = protocol.buffer_updated  # type: ignore[method-assign]
        self.eof_received = protocol.eof_received  # type: ignore[method-assign]
        self.pause_writing = protocol.pause_writing  # type: ignore[method-assign]
        self.resume_writing = protocol.resume_writing  # type: ignore[method-assign]
        # aiofastnet's transport asks a protocol this when it is set; without it
        # the answer is an AttributeError raised and caught in its C, then an
        # isinstance (some thousands of instructions a connection).
        self.is_buffered_protocol = protocol.is_buffered_protocol

    def connection_lost(self, exc: Exception | None) -> None:
        self._websocket._connection_lost(exc)
        self._protocol.connection_lost(exc)


async def open_picows_websocket(
    uri: WebSocketURI,
    *,
    ssl: ssl_module.SSLContext | None,
    open_timeout: float,
    close_timeout: float,
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    max_fragments: int = DEFAULT_MAX_FRAGMENTS,
    max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
    user_agent: str | None = None,
) -> PicowsWebSocket:
    """Connect and complete the handshake; the caller bounds the time (picows
    does not: its timer would be a second one).

    Raises what ``loop.create_connection`` raises (``OSError``,
    ``ssl.SSLError``), :class:`HandshakeRefused` or :class:`NetworkError`; on
    any error, or a cancellation (the caller's bound), the connection is closed.
    """
    websocket = PicowsWebSocket(
        close_timeout=close_timeout,
        max_fragments=max_fragments,
        max_send_buffer=max_send_buffer,
        max_message_size=max_message_size,
    )
    loop = asyncio.get_running_loop()
    sockets: list[socket.socket] = []
    # (A partial, not a coroutine of its own around it: the connect's await
    # resumes through one frame fewer.)
    connect_socket = functools.partial(_connected_socket, loop, uri.host, uri.port, sockets)
    host = f"[{uri.host}]" if ":" in uri.host else uri.host
    url = f"{'wss' if uri.secure else 'ws'}://{host}:{uri.port}{uri.resource_name}"
    where = f"{uri.host}:{uri.port}"
    try:
        transport, listener = await ws_connect(
            lambda: websocket,
            url,
            ssl_context=ssl,
            disconnect_on_exception=False,
            # None of its own: the opener's deadline bounds the handshake, and
            # a handshake abandoned (timed out, cancelled) is shut down below.
            # (A timer costs a login some 20 k instructions: docs/performance.md,
            # "Opening, logging in and closing, sixth session".)
            websocket_handshake_timeout=None,
            logger_name=_logger,
            enable_auto_pong=False,  # answered by the driver, and counted
            max_frame_size=max_message_size if max_message_size is not None else 2**62,
            extra_headers={"User-Agent": user_agent} if user_agent is not None else None,
            max_redirects=0,
            socket_factory=connect_socket,
            use_aiofastnet=None,  # picows's choice: aiofastnet's transports when installed
        )
    except WSInvalidStatusError as exc:
        response = exc.response
        assert response is not None
        raise refused_upgrade(where, int(response.status), response.status.phrase) from None
    except WSHandshakeError as exc:
        raise refused_upgrade(where, None, str(exc)) from None
    except BaseException:
        # Cancelled (the caller's bound) with the handshake under way: picows
        # keeps the connection open; shut it down now (its read then ends,
        # and picows closes it).
        websocket.abandoned = True
        for sock in sockets:
            _shut_down(sock)
        raise
    if listener is None:
        # picows returns no listener when the server hung up before answering.
        raise NetworkError("the server closed the connection during the handshake")
    underlying = transport.underlying_transport
    protocol = underlying.get_protocol()
    if protocol is not None and not underlying.is_closing():  # not closed with the handshake
        underlying.set_protocol(_SeeLoss(protocol, websocket))
    return websocket


async def _connected_socket(
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    connected: list[socket.socket],
    _url: object = None,
) -> socket.socket:
    """A TCP socket connected to ``host``, trying each of its addresses in turn,
    and added to ``connected`` (picows's ``socket_factory``, given its URL).

    Made here, not by picows, so that the opener holds it: picows does not
    close a connection whose handshake it was abandoned in.
    """
    error: OSError | None = None
    # An IP address (the usual gateway's, or loopback) is its own answer; a
    # name is asked of getaddrinfo, in a thread of the loop's executor.
    addresses = _ip_address(host, port) or await loop.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    )
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        connected.append(sock)
        return sock
    raise error or OSError(f"no address for {host}")


def _ip_address(host: str, port: int) -> list[tuple[Any, Any, int, str, Any]]:
    """``getaddrinfo``'s answer for an IP address, known without asking it (as
    asyncio's own ``create_connection`` knows it); empty for a name. (Not a
    coroutine: no await for the usual answer.)"""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
    return []


def _shut_down(sock: socket.socket) -> None:
    # It may be closed already, or taken over by the loop (uvloop detaches it).
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
