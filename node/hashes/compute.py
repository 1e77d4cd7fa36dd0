"""The hashes of a file the analyst holds: MD5, SHA-1 and SHA-256 of its bytes, PDQ of its image.

The file is only read: streamed in chunks through the three digests, then decoded once by
Pillow for PDQ. Nothing of it is copied, written or kept; the caller gets the digests alone.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pdqhash
from PIL import Image, UnidentifiedImageError

from node.errors import N_, InvalidInput
from node.hashes.values import HashValue
from protocol.records import HashAlgorithm

CHUNK = 1 << 20
# PDQ is pdqhash's (Meta's reference C++) on the whole image as Pillow decodes it: the hash
# Meta's hasher-matcher-actioner and python-threatexchange compute, so it matches their lists
# exactly. Meta's command-line hasher (pdq/cpp/io/pdqio.cpp) first resizes any image with a side
# above 512 pixels to 512 x 512 by nearest neighbour, because the Jarosz filter is slow on large
# images. Measured here, that aliases: on grainy pictures its hash was 36-44 bits from the whole
# image's at 1600 x 1000 and 92-106 at 5000 x 3600, beyond a match at 31. So the whole image is
# hashed (about 0.1 s and 24 bytes a pixel per megapixel), and only beyond 16.7 megapixels is it
# first reduced to that size by area averaging, keeping its shape: 18-22 bits from the whole
# image's hash on the same grainy 5000 x 3600 pictures, and at most ~2 s and ~400 MB.
PDQ_MAX_PIXELS = 4096 * 4096


@dataclass(frozen=True, slots=True)
class FileHashes:
    """What `hashes compute` prints for one file."""

    file: str
    md5: HashValue
    sha1: HashValue
    sha256: HashValue
    pdq: HashValue | None
    pdq_reason: str | None  # why there is no PDQ (not an image, too large…), else None

    @property
    def values(self) -> list[HashValue]:
        """Every hash, in the `TYPE:VALUE` order people paste them."""
        found = [self.md5, self.sha1, self.sha256]
        return [*found, self.pdq] if self.pdq is not None else found


def hash_file(path: Path) -> FileHashes:
    """The hashes of the file at `path`, or InvalidInput saying in one line why it cannot be
    read (missing, a directory, not a regular file, not readable)."""
    with _open_regular(path) as handle:
        md5, sha1, sha256 = hashlib.md5(), hashlib.sha1(), hashlib.sha256()  # noqa: S324
        while chunk := handle.read(CHUNK):
            md5.update(chunk)
            sha1.update(chunk)
            sha256.update(chunk)
        # The same open file, so the image hashed is the bytes just digested.
        handle.seek(0)
        pdq, reason = pdq_of(handle)
    return FileHashes(
        file=str(path),
        md5=HashValue(HashAlgorithm.MD5, md5.digest()),
        sha1=HashValue(HashAlgorithm.SHA1, sha1.digest()),
        sha256=HashValue(HashAlgorithm.SHA256, sha256.digest()),
        pdq=pdq,
        pdq_reason=reason,
    )


def pdq_of(handle: BinaryIO) -> tuple[HashValue | None, str | None]:
    """PDQ and its quality of the image in `handle`, or None and why there is none."""
    try:
        with warnings.catch_warnings():
            # Pillow warns above Image.MAX_IMAGE_PIXELS and refuses at twice that: both refuse
            # here, before a pixel is decoded.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(handle) as image:
                width, height = image.size
                rgb = image.convert("RGB")
    except UnidentifiedImageError:
        return None, "not an image Pillow can decode"
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        return None, (
            f"refused as a possible decompression bomb: more than {Image.MAX_IMAGE_PIXELS} pixels"
        )
    except Exception as exc:  # a damaged or hostile file: any decoder failure is its reason
        return None, f"the image could not be decoded: {type(exc).__name__}: {exc}"[:300]
    if width * height > PDQ_MAX_PIXELS:
        scale = math.sqrt(PDQ_MAX_PIXELS / (width * height))
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        rgb = rgb.resize(size, Image.Resampling.BOX)
    bits, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)))
    # pdqhash gives the 256 bits most significant first, as Meta's hex form writes them.
    digest = np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()
    return HashValue(HashAlgorithm.PDQ, digest, int(quality)), None


def _open_regular(path: Path) -> BinaryIO:
    """The file opened for reading, once it is known to be a regular file: a FIFO or a device
    would block or never end. O_NONBLOCK keeps the open itself from waiting on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InvalidInput(N_("{path}: no such file"), path=str(path)) from None
    except IsADirectoryError:
        raise InvalidInput(N_("{path}: is a directory, not a file"), path=str(path)) from None
    except PermissionError:
        raise InvalidInput(
            N_("{path}: cannot be read (permission denied)"), path=str(path)
        ) from None
    except OSError as exc:
        raise InvalidInput(
            N_("{path}: cannot be read ({reason})"), path=str(path), reason=exc.strerror or exc
        ) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise InvalidInput(N_("{path}: is a directory, not a file"), path=str(path))
        if not stat.S_ISREG(mode):
            raise InvalidInput(
                N_("{path}: not a regular file (a device, pipe or socket)"), path=str(path)
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
