"""How every service reads a JSON body (libs/service_host/bodies.py) and answers a bad one
(libs/service_host/errors.py): the answers clients saw when each service parsed bodies by hand."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, FastAPI
from pydantic import BaseModel, ConfigDict, Field

from libs.service_host import errors
from libs.service_host.auth import OPERATOR, ChannelKeys, StaffAccess, StaffTokens
from libs.service_host.bodies import JsonBodyRoute, documented_as

OPERATOR_TOKEN = {"Authorization": "Bearer op-token-0123456789"}


class Receipt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: str
    qty: int = Field(gt=0, strict=True)


class Options(BaseModel):
    note: str = "none"


def app() -> FastAPI:
    router = APIRouter(prefix="/v1", route_class=JsonBodyRoute)

    @router.post("/receipts")
    async def post_receipt(body: Receipt) -> Any:
        return body.model_dump()

    @router.post("/options")
    async def post_options(body: Options | None = None) -> Any:
        return (body or Options()).model_dump()

    @router.put("/documents")
    async def put_document(doc: Annotated[Any, Body(), documented_as(Receipt)]) -> Any:
        return {"as_sent": doc}

    served = FastAPI()
    errors.install(served)
    table = {("POST", "/v1/receipts"): OPERATOR, ("POST", "/v1/options"): OPERATOR, ("PUT", "/v1/documents"): OPERATOR}
    StaffAccess("test", table, StaffTokens("op-token-0123456789:operator"), ChannelKeys("")).include(served, [router])
    return served


async def send(method: str, path: str, content: bytes | None = None, headers: dict[str, str] | None = None,
               **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://svc") as client:
        return await client.request(method, path, content=content, headers={**OPERATOR_TOKEN, **(headers or {})},
                                    **kwargs)


def detail(response: httpx.Response) -> list[dict[str, str]]:
    return response.json()["detail"]  # type: ignore[no-any-return]


async def test_a_body_that_is_not_json_is_named_in_the_decoders_words() -> None:
    r = await send("POST", "/v1/receipts", b'{"reference": "G1",\n "qty": }', {"Content-Type": "application/json"})
    assert r.status_code == 422
    [problem] = detail(r)
    assert problem["field"] == "(body)"
    assert problem["problem"].startswith("not valid JSON: ") and "line 2 column" in problem["problem"]


async def test_a_caller_without_credentials_hears_401_before_the_body_is_judged() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://svc") as client:
        r = await client.post("/v1/receipts", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and detail(r)[0]["field"] == "Authorization", r.text


async def test_json_is_read_whatever_the_content_type_says() -> None:
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        headers = {"Content-Type": content_type} if content_type else {}
        r = await send("POST", "/v1/receipts", b'{"reference": "G1", "qty": 2}', headers)
        assert r.status_code == 200 and r.json() == {"reference": "G1", "qty": 2}, (content_type, r.text)


async def test_nan_is_not_json() -> None:
    r = await send("POST", "/v1/receipts", b'{"reference": "G1", "qty": NaN}', {"Content-Type": "application/json"})
    assert r.status_code == 422 and detail(r)[0]["problem"].startswith("not valid JSON"), r.text


async def test_field_problems_name_the_field() -> None:
    r = await send("POST", "/v1/receipts", json={"reference": "G1", "qty": 1.5, "colour": "red"})
    assert r.status_code == 422
    assert {d["field"] for d in detail(r)} == {"qty", "colour"}


async def test_a_missing_body_and_a_body_that_is_not_an_object_are_the_bodys_problems() -> None:
    r = await send("POST", "/v1/receipts")
    assert r.status_code == 422
    assert detail(r) == [{"field": "(body)", "problem": "not valid JSON: Input is a zero-length, empty document: "
                                                        "line 1 column 1 (char 0)"}]
    r = await send("POST", "/v1/receipts", json=[{"reference": "G1", "qty": 1}])
    assert r.status_code == 422 and detail(r) == [{"field": "(body)", "problem": "must be a JSON object"}]


async def test_an_optional_body_left_out_or_blank_takes_its_defaults() -> None:
    for content in (None, b"", b"  \n"):
        r = await send("POST", "/v1/options", content, {"Content-Type": "application/json"})
        assert r.status_code == 200 and r.json() == {"note": "none"}, (content, r.text)


async def test_a_documented_document_reaches_its_use_case_as_sent() -> None:
    r = await send("PUT", "/v1/documents", json={"reference": 5, "extra": [1]})
    assert r.status_code == 200 and r.json() == {"as_sent": {"reference": 5, "extra": [1]}}
    r = await send("PUT", "/v1/documents", b"[1,", {"Content-Type": "application/json"})
    assert r.status_code == 422 and detail(r)[0]["problem"].startswith("not valid JSON")
