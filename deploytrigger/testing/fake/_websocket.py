"""The server side of RFC 6455 websockets, standard library only: handshake and frames.

Just what the fake's ``/api/events/out`` needs: the HTTP Upgrade answer
(``Sec-WebSocket-Accept``, the chosen subprotocol), text messages (also
fragmented ones), ping and pong, and the closing handshake. Frames from a
client must be masked (RFC 6455 5.1); the server's are not. One lock keeps
frames written from several threads whole.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import struct
import threading
from io import BufferedIOBase
from typing import List, Optional, Tuple

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""The RFC 6455 constant appended to the client's key."""

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009

MAX_MESSAGE = 16 * 1024 * 1024
"""The largest message (bytes) the fake reads from a client; bigger ones close with 1009."""


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` answer to a client's ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1((key.strip() + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def frame(opcode: int, payload: bytes = b"", *, mask: Optional[bytes] = None) -> bytes:
    """One final frame; masked with the 4 bytes of ``mask`` when given (a client's frame)."""
    head = bytearray([0x80 | opcode])
    mask_bit = 0x80 if mask is not None else 0
    length = len(payload)
    if length < 126:
        head.append(mask_bit | length)
    elif length < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack("!H", length)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", length)
    if mask is None:
        return bytes(head) + payload
    return bytes(head) + mask + _unmask(payload, mask)


def close_payload(code: int, reason: str = "") -> bytes:
    """The body of a close frame: the code, then the reason cut to the 123 bytes allowed."""
    return struct.pack("!H", code) + reason.encode("utf-8")[:123]


def _unmask(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return payload
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big"
    )


class ProtocolError(Exception):
    """A client broke the protocol; ``code`` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Connection:
    """An accepted websocket over a handler's socket (its buffered reader and the socket)."""

    def __init__(self, reader: BufferedIOBase, sock: socket.socket) -> None:
        self._reader = reader
        self._socket = sock
        self._write_lock = threading.Lock()
        self.closed = threading.Event()
        """Set once a close frame went out, or the connection broke."""

    def send_text(self, text: str) -> bool:
        """Send one text message; False when the connection is gone."""
        return self._send(frame(TEXT, text.encode("utf-8")))

    def ping(self, payload: bytes = b"") -> bool:
        return self._send(frame(PING, payload))

    def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Send a close frame (once); the reader's loop ends when the client answers."""
        if not self.closed.is_set():
            self._send(frame(CLOSE, close_payload(code, reason)))
            self.closed.set()

    def drop(self) -> None:
        """Cut the TCP connection with no close frame (what a server does on a failed close)."""
        self.closed.set()
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)

    def _send(self, data: bytes) -> bool:
        if self.closed.is_set():
            return False
        try:
            with self._write_lock:
                self._socket.sendall(data)
        except OSError:
            self.closed.set()
            return False
        return True

    def receive(self) -> Optional[str]:
        """The next text message; None once the connection is closed (by either side).

        Pings are answered and pongs skipped on the way. A client's close frame
        is answered with the same code.

        Raises:
            ProtocolError: an unmasked, binary, oversized or malformed message.
        """
        parts: List[bytes] = []
        size = 0
        while True:
            header = self._read_frame()
            if header is None:
                self.closed.set()
                return None
            fin, opcode, payload = header
            if opcode == PING:
                self._send(frame(PONG, payload))
            elif opcode == PONG:
                continue
            elif opcode == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else NORMAL_CLOSURE
                self.close(code if code != 1005 else NORMAL_CLOSURE)
                return None
            elif opcode == BINARY:
                raise ProtocolError(PROTOCOL_ERROR, "binary messages are not understood")
            elif opcode in (TEXT, CONTINUATION):
                if (opcode == TEXT) == bool(parts):
                    raise ProtocolError(PROTOCOL_ERROR, "unexpected continuation frame")
                parts.append(payload)
                size += len(payload)
                if size > MAX_MESSAGE:
                    raise ProtocolError(MESSAGE_TOO_BIG, "message too big")
                if fin:
                    try:
                        return b"".join(parts).decode("utf-8")
                    except UnicodeDecodeError:
                        raise ProtocolError(1007, "text is not UTF-8") from None
            else:
                raise ProtocolError(PROTOCOL_ERROR, f"unknown opcode {opcode}")

    def _read_frame(self) -> Optional[Tuple[bool, int, bytes]]:
        head = self._read(2)
        if head is None:
            return None
        fin, opcode = bool(head[0] & 0x80), head[0] & 0x0F
        masked, length = bool(head[1] & 0x80), head[1] & 0x7F
        if head[0] & 0x70:
            raise ProtocolError(PROTOCOL_ERROR, "reserved bits set")
        if not masked:
            raise ProtocolError(PROTOCOL_ERROR, "client frames must be masked")
        if length >= 126:
            extended = self._read(2 if length == 126 else 8)
            if extended is None:
                return None
            length = int.from_bytes(extended, "big")
        if opcode >= CLOSE and (length > 125 or not fin):
            raise ProtocolError(PROTOCOL_ERROR, "bad control frame")
        if length > MAX_MESSAGE:
            raise ProtocolError(MESSAGE_TOO_BIG, "message too big")
        mask = self._read(4)
        payload = self._read(length) if length else b""
        if mask is None or payload is None:
            return None
        return fin, opcode, _unmask(payload, mask)

    def _read(self, count: int) -> Optional[bytes]:
        try:
            data = self._reader.read(count)
        except (OSError, ValueError):
            return None
        return data if data is not None and len(data) == count else None
