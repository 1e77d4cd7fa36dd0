"""`hashes compute`: real image files made here, their digests against hashlib and PDQ against
pdqhash itself; files that are no image, too large, or no file at all."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import orjson
import pdqhash
import pytest
from PIL import Image

from node.cli import main
from node.errors import InvalidInput
from node.hashes.compute import PDQ_MAX_PIXELS, hash_file
from node.hashes.values import parse_hash
from tests.node.test_cli import ERROR_LINE


def photo(path: Path, width: int, height: int, *, seed: int = 7) -> Path:
    """A picture with structure at several scales (gradients, blocks, noise), saved by Pillow
    in the format its name says: PDQ finds plenty to hash in it."""
    rng = np.random.default_rng(seed)
    x = np.arange(width, dtype=np.uint16)[None, :]
    y = np.arange(height, dtype=np.uint16)[:, None]
    base = x * 255 // max(width - 1, 1) + y * 128 // max(height - 1, 1)
    blocks = ((x // max(width // 7, 1) + y // max(height // 5, 1)) % 2) * 90
    noise = rng.integers(0, 40, size=(height, width), dtype=np.uint16)
    red = ((base + blocks + noise) % 256).astype(np.uint8)
    pixels = np.stack([red, red * 3, 255 - red], axis=-1)  # uint8: wraps like % 256
    Image.fromarray(pixels, "RGB").save(path)
    return path


def pdq_bits_to_hex(bits: np.ndarray) -> str:
    """pdqhash's bit vector read as Meta's hex form: the bits in order, most significant first."""
    return f"{int(''.join(str(int(b)) for b in bits), 2):064x}"


@pytest.mark.parametrize("name", ["evidence.png", "evidence.jpg"])
def test_a_real_image_gets_the_digests_of_its_bytes_and_pdqhash_s_pdq(
    tmp_path: Path, name: str
) -> None:
    path = photo(tmp_path / name, 400, 300)
    raw = path.read_bytes()
    found = hash_file(path)
    assert found.md5.hex == hashlib.md5(raw).hexdigest()
    assert found.sha1.hex == hashlib.sha1(raw).hexdigest()
    assert found.sha256.hex == hashlib.sha256(raw).hexdigest()
    bits, quality = pdqhash.compute(np.asarray(Image.open(path).convert("RGB")))
    assert found.pdq is not None
    assert found.pdq.hex == pdq_bits_to_hex(bits)
    assert found.pdq.quality == quality
    assert quality >= 50
    assert found.pdq.matchable
    assert found.pdq_reason is None
    # Each value reads back as the same hash: what `reports submit --hash` takes.
    assert [parse_hash(value.text) for value in found.values] == found.values


def test_a_large_image_is_hashed_whole_and_a_huge_one_reduced_first(tmp_path: Path) -> None:
    # Larger than the 512 x 512 Meta's command-line hasher resizes to: hashed whole, as
    # pdqhash hashes it (and as Meta's HMA does), bit for bit.
    path = photo(tmp_path / "large.png", 1600, 1000)
    found = hash_file(path)
    bits, quality = pdqhash.compute(np.asarray(Image.open(path).convert("RGB")))
    assert found.pdq is not None
    assert (found.pdq.hex, found.pdq.quality) == (pdq_bits_to_hex(bits), quality)
    # Beyond PDQ_MAX_PIXELS: reduced by area first, keeping its shape; it still matches the
    # whole image's hash at Meta's distance (31).
    width, height = 5000, 3600
    assert width * height > PDQ_MAX_PIXELS
    huge = photo(tmp_path / "huge.bmp", width, height)  # uncompressed: quick to write
    reduced = hash_file(huge).pdq
    assert reduced is not None
    whole, _ = pdqhash.compute(np.asarray(Image.open(huge).convert("RGB")))
    distance = bin(int(reduced.hex, 16) ^ int(pdq_bits_to_hex(whole), 16)).count("1")
    assert distance <= 31, distance


def test_a_flat_image_gets_a_low_quality_pdq_that_is_never_matched(tmp_path: Path) -> None:
    path = tmp_path / "flat.png"
    Image.new("RGB", (200, 200), (90, 90, 90)).save(path)
    found = hash_file(path)
    assert found.pdq is not None
    assert found.pdq.quality is not None
    assert found.pdq.quality < 50
    assert not found.pdq.matchable


def test_a_file_that_is_no_image_gets_its_digests_and_no_pdq(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"not a picture\n" * 100)
    found = hash_file(path)
    assert found.sha256.hex == hashlib.sha256(path.read_bytes()).hexdigest()
    assert found.pdq is None
    assert found.pdq_reason == "not an image Pillow can decode"
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(photo(tmp_path / "whole.png", 300, 300).read_bytes()[:2000])
    cut = hash_file(truncated)
    assert cut.pdq is None
    assert cut.pdq_reason is not None
    assert cut.pdq_reason.startswith("the image could not be decoded: ")


def test_a_decompression_bomb_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    # 10,000 x 10,000 one-bit pixels: 12 KB on disk, 100 million pixels once decoded.
    path = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(path)
    assert path.stat().st_size < 50_000
    found = hash_file(path)
    assert found.pdq is None
    assert found.pdq_reason == (
        f"refused as a possible decompression bomb: more than {Image.MAX_IMAGE_PIXELS} pixels"
    )
    assert found.md5.hex == hashlib.md5(path.read_bytes()).hexdigest()


def test_what_is_not_a_readable_file_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"missing\.png: no such file$"):
        hash_file(tmp_path / "missing.png")
    with pytest.raises(InvalidInput, match=r": is a directory, not a file$"):
        hash_file(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInput, match=r"pipe: not a regular file"):
        hash_file(fifo)  # refused at once: never waits for a writer
    locked = photo(tmp_path / "locked.png", 50, 50)
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as a user who reads any file (root)")
        with pytest.raises(InvalidInput, match=r"cannot be read \(permission denied\)"):
            hash_file(locked)
    finally:
        locked.chmod(0o600)


def test_the_command_prints_values_to_paste_and_needs_no_data_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = photo(tmp_path / "seen.png", 320, 240)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    nowhere = tmp_path / "no-data-dir"
    assert main(["hashes", "compute", str(image), str(text), "--data-dir", str(nowhere)]) == 0
    out = capsys.readouterr().out
    found = hash_file(image)
    assert out.splitlines()[:5] == [
        str(image),
        f"  {found.md5.text}",
        f"  {found.sha1.text}",
        f"  {found.sha256.text}",
        f"  {found.pdq.text}",  # type: ignore[union-attr]
    ]
    assert "  pdq: none (not an image Pillow can decode)" in out
    assert main(["hashes", "compute", str(image), "--json", "--data-dir", str(nowhere)]) == 0
    [shown] = orjson.loads(capsys.readouterr().out)
    assert shown == {
        "file": str(image),
        "md5": found.md5.hex,
        "sha1": found.sha1.hex,
        "sha256": found.sha256.hex,
        "pdq": found.pdq.hex,  # type: ignore[union-attr]
        "pdq_quality": found.pdq.quality,  # type: ignore[union-attr]
        "pdq_reason": None,
        "hashes": [value.text for value in found.values],
    }
    assert not nowhere.exists()


def test_the_command_refuses_a_missing_file_in_one_line_and_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = photo(tmp_path / "seen.png", 64, 64)
    code = main(["hashes", "compute", str(image), str(tmp_path / "gone.jpg"), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert ERROR_LINE.match(captured.err), captured.err
    assert captured.err == f"hotline-node: error: {tmp_path / 'gone.jpg'}: no such file\n"
