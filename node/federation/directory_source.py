"""Where a node reads its member directory from: a file, or an http(s) URL, as its operator
configured it (`directory trust … --source`). Only that list, and the roots published next to
it (`root-<version>.json`, protocol.md §14.5), are ever fetched: no redirect is followed, and
an answer larger than the document's limit is cut off and refused unread."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp

from node.errors import N_, InvalidInput, UpstreamError

# A root that is not there (yet) ends the catch-up of rotations: not an error.
ABSENT_STATUSES = frozenset({404, 410})
_CHUNK = 65536


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def check_source(source: str) -> str:
    """An http(s) URL with a host, or an absolute file path (the command line makes a path
    absolute: the server does not share the caller's working directory)."""
    source = source.strip()
    if is_url(source):
        if not urlsplit(source).hostname:
            raise InvalidInput(N_("--source {source} names no host"), source=source)
        return source
    if not source or not Path(source).is_absolute():
        raise InvalidInput(
            N_("--source must be a file path or an http:// or https:// URL (got {source!r})"),
            source=source,
        )
    return source


def beside(source: str, name: str) -> str:
    """The document `name` published next to the list: same folder, or same URL directory."""
    if is_url(source):
        return urljoin(source, name)
    return str(Path(source).with_name(name))


class DirectorySource:
    """Reads a directory document by file path or URL, through the node's HTTP session."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def fetch(self, location: str, limit: int) -> bytes | None:
        """The document's bytes (at most `limit` + 1: a larger one is refused by its reader as
        oversized), or None when there is none there (no such file, 404 or 410)."""
        if is_url(location):
            return await self._get(location, limit)
        return await asyncio.to_thread(_read_file, location, limit)

    async def _get(self, url: str, limit: int) -> bytes | None:
        try:
            async with self.session.get(url, allow_redirects=False) as response:
                if response.status in ABSENT_STATUSES:
                    return None
                if response.status != 200:
                    raise UpstreamError(
                        N_("{url} answered HTTP {status}"), url=url, status=response.status
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(_CHUNK):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        break  # enough to be refused as oversized; the rest is not read
                return b"".join(chunks)[: limit + 1]
        except TimeoutError:
            raise UpstreamError(N_("{url} did not answer in time"), url=url) from None
        except aiohttp.ClientError as exc:
            detail = (str(exc).splitlines() or [""])[0][:200] or type(exc).__name__
            raise UpstreamError(
                N_("cannot fetch {url}: {reason}"), url=url, reason=detail
            ) from None


def _read_file(path: str, limit: int) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(limit + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise UpstreamError(
            N_("cannot read {path}: {reason}"), path=path, reason=exc.strerror or exc
        ) from None
