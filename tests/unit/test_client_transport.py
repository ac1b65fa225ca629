"""The failover transports over an in-process fake network: routing, failover, answers
kept as they are, and bodies continued on another endpoint after a cut."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import httpx2
import pytest

from hubmirror.client.asynctransport import AsyncFailoverTransport
from hubmirror.client.health import BackOff, EndpointHealth
from hubmirror.client.routing import Router
from hubmirror.client.transport import FailoverTransport

A, B = "http://a:8090", "http://b:8090"
HUB = "https://huggingface.co"
DATA = bytes(range(256)) * 400
ETAG = f'"{hashlib.sha256(DATA).hexdigest()}"'

Behaviour = Callable[[httpx2.Request], httpx2.Response]


class CutBody(httpx2.SyncByteStream):
    """A body that breaks after `cut` bytes, like a mirror dying mid-way."""

    def __init__(self, data: bytes, cut: int) -> None:
        self._data, self._cut = data, cut

    def __iter__(self) -> Iterator[bytes]:
        yield self._data[: self._cut]
        raise httpx2.ReadError("connection reset by peer")


class FakeNetwork:
    """Answers by host with a behaviour per endpoint and records what was sent."""

    def __init__(self, **behaviours: Behaviour) -> None:
        self.behaviours = behaviours
        self.sent: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.sent.append(request)
        return self.behaviours[request.url.host](request)

    def hosts(self) -> list[str]:
        return [request.url.host for request in self.sent]


def streamed(code: int, headers: dict[str, str], body: bytes) -> httpx2.Response:
    """An answer whose body is still to be read, as the network gives it."""
    headers = {**headers, "Content-Length": str(len(body))}
    return httpx2.Response(code, headers=headers, stream=httpx2.ByteStream(body))


def refuse(request: httpx2.Request) -> httpx2.Response:
    raise httpx2.ConnectError("connection refused", request=request)


def status(code: int, **headers: str) -> Behaviour:
    return lambda request: streamed(code, headers, b'{"error": "x"}')


def serve_file(request: httpx2.Request) -> httpx2.Response:
    """A mirror serving DATA, with ranges."""
    headers = {"ETag": ETAG}
    wanted = request.headers.get("Range")
    if wanted is None:
        return streamed(200, headers, DATA)
    first, last = (int(part) for part in wanted.removeprefix("bytes=").split("-"))
    headers["Content-Range"] = f"bytes {first}-{last}/{len(DATA)}"
    return streamed(206, headers, DATA[first : last + 1])


def cut_after(size: int, etag: str = ETAG) -> Behaviour:
    def answer(request: httpx2.Request) -> httpx2.Response:
        headers = {"ETag": etag, "Content-Length": str(len(DATA))}
        return httpx2.Response(200, headers=headers, stream=CutBody(DATA, size))

    return answer


def client_over(network: FakeNetwork, *endpoints: str) -> tuple[httpx2.Client, EndpointHealth]:
    health = EndpointHealth(endpoints or (A, B), BackOff(first=10))
    router = Router(health, aliases=(HUB,), connect_timeout=2.0)
    wire = httpx2.Client(transport=httpx2.MockTransport(network))
    transport = FailoverTransport(router, wire)
    return httpx2.Client(transport=transport, follow_redirects=True), health


def test_urls_of_the_list_and_its_alias_go_to_the_first_endpoint() -> None:
    network = FakeNetwork(a=status(200))
    client, health = client_over(network)
    with client:
        client.get(f"{HUB}/api/models/org/name/tree/main%2Fsub?recursive=1")
        client.get(f"{B}/api/models/org/name")
    assert [str(request.url) for request in network.sent] == [
        f"{A}/api/models/org/name/tree/main%2Fsub?recursive=1",
        f"{A}/api/models/org/name",
    ]
    assert network.sent[0].headers["Host"] == "a:8090"
    assert health.stats()[A].requests == 2


def test_other_urls_are_sent_untouched() -> None:
    network = FakeNetwork(**{"cdn.example": status(200)})
    client, health = client_over(network)
    with client:
        assert client.get("https://cdn.example/blob?sig=1").status_code == 200
    assert str(network.sent[0].url) == "https://cdn.example/blob?sig=1"
    assert health.stats()[A].requests == 0


def test_a_refused_connection_moves_to_the_next_endpoint_which_serves_from_then_on() -> None:
    network = FakeNetwork(a=refuse, b=status(200))
    client, health = client_over(network)
    with client:
        assert client.get(f"{A}/api/models/x").status_code == 200
        assert client.get(f"{A}/api/models/y").status_code == 200
    assert network.hosts() == ["a", "b", "b"]
    stats = health.stats()
    assert (stats[A].failovers, stats[A].healthy, stats[B].requests) == (1, False, 2)


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503, 504])
def test_failing_statuses_move_on(code: int) -> None:
    network = FakeNetwork(a=status(code, **{"Retry-After": "60"}), b=status(200))
    client, health = client_over(network)
    with client:
        assert client.get(f"{A}/api/models/x").status_code == 200
    assert network.hosts() == ["a", "b"]
    assert health.attempt_order() == [B, A]


@pytest.mark.parametrize(
    ("code", "headers"),
    [
        (404, {"X-Error-Code": "EntryNotFound"}),
        (401, {"X-Error-Code": "GatedRepo"}),
        (403, {}),
        (401, {}),
    ],
)
def test_definite_answers_are_returned_and_never_asked_elsewhere(
    code: int, headers: dict[str, str]
) -> None:
    network = FakeNetwork(a=status(code, **headers), b=status(200))
    client, health = client_over(network)
    with client:
        response = client.get(f"{A}/org/name/resolve/main/missing.txt")
    assert response.status_code == code
    assert response.json() == {"error": "x"}
    assert network.hosts() == ["a"]
    assert health.stats()[A].healthy


def test_a_404_without_a_hub_error_code_is_asked_elsewhere_without_blaming_the_endpoint() -> None:
    network = FakeNetwork(a=status(404), b=status(200))
    client, health = client_over(network)
    with client:
        assert client.get(f"{A}/api/new-route").status_code == 200
    assert network.hosts() == ["a", "b"]
    assert health.attempt_order() == [A, B]


def test_when_every_endpoint_fails_the_last_failing_answer_is_returned() -> None:
    network = FakeNetwork(a=status(503), b=status(502))
    client, _ = client_over(network)
    with client:
        assert client.get(f"{A}/api/models/x").status_code == 502


def test_an_answer_beats_a_failure_when_nothing_succeeds() -> None:
    network = FakeNetwork(a=status(404), b=status(503))
    client, _ = client_over(network)
    with client:
        assert client.get(f"{A}/api/new-route").status_code == 404


def test_when_no_endpoint_can_be_reached_the_last_error_is_raised() -> None:
    network = FakeNetwork(a=refuse, b=refuse)
    client, health = client_over(network)
    with client, pytest.raises(httpx2.ConnectError):
        client.get(f"{A}/api/models/x")
    assert health.stats()[B].failovers == 0  # nowhere left to move to


def test_a_streamed_upload_gets_a_single_attempt() -> None:
    network = FakeNetwork(a=refuse, b=status(200))
    client, _ = client_over(network)
    with client, pytest.raises(httpx2.ConnectError):
        client.post(f"{A}/api/upload", content=iter([b"part"]))
    assert network.hosts() == ["a"]


def test_connecting_is_bounded_except_on_the_last_endpoint() -> None:
    network = FakeNetwork(a=refuse, b=refuse)
    client, _ = client_over(network)
    with client, pytest.raises(httpx2.ConnectError):
        client.get(f"{A}/api/models/x", timeout=10)
    first, last = (request.extensions["timeout"] for request in network.sent)
    assert (first["connect"], first["read"]) == (2.0, 10)
    assert last["connect"] == 10


def test_a_body_cut_mid_way_continues_on_the_next_endpoint_with_range() -> None:
    network = FakeNetwork(a=cut_after(10_000), b=serve_file)
    client, health = client_over(network)
    with client:
        response = client.get(f"{A}/org/name/resolve/main/model.bin")
    assert response.content == DATA
    assert network.sent[1].headers["Range"] == f"bytes=10000-{len(DATA) - 1}"
    stats = health.stats()
    assert (stats[A].bytes, stats[B].bytes) == (10_000, len(DATA) - 10_000)
    assert (stats[A].failovers, stats[A].healthy) == (1, False)


def test_a_cut_is_not_spliced_with_another_file() -> None:
    network = FakeNetwork(a=cut_after(10_000, etag='"stale"'), b=serve_file)
    client, _ = client_over(network)
    with client, pytest.raises(httpx2.RemoteProtocolError, match="after 10000 bytes"):
        client.get(f"{A}/org/name/resolve/main/model.bin")
    assert network.sent[1].headers["Range"] == f"bytes=10000-{len(DATA) - 1}"


def test_a_cut_with_no_endpoint_left_is_raised_for_the_client_to_resume() -> None:
    network = FakeNetwork(a=cut_after(10_000))
    client, _ = client_over(network, A)
    with client, pytest.raises(httpx2.RemoteProtocolError, match="body cut by http://a:8090"):
        client.get(f"{A}/org/name/resolve/main/model.bin")


async def test_the_async_transport_fails_over_too() -> None:
    network = FakeNetwork(a=refuse, b=status(200))
    health = EndpointHealth((A, B), BackOff(first=10))
    wire = httpx2.AsyncClient(transport=httpx2.MockTransport(network))
    transport = AsyncFailoverTransport(Router(health, aliases=(HUB,)), wire)
    async with httpx2.AsyncClient(transport=transport) as client:
        response = await client.get(f"{HUB}/api/models/x")
    assert response.status_code == 200
    assert network.hosts() == ["a", "b"]
    assert health.stats()[A].failovers == 1
