"""A real aiohttp server on 127.0.0.1, in a thread of its own, serving the files of one folder
(404 for any other name): where an umbrella body publishes its member list and roots, for
node processes to fetch over HTTP. Usable from synchronous tests.

    with FolderServer(folder) as server:
        url = server.url("directory.json")
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import TracebackType

from aiohttp import web

from tests.support.cluster import free_port


class FolderServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.requests: list[str] = []  # every name asked for, in order
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/published/{name}"

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.requests.append(name)
        path = self.folder / name
        if "/" in name or not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=path.read_bytes(), content_type="application/json")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/published/{name}", self._serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> FolderServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
