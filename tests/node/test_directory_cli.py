"""The umbrella body's `directory` commands, end to end through real processes: a 2-of-3 root,
publishing refused below the threshold, a member removed, a root rotated."""

from __future__ import annotations

import json
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from protocol.directory import (
    DirectoryError,
    Refusal,
    Root,
    verify_list,
    verify_root,
    verify_rotation,
)
from tests.support.cluster import cli
from tests.vectors.generate import all_node_keys

FINGERPRINTS = {node_id: keys.fingerprint for node_id, keys in all_node_keys().items()}


def directory(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = cli(tmp / "no-node", "directory", *args, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def ok(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = directory(tmp, *args)
    assert result.returncode == 0, result.stderr
    return result


def refused(tmp: Path, *args: str) -> str:
    """The one line a refused command prints (exit non-zero, nothing on stdout)."""
    result = directory(tmp, *args)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hotline-node: error: ")
    return lines[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def now() -> datetime:
    return datetime.now(UTC)


def add(tmp: Path, folder: Path, node_id: str, country: str, *extra: str) -> None:
    ok(
        tmp,
        "add",
        str(folder),
        "--node-id",
        node_id,
        "--country",
        country,
        "--endpoint",
        f"https://node.{node_id}.example/",
        "--fingerprint",
        f" {FINGERPRINTS[node_id]}\n",  # pasted with blanks around it
        *extra,
    )


@pytest.fixture
def umbrella(tmp_path: Path) -> tuple[Path, Path, Root]:
    """An umbrella folder 2 of 3 with two members pending (fr-pointdecontact, de-eco)."""
    folder = tmp_path / "inhope"
    created = json.loads(
        ok(
            tmp_path,
            "init",
            str(folder),
            "--name",
            "inhope",
            "--signers",
            "3",
            "--threshold",
            "2",
            "--json",
        ).stdout
    )
    root = verify_root((folder / "root.json").read_bytes())
    assert (root.name, root.version, root.threshold, len(root.keys)) == ("inhope", 1, 2, 3)
    assert [s["kid"] for s in created["signers"]] == list(root.keys)
    add(tmp_path, folder, "fr-pointdecontact", "fr", "--categories", "csam,grooming")
    add(tmp_path, folder, "de-eco", "DE", "--suites", "hpke-base-x25519-sha256-aes256gcm")
    return tmp_path, folder, root


def test_init_makes_a_private_folder_of_private_files(umbrella: tuple[Path, Path, Root]) -> None:
    _, folder, root = umbrella
    assert mode(folder) == 0o700
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert names == [
        "pending.json",
        "root-1.json",
        "root.json",
        "signer-1.key",
        "signer-2.key",
        "signer-3.key",
    ]
    assert all(mode(path) == 0o600 for path in folder.iterdir())
    assert (folder / "signer-1.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert (folder / "root-1.json").read_bytes() == root.wire


def test_publish_is_refused_at_one_signature_and_done_at_two(
    umbrella: tuple[Path, Path, Root],
) -> None:
    tmp, folder, root = umbrella
    output = tmp / "directory.json"
    line = refused(tmp, "publish", str(folder), "--output", str(output))
    assert "0 of the 2 signatures needed; 2 more needed" in line
    ok(tmp, "sign", str(folder), "--key", str(folder / "signer-1.key"))
    line = refused(tmp, "publish", str(folder), "--output", str(output))
    assert "has 1 of the 2 signatures needed; 1 more needed" in line
    assert not output.exists()
    # The validity is part of what is signed: the first signature fixed it at 7 days.
    line = refused(
        tmp, "sign", str(folder), "--key", str(folder / "signer-3.key"), "--valid-days", "3"
    )
    assert "already signed as valid for 7 days" in line
    ok(tmp, "sign", str(folder), "--key", str(folder / "signer-3.key"))
    line = refused(tmp, "publish", str(folder), "--output", str(output), "--valid-days", "3")
    assert "cover 7 days of validity, not 3" in line
    assert "directory renew" in line
    ok(tmp, "publish", str(folder), "--output", str(output), "--valid-days", "7")
    assert mode(output) == 0o600
    published = verify_list(output.read_bytes(), root, now=now())
    assert published.version == 1
    assert published.expires - published.issued_at == 7 * 86400
    assert [m.node_id for m in published.members] == ["de-eco", "fr-pointdecontact"]
    fr = published.member("fr-pointdecontact")
    assert fr is not None
    assert (fr.country, fr.endpoint, fr.fingerprint, fr.categories) == (
        "FR",
        "https://node.fr-pointdecontact.example",
        FINGERPRINTS["fr-pointdecontact"],
        ["csam", "grooming"],
    )
    # Published: a further signature would change nothing a node sees.
    line = refused(tmp, "sign", str(folder), "--key", str(folder / "signer-2.key"))
    assert "already published" in line


def test_a_removed_member_is_gone_from_the_next_version(umbrella: tuple[Path, Path, Root]) -> None:
    tmp, folder, root = umbrella
    first, second = tmp / "v1.json", tmp / "v2.json"
    for signer in ("signer-1.key", "signer-2.key"):
        ok(tmp, "sign", str(folder), "--key", str(folder / signer))
    ok(tmp, "publish", str(folder), "--output", str(first))
    ok(tmp, "remove", str(folder), "--node-id", "de-eco")
    assert "not a member" in refused(tmp, "remove", str(folder), "--node-id", "de-eco")
    shown = json.loads(ok(tmp, "show", str(folder), "--json").stdout)
    assert shown["pending"]["version"] == 2
    assert shown["pending"]["signatures"] == []
    assert shown["published"]["version"] == 1
    for signer in ("signer-2.key", "signer-3.key"):
        ok(tmp, "sign", str(folder), "--key", str(folder / signer))
    ok(tmp, "publish", str(folder), "--output", str(second))
    taken = verify_list(second.read_bytes(), root, now=now(), held_version=1)
    assert [m.node_id for m in taken.members] == ["fr-pointdecontact"]
    with pytest.raises(DirectoryError) as stale:
        verify_list(first.read_bytes(), root, now=now(), held_version=2)
    assert stale.value.refusal is Refusal.STALE


def test_a_root_rotation_needs_the_old_signers_then_the_new_keys_sign(
    umbrella: tuple[Path, Path, Root],
) -> None:
    tmp, folder, root = umbrella
    rotated = json.loads(
        ok(tmp, "rotate", str(folder), "--signers", "3", "--threshold", "2", "--json").stdout
    )
    assert [Path(s["file"]).name for s in rotated["signers"]] == [
        "signer-4.key",
        "signer-5.key",
        "signer-6.key",
    ]
    new_root = tmp / "root-2.json"
    line = refused(tmp, "publish-root", str(folder), "--output", str(new_root))
    assert "0 of the 2 old signer signatures needed (2 more" in line
    ok(tmp, "sign-root", str(folder), "--key", str(folder / "signer-1.key"))
    line = refused(tmp, "publish-root", str(folder), "--output", str(new_root))
    assert "1 of the 2 old signer signatures needed (1 more" in line
    ok(tmp, "sign-root", str(folder), "--key", str(folder / "signer-3.key"))
    ok(tmp, "publish-root", str(folder), "--output", str(new_root))
    second = verify_rotation(root, new_root.read_bytes())
    assert second.kids == {s["kid"] for s in rotated["signers"]}
    assert (folder / "root.json").read_bytes() == new_root.read_bytes()
    assert (folder / "root-2.json").read_bytes() == new_root.read_bytes()
    # The old signers sign lists no more; the new ones do.
    assert "not one of the 3 signer keys of root version 2" in refused(
        tmp, "sign", str(folder), "--key", str(folder / "signer-1.key")
    )
    for signer in ("signer-4.key", "signer-6.key"):
        ok(tmp, "sign", str(folder), "--key", str(folder / signer))
    listed = tmp / "directory.json"
    ok(tmp, "publish", str(folder), "--output", str(listed))
    assert verify_list(listed.read_bytes(), second, now=now()).signed_by <= second.kids
    with pytest.raises(DirectoryError) as old:
        verify_list(listed.read_bytes(), root, now=now())
    assert old.value.refusal is Refusal.SIGNATURES


def test_every_refusal_is_one_line(umbrella: tuple[Path, Path, Root]) -> None:
    tmp, folder, _ = umbrella
    base = ["add", str(folder), "--endpoint", "https://x.example"]
    it = [*base, "--node-id", "it", "--country", "IT"]
    fingerprint = FINGERPRINTS["it-hotline"]
    ftp = ["add", str(folder), "--endpoint", "ftp://x.example", "--node-id", "it", "--country"]
    cases: list[tuple[list[str], str]] = [
        ([*base, "--node-id", "it", "--country", "XX", "--fingerprint", fingerprint], "country"),
        ([*base, "--node-id", "It!", "--country", "IT", "--fingerprint", fingerprint], "node id"),
        ([*it, "--fingerprint", "short"], "fingerprint"),
        ([*it, "--fingerprint", fingerprint, "--categories", "spam"], "categories"),
        ([*it, "--fingerprint", fingerprint, "--suites", "rot13"], "suites"),
        ([*ftp, "IT", "--fingerprint", fingerprint], "endpoint"),
        (
            [*base, "--node-id", "de-eco", "--country", "DE", "--fingerprint", fingerprint],
            "already a member",
        ),
        ([*it, "--fingerprint", FINGERPRINTS["de-eco"]], "already de-eco's"),
        (["init", str(folder), "--name", "x", "--signers", "2", "--threshold", "3"], "threshold"),
        (["init", str(folder), "--name", "x", "--signers", "2", "--threshold", "1"], "exists"),
        (["show", str(tmp)], "not a directory folder"),
        (["sign", str(folder), "--key", str(folder / "root.json")], "PEM"),
        (["sign-root", str(folder), "--key", str(folder / "signer-1.key")], "no rotation"),
    ]
    for args, words in cases:
        assert words in refused(tmp, *args), args
    (folder / "signer-2.key").chmod(0o644)
    assert "chmod 600" in refused(tmp, "sign", str(folder), "--key", str(folder / "signer-2.key"))
    folder.chmod(0o755)
    assert "chmod 700" in refused(tmp, "show", str(folder))


def test_an_identity_key_replaced_is_a_new_entry_for_the_same_member(
    umbrella: tuple[Path, Path, Root],
) -> None:
    tmp, folder, _ = umbrella
    replaced: dict[str, Any] = json.loads(
        ok(
            tmp,
            "add",
            str(folder),
            "--node-id",
            "de-eco",
            "--country",
            "DE",
            "--endpoint",
            "https://node.de-eco.example",
            "--fingerprint",
            FINGERPRINTS["it-hotline"],
            "--replace",
            "--json",
        ).stdout
    )
    assert replaced["action"] == "replaced"
    shown = json.loads(ok(tmp, "show", str(folder), "--json").stdout)
    entry = next(m for m in shown["pending"]["members"] if m["node_id"] == "de-eco")
    assert entry["fingerprint"] == FINGERPRINTS["it-hotline"]
    assert "suites" not in entry
    text = ok(tmp, "show", str(folder)).stdout
    assert "pending list version 1: 2 member(s), 0 of 2 signature(s)" in text
