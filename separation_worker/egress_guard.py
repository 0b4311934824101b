"""An outbound HTTP(S) proxy that refuses private destinations at connect time.

User links are fetched by yt-dlp through this proxy. It resolves each destination itself,
checks every address, and connects to the address it checked — so redirects, DNS names that
resolve to private addresses, and DNS rebinding all meet the same check, where the
connection is made (a URL parser alone can be fooled by all three).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

Policy = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address, int], bool]

REFUSED_BODY = b"destination refused: private or local address"
HEADER_LIMIT = 64 * 1024
CONNECT_TIMEOUT_S = 15.0


# IPv6 ranges that carry an IPv4 address inside and reach it through a translator or relay: NAT64 (well-known
# and local-use prefixes), 6to4, IPv4-compatible and IPv4-translated addresses. Python counts most of them as
# global, yet 64:ff9b::a00:1 is 10.0.0.1 behind a NAT64 gateway. Refused whole, whatever they embed.
IPV4_EMBEDDING = tuple(
    ipaddress.ip_network(net) for net in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "::/96", "::ffff:0:0:0/96")
)


def public_only(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
    """Production policy: only globally routable unicast addresses (no loopback, private, link-local, ...)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif any(address in net for net in IPV4_EMBEDDING):
            return False
    return address.is_global and not address.is_multicast


def allow_all(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
    """For tests and local use (STEMBOT_ALLOW_PRIVATE_URLS)."""
    return True


class DestinationRefused(Exception):
    pass


async def resolve_checked(host: str, port: int, policy: Policy) -> list[str]:
    """The addresses of host (all must pass the policy), or DestinationRefused."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DestinationRefused(f"cannot resolve {host}") from exc
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not policy(address, port):
            raise DestinationRefused(f"{host} resolves to a refused address")
        addresses.append(str(address))
    if not addresses:
        raise DestinationRefused(f"cannot resolve {host}")
    return addresses


class EgressGuard:
    """The proxy, on 127.0.0.1, in a thread of its own (callers such as yt-dlp are synchronous)."""

    def __init__(self, policy: Policy = public_only):
        self.policy = policy
        self.refused: list[str] = []  # destinations refused, for logs and tests
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EgressGuard:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="egress-guard", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def close() -> None:
            # Connections still open (a download that was killed) end here, not with a leaked loop.
            assert self._server is not None
            self._server.close()
            handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await asyncio.sleep(0)  # let the closed transports finish

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> EgressGuard:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT_S)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            writer.close()
            return
        if len(head) > HEADER_LIMIT:
            writer.close()
            return
        request_line, _, rest = head.partition(b"\r\n")
        try:
            method, target, version = request_line.decode("latin-1").split(" ", 2)
        except ValueError:
            await _reply(writer, 400, b"bad request")
            return
        try:
            if method.upper() == "CONNECT":
                host, port = _split_host_port(target, 443)
                upstream = await self._open(host, port)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                parts = urlsplit(target)
                if parts.scheme.lower() != "http" or not parts.hostname:
                    await _reply(writer, 400, b"only absolute http:// URLs")
                    return
                upstream = await self._open(parts.hostname, parts.port or 80)
                path = parts.path or "/"
                if parts.query:
                    path += "?" + parts.query
                # One request per connection: the next one may go elsewhere and must be checked again.
                headers = [
                    line for line in rest.split(b"\r\n")
                    if line and not line.lower().startswith((b"proxy-", b"connection:", b"keep-alive:"))
                ]
                upstream[1].write(
                    f"{method} {path} {version}\r\n".encode("latin-1") + b"\r\n".join(headers) + b"\r\nConnection: close\r\n\r\n"
                )
        except DestinationRefused as exc:
            self.refused.append(str(exc))
            log.warning("egress refused: %s", exc)
            await _reply(writer, 403, REFUSED_BODY)
            return
        except (OSError, asyncio.TimeoutError):
            await _reply(writer, 502, b"cannot connect")
            return
        await _pipe_both(reader, writer, *upstream, closing_response=method.upper() != "CONNECT")

    async def _open(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        addresses = await resolve_checked(host.strip("[]"), port, self.policy)
        last: Exception | None = None
        for address in addresses:  # connect to what was checked, never re-resolve
            try:
                return await asyncio.wait_for(asyncio.open_connection(address, port), CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError) as exc:
                last = exc
        raise last or OSError("no address")


def _split_host_port(target: str, default_port: int) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return target, default_port
    return host, int(port)


def _closing_head(head: bytes) -> bytes:
    """A response head with `Connection: close` in place of the server's own connection headers."""
    lines = [
        line for line in head[:-4].split(b"\r\n")
        if not line.lower().startswith((b"connection:", b"keep-alive:", b"proxy-connection:"))
    ]
    return b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n"


async def _reply(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    try:
        await writer.drain()
    finally:
        writer.close()


async def _pipe_both(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
    closing_response: bool = False,
) -> None:
    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, response: bool = False) -> None:
        try:
            if response:
                # One request per connection, and the client must know it: a connection it pooled and we
                # closed fails its next request at random (yt-dlp's live check, made with fatal=False, then
                # silently says 'not live').
                sink.write(_closing_head(await source.readuntil(b"\r\n\r\n")))
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        except (ConnectionError, asyncio.CancelledError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            sink.close()

    await asyncio.gather(
        pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer, response=closing_response)
    )
