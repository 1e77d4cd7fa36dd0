"""API tokens for analysts and operators: random, shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from node.clock import Clock, iso
from node.errors import N_, Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from node.store import audit
from node.store import tokens as store
from node.store.db import Database, Tx
from node.users import UserRole, UserService

TOKEN_PREFIX = "hln_"  # noqa: S105 - a public prefix, not a secret


class Role(StrEnum):
    ANALYST = "analyst"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    token_id: str
    role: Role
    name: str
    person: str | None = None  # the console account the token belongs to

    @property
    def actor(self) -> str:
        """The audit log's name: the person's own, as the console and --as record it; a token
        of no one keeps the name it always had (and never counts as a person for four-eyes)."""
        return self.person if self.person is not None else f"{self.role.value}:{self.name}"

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            wanted = " or ".join(r.value for r in roles)
            raise Forbidden(
                N_("this needs an {wanted} token; yours is {role}"), wanted=wanted, role=self.role
            )


def token_label(name: str | None, person: str | None) -> str:
    """A token's label: as given, else its person's name (labels take no '.'), else default."""
    return name or (person.replace(".", "-") if person else "default")


def _digest(token: str) -> str:
    # Tokens carry 256 random bits, so a plain hash is as strong as a slow KDF here.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenService:
    def __init__(self, db: Database, clock: Clock, users: UserService) -> None:
        self.db = db
        self.clock = clock
        self.users = users

    async def create(
        self, role: str, name: str | None, actor: str = "cli", *, person: str | None = None
    ) -> str:
        """A token; with `person`, it belongs to that enabled account and acts in its name."""
        try:
            the_role = Role(role)
        except ValueError:
            raise InvalidInput(
                N_("role must be analyst or operator (got {value!r})"), value=role
            ) from None
        holder = None
        if person is not None:
            # An operator token only for an operator: a token never gives more than its person.
            wanted = (UserRole.OPERATOR,) if the_role is Role.OPERATOR else ()
            holder = (await self.users.active(person, *wanted)).name
        name = token_label(name, holder)
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
            raise InvalidInput(N_("name must be 1-64 letters, digits, '-' or '_'"))
        token_id = secrets.token_hex(8)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        now = self.clock.now()

        def create_token_txn(conn: Tx) -> None:
            store.insert_txn(
                conn,
                token_id=token_id,
                role=the_role.value,
                name=name,
                token_hash=_digest(token),
                at=iso(now),
                person=holder,
            )
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="token.created",
                subject=token_id,
                details={"role": the_role.value, "name": name, "person": holder},
            )

        await self.db.run(create_token_txn)
        return token

    async def list_tokens(self) -> list[dict[str, str | None]]:
        return [
            {
                "id": row.id,
                "role": row.role,
                "name": row.name,
                "created_at": row.created_at,
                "revoked_at": row.revoked_at,
                "person": row.person,
            }
            for row in await store.list_all(self.db)
        ]

    async def revoke(self, token_id: str, actor: str = "cli") -> None:
        """A revoked token is refused from the next request on; the row stays for the audit."""
        row = await store.get(self.db, token_id)
        if row is None:
            raise NotFound(
                N_("no token with id {token!r} (see hotline-node tokens list)"), token=token_id
            )
        if row.revoked_at is not None:
            raise Conflict(
                N_("token {token} was already revoked at {at}"),
                token=token_id,
                at=row.revoked_at,
            )
        now = self.clock.now()

        def revoke_token_txn(conn: Tx) -> None:
            store.revoke_txn(conn, token_id, iso(now))
            audit.append(conn, at=now, actor=actor, event="token.revoked", subject=token_id)

        await self.db.run(revoke_token_txn)

    async def authenticate(self, header: str | None) -> Principal:
        if not header:
            raise Unauthorized(N_("missing Authorization header (expected: Bearer <token>)"))
        scheme, _, token = header.partition(" ")
        # Header bytes that are not UTF-8 reach us as surrogates, which cannot be hashed; our
        # tokens are ASCII, so anything else is malformed rather than an internal error.
        if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or not token.isascii():
            raise Unauthorized(N_("malformed Authorization header (expected: Bearer <token>)"))
        row = await store.live_by_hash(self.db, _digest(token.strip()))
        if row is None:
            raise Unauthorized(N_("unknown or revoked token"))
        return Principal(row.id, Role(row.role), row.name, row.person)
