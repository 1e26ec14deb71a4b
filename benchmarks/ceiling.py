"""The machine's HTTP ceiling: a trivial Litestar POST endpoint of the same shape as posting a
message (path parameter, msgspec body in, msgspec body out), served exactly like Chronicle
(uvicorn, uvloop, httptools, no access log). Chronicle's figures are read as ratios to it."""

from __future__ import annotations

import msgspec
from litestar import Litestar, get, post


class Body(msgspec.Struct):
    content: str


class Posted(msgspec.Struct):
    session_id: str
    content: str
    position: int


@post("/api/sessions/{session_id:str}/messages")
async def post_message(session_id: str, data: Body) -> Posted:
    return Posted(session_id, data.content, 1)


class Pong(msgspec.Struct):
    ok: bool


@get("/api/trivial")
async def trivial_get() -> Pong:
    """The GET ceiling: the least a Litestar read can cost (the conditional-GET benchmark's reference)."""
    return Pong(True)


app = Litestar([post_message, trivial_get])
