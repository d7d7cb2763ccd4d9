"""The one peer HTTP client (issue 9): settings, the retry policy and what is unavailable.
The peer is a real ASGI app served in process; "nothing there" is a closed local port."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from libs.service_host.peers import Peer, PeerAdapter, PeerUnavailable


def _peer_app(statuses: list[int]) -> tuple[FastAPI, list[dict[str, str]]]:
    """An app whose ``GET /things`` answers the given statuses in turn (then 200)."""
    app = FastAPI()
    seen: list[dict[str, str]] = []

    @app.get("/things")
    async def things(request: Request) -> JSONResponse:
        seen.append({"authorization": request.headers.get("authorization", ""), **request.query_params})
        status = statuses.pop(0) if statuses else 200
        return JSONResponse([{"id": "a"}] if status == 200 else {"detail": "no"}, status_code=status)

    return app, seen


def _peer(app: FastAPI, **kw: str) -> Peer:
    return Peer("order_intake", url_variable="OMS_TEST_PEER_URL", token_variable="OMS_TEST_PEER_TOKEN",
                default_url="http://127.0.0.1:8001", transport=httpx.ASGITransport(app=app), **kw)


async def test_a_read_presents_the_configured_token_and_returns_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_TEST_PEER_URL", "http://peer/")
    monkeypatch.setenv("OMS_TEST_PEER_TOKEN", "dev-operator-token")
    app, seen = _peer_app([])
    peer = _peer(app)
    assert peer.base_url == "http://peer"
    assert await peer.get_json("/things", "things", params={"sku": "S1"}) == [{"id": "a"}]
    assert seen == [{"authorization": "Bearer dev-operator-token", "sku": "S1"}]
    assert _peer(app, token="t", base_url="http://other").base_url == "http://other"


async def test_a_peer_starting_up_is_asked_once_more() -> None:
    app, seen = _peer_app([503])
    assert await _peer(app).get_json("/things", "things") == [{"id": "a"}]
    assert len(seen) == 2


async def test_a_peer_that_stays_down_is_unavailable_after_the_second_attempt() -> None:
    app, seen = _peer_app([503, 502, 503])
    with pytest.raises(PeerUnavailable) as caught:
        await _peer(app).get_json("/things", "things")
    assert len(seen) == 2
    assert caught.value.service == "order_intake"
    assert str(caught.value) == "order intake answered HTTP 502 for things"


async def test_other_statuses_are_not_retried_and_404_can_mean_missing() -> None:
    app, seen = _peer_app([404, 403])
    assert await _peer(app).get_json("/things", "things", missing_ok=True) is None
    with pytest.raises(PeerUnavailable, match="answered HTTP 403"):
        await _peer(app).get_json("/things", "things")
    assert len(seen) == 2


async def test_nothing_listening_is_unavailable() -> None:
    peer = Peer("inventory", url_variable="OMS_TEST_PEER_URL", token_variable="OMS_TEST_PEER_TOKEN",
                default_url="http://127.0.0.1:9")
    with pytest.raises(PeerUnavailable, match=r"^inventory at http://127.0.0.1:9 not reachable: ConnectError$"):
        await peer.get_json("/v1/locations", "its locations")


class _PortDown(RuntimeError):
    pass


class _Adapter(PeerAdapter):
    service = "allocation"
    url_variable = "OMS_TEST_PEER_URL"
    token_variable = "OMS_TEST_PEER_TOKEN"
    default_url = "http://127.0.0.1:9"
    port_unavailable = _PortDown


async def test_an_adapter_fails_with_its_ports_exception_and_is_configured_like_a_peer() -> None:
    app, seen = _peer_app([500])
    with pytest.raises(_PortDown, match="^allocation answered HTTP 500 for things$") as caught:
        await _Adapter("http://peer", "dev-admin-token", transport=httpx.ASGITransport(app=app)).get_json(
            "/things", "things")
    assert isinstance(caught.value.__cause__, PeerUnavailable)
    assert seen == [{"authorization": "Bearer dev-admin-token"}]
    with pytest.raises(_PortDown, match="not reachable: ConnectError"):
        await _Adapter().get_json("/things", "things")
