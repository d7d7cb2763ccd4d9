"""A service closing an idle keep-alive connection just as the console reuses it (uvicorn's
5 s timeout_keep_alive) does not turn a page into "does not answer": a read is sent once more
on a new connection; a change is never sent twice."""

from __future__ import annotations

import asyncio

import pytest

from services.console.client import ServiceRefused, Services

pytestmark = pytest.mark.asyncio

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n[]"


class ClosingServer:
    """Answers the first request of every connection and keeps it open; hangs up on the second
    one without answering, as a server whose keep-alive timer fired at that moment does."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        for nth in range(2):
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head.split(b" ", 1)[0].decode())
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            if nth == 1:
                break
            writer.write(OK)
            await writer.drain()
        writer.close()


@pytest.fixture()
async def service() -> object:
    server = ClosingServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"  # type: ignore[attr-defined]
    async with listener:
        yield server
        listener.close()


async def test_a_read_meeting_a_closing_connection_is_sent_again_on_a_new_one(service: ClosingServer) -> None:
    services = Services({"inventory": service.url}, timeout=5)  # type: ignore[attr-defined]
    try:
        assert await services.json("token", "GET", "inventory", "/v1/locations") == []
        assert await services.json("token", "GET", "inventory", "/v1/locations") == []  # the reused connection hangs up
    finally:
        await services.close()
    assert service.requests == ["GET", "GET", "GET"]
    assert service.connections == 2


async def test_a_change_meeting_a_closing_connection_is_not_sent_twice(service: ClosingServer) -> None:
    services = Services({"inventory": service.url}, timeout=5)  # type: ignore[attr-defined]
    try:
        await services.json("token", "GET", "inventory", "/v1/locations")
        with pytest.raises(ServiceRefused) as refused:
            await services.json("token", "POST", "inventory", "/v1/receipts", json={"lines": []})
    finally:
        await services.close()
    assert refused.value.status == 503
    assert "inventory does not answer" in str(refused.value)
    assert service.requests == ["GET", "POST"]
