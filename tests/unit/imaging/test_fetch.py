"""The URL fetch guard: addresses checked once and connected to as checked (no DNS rebinding)."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tastegraph.errors import ImageRejected
from tastegraph.imaging import fetch as fetch_mod
from tastegraph.imaging.fetch import address_refusal
from tastegraph.imaging.limits import ImageLimits
from tastegraph.imaging.read import read_source_bytes
from tests import fixtures as fx

LIMITS = ImageLimits(max_bytes=1 << 20, max_pixels=10**8)
IMAGE = fx.jpeg_bytes(32, 24)
PUBLIC = "93.184.215.14"  # a public address; nothing in the tests may connect to it


class _Server:
    """A real HTTP server on 127.0.0.1 that records every request it gets."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str]] = []  # (path, Host header)
        self.redirects: dict[str, str] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.hits.append((self.path, self.headers.get("Host", "")))
                if self.path in outer.redirects:
                    self.send_response(302)
                    self.send_header("Location", outer.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(IMAGE)))
                self.end_headers()
                self.wfile.write(IMAGE)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _fresh(server: _Server) -> None:
    server.hits.clear()
    server.redirects.clear()


Answers = dict[str, list[list[str]]]


def fake_resolver(monkeypatch: pytest.MonkeyPatch, answers: Answers) -> dict[str, int]:
    """getaddrinfo answering ``answers[host][i]`` on the i-th lookup of ``host`` (the last one
    from then on); other names and numeric hosts go to the real resolver. Returns the counts."""
    real = socket.getaddrinfo
    calls: dict[str, int] = {}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kw: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in answers:
            return real(host, port, *args, **kw)
        i = calls.get(name, 0)
        calls[name] = i + 1
        out = []
        for ip in answers[name][min(i, len(answers[name]) - 1)]:
            fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
            addr = (ip, int(port or 0), 0, 0) if fam == socket.AF_INET6 else (ip, int(port or 0))
            out.append((fam, socket.SOCK_STREAM, 6, "", addr))
        return out

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


def guarded(url: str, timeout: float = 1.0) -> bytes:
    return read_source_bytes(
        url, LIMITS, timeout=timeout, allow_url=True, allow_private_hosts=False
    )


def refusal(url: str) -> ImageRejected:
    with pytest.raises(ImageRejected) as info:
        guarded(url)
    assert info.value.hint
    return info.value


