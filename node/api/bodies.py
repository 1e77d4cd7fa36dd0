"""Request bodies: size cap before parsing, JSON object required, fields checked by pydantic."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import orjson
from aiohttp import hdrs, web
from pydantic import BaseModel, ValidationError

from node.errors import InvalidInput, MalformedRequest, PayloadTooLarge, RequestTimeout

M = TypeVar("M", bound=BaseModel)
BODY_TIMEOUT = web.AppKey("body_timeout", float)
DEFAULT_BODY_TIMEOUT = 60.0


async def read_capped(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it passes `max_bytes`, or RequestTimeout
    when it has not all arrived within the body deadline (`[http] body_timeout_seconds`).

    `StreamReader.read(n)` returns what has arrived so far, not n bytes: a body sent in several
    chunks (or TCP segments) must be read until the end of the stream.
    """
    seconds = request.app.get(BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            while True:
                chunk = await request.content.read(max_bytes + 1 - size)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"body is larger than {max_bytes} bytes")
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {seconds:g} seconds") from None


async def read_json(request: web.Request, model: type[M], max_bytes: int) -> M:
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"body is larger than {max_bytes} bytes")
    # aiohttp reports a missing Content-Type as application/octet-stream: look at the header.
    if hdrs.CONTENT_TYPE in request.headers and request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text=f"content type must be application/json, not {request.content_type}"
        )
    # content_length can be absent (chunked): cap the read itself too.
    body = await read_capped(request, max_bytes)
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedRequest("body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "body"
        raise InvalidInput(f"{field}: {error['msg']}") from exc


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")
