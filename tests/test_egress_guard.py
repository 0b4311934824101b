"""Links can't reach private addresses: the check happens where connections are made, redirects included."""

import http.server
import ipaddress
import threading
from urllib.parse import unquote

import pytest

from separation_worker.contract.errors import InputError
from separation_worker.egress_guard import EgressGuard, public_only
from separation_worker.fetch import fetch
from tests.conftest import music, write_audio


def only_port(port: int):
    """A test policy: loopback stands in for 'the internet' on one port; everything else is 'private'."""

    def policy(address, p):
        return address == ipaddress.ip_address("127.0.0.1") and p == port

    return policy


@pytest.fixture
def redirecting_server(tmp_path):
    """Serves /song.mp3, and /to?u=<url> redirects anywhere."""
    write_audio(tmp_path / "song.mp3", music(1.0))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def do_GET(self):
            if self.path.startswith("/to?u="):
                self.send_response(302)
                self.send_header("Location", unquote(self.path[len("/to?u="):]))
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_allowed_destination_downloads(tmp_path, redirecting_server):
    port = redirecting_server
    media = fetch(f"http://127.0.0.1:{port}/song.mp3", tmp_path / "dl", 10**8, 600, egress_policy=only_port(port))
    assert media.path.stat().st_size > 0


@pytest.mark.parametrize("target", ["http://127.0.0.1:6379/", "http://169.254.169.254/latest/meta-data/", "http://[::1]:80/x.mp3"])
def test_redirect_to_a_private_address_is_refused(tmp_path, redirecting_server, target):
    port = redirecting_server
    with pytest.raises(InputError, match="private or local"):
        fetch(f"http://127.0.0.1:{port}/to?u={target}", tmp_path / "dl", 10**8, 600, egress_policy=only_port(port))
    assert not any((tmp_path / "dl").glob("source.*"))


def test_media_url_found_inside_a_page_is_checked_too(tmp_path, redirecting_server):
    port = redirecting_server
    (tmp_path / "page.html").write_text('<html><body><audio src="http://127.0.0.1:6379/x.mp3"></audio></body></html>')
    with pytest.raises(InputError, match="private or local"):
        fetch(f"http://127.0.0.1:{port}/page.html", tmp_path / "dl", 10**8, 600, egress_policy=only_port(port))


@pytest.mark.parametrize("target", ["ftp://127.0.0.1/a.mp3", "file:///etc/passwd", "gopher://127.0.0.1/a"])
@pytest.mark.parametrize("guarded", [True, False])
def test_redirect_to_a_non_http_scheme_is_bad_input(tmp_path, redirecting_server, target, guarded):
    port = redirecting_server
    policy = only_port(port) if guarded else None
    with pytest.raises(InputError, match="other than an http"):
        fetch(f"http://127.0.0.1:{port}/to?u={target}", tmp_path / "dl", 10**8, 600, allow_private=True,
              egress_policy=policy)
    assert not any((tmp_path / "dl").glob("source.*"))


def test_non_http_links_are_bad_input(tmp_path):
    for url in ("ftp://example.com/song.mp3", "file:///etc/passwd", "javascript:alert(1)", "https:///nohost"):
        with pytest.raises(InputError, match="http"):
            fetch(url, tmp_path / "dl", 10**8, 600)


def test_no_proxy_is_not_honoured(tmp_path, redirecting_server, monkeypatch):
    port = redirecting_server
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "*")
    with pytest.raises(InputError, match="private or local"):
        fetch(f"http://127.0.0.1:{port}/to?u=http://127.0.0.1:6379/", tmp_path / "dl", 10**8, 600,
              egress_policy=only_port(port))


def test_responses_say_the_connection_closes(redirecting_server):
    """The guard takes one request per connection; a client that pooled it would fail its next request."""
    import socket

    port = redirecting_server
    with EgressGuard(only_port(port)) as guard:
        with socket.create_connection(("127.0.0.1", guard.port)) as s:
            s.sendall(f"GET http://127.0.0.1:{port}/song.mp3 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = s.makefile("rb").read().split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.") and head.count(b"connection:") == 1 and b"connection: close" in head


def test_production_policy_refuses_direct_private_links(tmp_path):
    for url in ("http://127.0.0.1:6379/", "http://10.0.0.1/a.mp3", "http://[::ffff:127.0.0.1]/a.mp3"):
        with pytest.raises(InputError, match="private or local"):
            fetch(url, tmp_path / "dl", 10**8, 600)


@pytest.mark.parametrize(
    "address, allowed",
    [("8.8.8.8", True), ("2001:4860:4860::8888", True), ("127.0.0.1", False), ("10.1.2.3", False),
     ("172.16.0.1", False), ("192.168.1.1", False), ("169.254.169.254", False), ("::1", False), ("fe80::1", False),
     ("fc00::1", False), ("224.0.0.1", False), ("0.0.0.0", False), ("100.64.0.1", False), ("::ffff:10.0.0.1", False),
     # IPv6 forms that embed an IPv4 address, reached through a translator or relay: refused whatever they embed
     ("64:ff9b::a00:1", False), ("64:ff9b::808:808", False), ("64:ff9b:1::a9fe:a9fe", False),  # NAT64
     ("2002:a00:1::1", False), ("2002:808:808::1", False),  # 6to4
     ("::a00:1", False), ("::808:808", False),  # IPv4-compatible
     ("::ffff:0:a00:1", False),  # IPv4-translated
     ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
     ("2606:4700:4700::1111", True)],
)
def test_public_only_policy(address, allowed):
    assert public_only(ipaddress.ip_address(address), 443) is allowed


def test_connect_tunnel_is_checked_too():
    import socket

    with EgressGuard(only_port(1)) as guard:
        with socket.create_connection(("127.0.0.1", guard.port)) as s:
            s.sendall(b"CONNECT 127.0.0.1:6379 HTTP/1.1\r\nHost: 127.0.0.1:6379\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 403")
        assert guard.refused
