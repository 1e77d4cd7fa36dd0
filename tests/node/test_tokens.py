"""Tokens: created once, listed without secrets, revoked for good; the audit head is shown."""

from __future__ import annotations

import orjson
import pytest

from node.app import open_node
from node.cli import main
from node.clock import ManualClock
from node.datadir import DataDir
from node.errors import Conflict, Forbidden, NotFound, Unauthorized
from node.store import audit


async def test_a_revoked_token_is_refused_and_stays_listed(
    data_dir: DataDir, clock: ManualClock
) -> None:
    async with open_node(data_dir, clock) as node:
        token = await node.tokens.create("analyst", "alice")
        principal = await node.tokens.authenticate(f"Bearer {token}")
        await node.tokens.revoke(principal.token_id)
        with pytest.raises(Unauthorized, match="revoked"):
            await node.tokens.authenticate(f"Bearer {token}")
        with pytest.raises(Conflict, match="already revoked"):
            await node.tokens.revoke(principal.token_id)
        with pytest.raises(NotFound, match="tokens list"):
            await node.tokens.revoke("0000000000000000")
        listed = await node.tokens.list_tokens()
        assert [(t["name"], t["revoked_at"] is not None) for t in listed] == [("alice", True)]
        result = await audit.verify(node.db)
        last = await node.db.fetch_one("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        assert last is not None
        assert result.head == last["hash"]
        events = await node.db.fetch_all("SELECT event FROM audit_log ORDER BY seq")
        assert [e["event"] for e in events][-2:] == ["token.created", "token.revoked"]


def test_tokens_commands_never_print_secrets(
    data_dir: DataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(data_dir.root)
    assert (
        main(
            [
                "tokens",
                "create",
                "--role",
                "operator",
                "--name",
                "olivier",
                "--json",
                "--data-dir",
                root,
            ]
        )
        == 0
    )
    created = orjson.loads(capsys.readouterr().out)
    assert main(["tokens", "list", "--json", "--data-dir", root]) == 0
    out = capsys.readouterr().out
    listed = orjson.loads(out)
    assert created["token"] not in out
    assert listed[0]["name"] == "olivier"
    assert main(["tokens", "revoke", listed[0]["id"], "--data-dir", root]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["tokens", "revoke", listed[0]["id"], "--data-dir", root]) == 1
    assert "already revoked" in capsys.readouterr().err


async def test_a_token_for_a_person_acts_in_their_name_while_they_may(
    data_dir: DataDir, clock: ManualClock
) -> None:
    async with open_node(data_dir, clock) as node:
        await node.users.add("alice", "analyst", totp=False, actor="test")
        token = await node.tokens.create("analyst", None, person="Alice")
        who = await node.tokens.authenticate(f"Bearer {token}")
        # The name the console records for her, whatever the spelling given.
        assert (who.person, who.actor, who.name) == ("alice", "alice", "alice")
        listed = await node.tokens.list_tokens()
        assert [(t["name"], t["person"]) for t in listed] == [("alice", "alice")]
        with pytest.raises(NotFound, match="no active person"):
            await node.tokens.create("analyst", None, person="mallory")
        with pytest.raises(Forbidden, match="operator"):
            await node.tokens.create("operator", None, person="alice")
        # A token of no one keeps its old name in the audit log.
        legacy = await node.tokens.authenticate(
            f"Bearer {await node.tokens.create('analyst', 'alice')}"
        )
        assert (legacy.person, legacy.actor) == (None, "analyst:alice")
        # Her token stops with her account.
        await node.users.disable("alice", actor="test")
        with pytest.raises(Unauthorized):
            await node.tokens.authenticate(f"Bearer {token}")


def test_tokens_create_for_names_an_existing_person(
    data_dir: DataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(data_dir.root)
    args = ["tokens", "create", "--role", "analyst", "--for", "rene", "--json", "--data-dir", root]
    assert main(args) == 1
    assert capsys.readouterr().err.startswith("hotline-node: error: 'rene' is no active person")
    assert main(["users", "add", "rene", "--role", "reviewer", "--data-dir", root]) == 0
    capsys.readouterr()
    assert main(args) == 0
    created = orjson.loads(capsys.readouterr().out)
    assert (created["name"], created["person"]) == ("rene", "rene")