def allow_loopback_as_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let 127.0.0.1 pass the policy, so the local server can stand in for a public host."""
    real = fetch_mod.address_refusal
    local = ipaddress.ip_address("127.0.0.1")
    monkeypatch.setattr(fetch_mod, "address_refusal", lambda a: "" if a == local else real(a))


# ---------------------------------------------------------------------------------------------
# DNS rebinding


def test_rebinding_to_loopback_never_reaches_the_local_server(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # First answer public (what the check sees), then loopback (what a second lookup would see).
    calls = fake_resolver(monkeypatch, {"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
    connected: list[Any] = []
    real_connect = socket.create_connection

    def create_connection(address: Any, *args: Any, **kw: Any) -> socket.socket:
        connected.append(address[0])
        if address[0] == PUBLIC:  # no internet in tests: fail the way an unreachable host does
            raise ConnectionRefusedError("test: public host not reachable")
        return real_connect(address, *args, **kw)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    err = refusal(f"http://rebind.test:{server.port}/image.jpg")
    assert err.reason == "unreadable_url"
    assert server.hits == []
    assert connected == [PUBLIC]  # the checked address, and only it
    assert calls == {"rebind.test": 1}  # resolved once, by the guard


def test_the_pinned_address_is_used_with_the_real_host_name(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    allow_loopback_as_public(monkeypatch)
    # A second lookup would answer an unroutable address: the fetch works only if it is pinned.
    calls = fake_resolver(monkeypatch, {"pinned.test": [["127.0.0.1"], ["192.0.2.1"]]})
    assert guarded(f"http://pinned.test:{server.port}/image.jpg") == IMAGE
    assert server.hits == [("/image.jpg", f"pinned.test:{server.port}")]
    assert calls == {"pinned.test": 1}


def test_one_private_answer_among_public_ones_is_refused(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_resolver(monkeypatch, {"mixed.test": [[PUBLIC, "10.1.2.3"]]})
    err = refusal(f"http://mixed.test:{server.port}/image.jpg")
    assert err.reason == "unsupported_url" and "10.1.2.3" in err.message


def test_each_redirect_hop_is_checked_and_pinned(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    allow_loopback_as_public(monkeypatch)
    calls = fake_resolver(
        monkeypatch,
        {
            "start.test": [["127.0.0.1"]],
            "next.test": [["127.0.0.1"], ["192.0.2.1"]],
            "evil.test": [["10.0.0.5"]],
        },
    )
    port = server.port
    server.redirects["/hop"] = f"http://next.test:{port}/image.jpg"
    assert guarded(f"http://start.test:{port}/hop") == IMAGE
    assert server.hits == [("/hop", f"start.test:{port}"), ("/image.jpg", f"next.test:{port}")]
    assert calls == {"start.test": 1, "next.test": 1}
    for target in (
        "http://evil.test/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/x",
        "http://[fd00:ec2::254]/x",
        "http://user:pw@start.test/x",
        "file:///etc/passwd",
        "gopher://start.test/x",
    ):
        server.hits.clear()
        server.redirects["/bad"] = target
        assert refusal(f"http://start.test:{port}/bad").reason == "unsupported_url", target
        assert [h[0] for h in server.hits] == ["/bad"]


@pytest.mark.parametrize("address", [PUBLIC, "2606:4700::1111"])
def test_https_sends_the_host_name_for_sni_and_certificate(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    fake_resolver(monkeypatch, {"shop.test": [[address]]})
    seen: list[httpx.Request] = []

    def send(self: httpx.Client, request: httpx.Request, **kw: Any) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("test: not connecting", request=request)

    monkeypatch.setattr(httpx.Client, "send", send)
    assert refusal("https://shop.test:8443/a.jpg").reason == "unreadable_url"
    [req] = seen
    assert req.url.host == address and req.url.port == 8443
    assert req.headers["host"] == "shop.test:8443"
    assert req.extensions["sni_hostname"] == "shop.test"


def test_the_connected_peer_must_be_the_checked_address(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stream:
        def get_extra_info(self, name: str) -> Any:
            return ("127.0.0.1", 80) if name == "server_addr" else None

    resp = httpx.Response(200, extensions={"network_stream": Stream()})
    with pytest.raises(ImageRejected) as info:
        fetch_mod._check_peer(resp, ipaddress.ip_address(PUBLIC), "http://x.test/")
    assert info.value.reason == "unsupported_url"


def test_unguarded_fetch_is_unchanged(server: _Server) -> None:
    url = f"http://127.0.0.1:{server.port}/image.jpg"
    assert read_source_bytes(url, LIMITS, timeout=1, allow_url=True) == IMAGE


# ---------------------------------------------------------------------------------------------
# The address policy, property-based

BLOCKED_V4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
]
BLOCKED_V6 = [
    "::/128",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "ff00::/8",
    "fec0::/10",
    "2001:db8::/32",
]
NAT64 = ipaddress.ip_network("64:ff9b::/96")
ALL_BLOCKED = [ipaddress.ip_network(n) for n in BLOCKED_V4 + BLOCKED_V6]


def blocked_v4() -> st.SearchStrategy[Any]:
    return st.sampled_from(BLOCKED_V4).flatmap(lambda n: st.ip_addresses(network=n))


def v6_forms(v4: ipaddress.IPv4Address) -> list[ipaddress.IPv6Address]:
    """IPv6 spellings that carry ``v4``: mapped, compatible, NAT64 and 6to4."""
    n = int(v4)
    return [
        ipaddress.IPv6Address((0xFFFF << 32) | n),
        ipaddress.IPv6Address(n),
        ipaddress.IPv6Address((0x64FF9B << 96) | n),
        ipaddress.IPv6Address((0x2002 << 112) | (n << 80) | 1),
    ]


@given(blocked_v4())
def test_blocked_ipv4_is_refused_in_every_spelling(v4: ipaddress.IPv4Address) -> None:
    assert address_refusal(v4)
    for v6 in v6_forms(v4):
        assert address_refusal(v6), v6


@given(st.sampled_from(BLOCKED_V6).flatmap(lambda n: st.ip_addresses(network=n)))
def test_blocked_ipv6_is_refused(v6: ipaddress.IPv6Address) -> None:
    assert address_refusal(v6)


@given(st.ip_addresses())
def test_accepted_addresses_are_public_unicast(address: Any) -> None:
    if address_refusal(address):
        return
    if address in NAT64:  # DNS64 networks spell every IPv4 host so: judged by the IPv4 inside
        assert not address_refusal(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        return
    assert address.is_global and not address.is_multicast and not address.is_reserved
    assert not any(address in net for net in ALL_BLOCKED)
    if isinstance(address, ipaddress.IPv6Address):
        assert address.ipv4_mapped is None
        if address.sixtofour is not None:
            assert not address_refusal(address.sixtofour)


# A loopback, private or metadata host spelled every way a URL can spell it.
HOST_FORMS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "localhost",
    "LOCALHOST.",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::1]",
    "[::127.0.0.1]",
    "0.0.0.0",
    "169.254.169.254",
    "[fd00:ec2::254]",
    "100.100.100.200",
    "192.0.0.192",
    "10.0.0.1",
]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    host=st.sampled_from(HOST_FORMS),
    scheme=st.sampled_from(["http", "https", "HTTP"]),
    userinfo=st.sampled_from(["", "u@", "u:p@"]),
    path=st.text(alphabet="abc/%.-_?=&", max_size=12),
)
def test_no_spelling_of_a_local_host_is_fetched(
    server: _Server, host: str, scheme: str, userinfo: str, path: str
) -> None:
    server.hits.clear()
    url = f"{scheme}://{userinfo}{host}:{server.port}/{path}"
    with pytest.raises(ImageRejected) as info:
        guarded(url)
    assert info.value.reason in ("unsupported_url", "unreadable_url")
    assert server.hits == []


@settings(max_examples=40, deadline=None)
@given(
    answers=st.lists(
        st.one_of(blocked_v4().map(str), st.just(PUBLIC)), min_size=1, max_size=4
    ).filter(lambda a: any(x != PUBLIC for x in a))
)
def test_any_blocked_answer_refuses_before_connecting(answers: list[str]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        fake_resolver(mp, {"many.test": [answers]})
        tried: list[Any] = []
        mp.setattr(socket, "create_connection", _record(tried))
        with pytest.raises(ImageRejected) as info:
            guarded("http://many.test/a.jpg")
    assert info.value.reason == "unsupported_url"
    assert tried == []


def _record(into: list[Any]) -> Callable[..., socket.socket]:
    def create_connection(address: Any, *args: Any, **kw: Any) -> socket.socket:
        into.append(address)
        raise ConnectionRefusedError("test: no connection expected")

    return create_connection
