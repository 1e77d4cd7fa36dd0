"""Named people for the console: roles, Argon2 passwords, TOTP, server-side sessions."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from node.clock import Clock, iso
from node.errors import N_, Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from node.store import audit
from node.store.db import Database, Tx
from node.store.users import User, UserStore

NAME = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
MIN_PASSWORD = 12
# Verifying a wrong password against this keeps an unknown name as slow as a known one.
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class UserRole(StrEnum):
    ANALYST = "analyst"
    REVIEWER = "reviewer"  # an analyst who may also confirm another analyst's baseline verdict
    OPERATOR = "operator"  # peers, channels, users and tokens; analyst work too


@dataclass(frozen=True)
class Person:
    """A signed-in person, as a session names them."""

    name: str
    role: UserRole
    language: str | None
    # Still on the password an operator was shown (new or reset account): the console lets
    # it do nothing but set the person's own, so whoever created it cannot act through it.
    password_temporary: bool = False

    def may(self, *roles: UserRole) -> bool:
        return self.role in roles

    def require(self, *roles: UserRole) -> None:
        if self.role not in roles:
            # One role is vocabulary the console translates; several are named as they are.
            wanted = roles[0] if len(roles) == 1 else " or ".join(r.value for r in roles)
            raise Forbidden(
                N_("this needs the {wanted} role; {name} is {role}"),
                wanted=wanted,
                name=self.name,
                role=self.role,
            )


@dataclass(frozen=True)
class Session:
    token: str  # the cookie value; only its hash is stored
    csrf: str
    person: Person


@dataclass(frozen=True)
class NewSecret:
    """What `add` and `reset` show once: a password and, with TOTP, its provisioning URI."""

    password: str
    totp_uri: str | None
    totp_secret: str | None


def _token_hash(token: str) -> str:
    # Session tokens carry 256 random bits: a plain hash suffices (as for API tokens).
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def person_key(name: str) -> str:
    """A name as four-eyes compares people: account names are lower case (NAME), and a name
    typed elsewhere (--as Alice) means the same person."""
    return name.strip().casefold()


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidInput(
            N_(
                "a user name is 1-64 lower-case letters, digits, '.', '_' or '-',"
                " starting with a letter"
            )
        )
    return name


class UserService:
    """Accounts and sessions; every change is audited in the same transaction."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        node_id: str,
        session_minutes: int = 480,
        totp_required: bool = False,
    ) -> None:
        self.db = db
        self.store = UserStore(db)
        self.clock = clock
        self.node_id = node_id
        self.session_length = timedelta(minutes=session_minutes)
        self.totp_required = totp_required

    def _secret(self, name: str, totp: bool) -> tuple[NewSecret, str, str | None]:
        password = secrets.token_urlsafe(15)  # 20 characters, 120 bits
        secret = pyotp.random_base32() if totp or self.totp_required else None
        uri = (
            pyotp.TOTP(secret).provisioning_uri(
                name=name, issuer_name=f"hotline-node {self.node_id}"
            )
            if secret
            else None
        )
        return NewSecret(password, uri, secret), _HASHER.hash(password), secret

    async def add(self, name: str, role: str, *, totp: bool, actor: str) -> NewSecret:
        check_name(name)
        try:
            the_role = UserRole(role)
        except ValueError:
            raise InvalidInput(
                N_("role must be analyst, reviewer or operator (got {value!r})"), value=role
            ) from None
        if await self.store.get(name) is not None:
            raise Conflict(N_("user {name} exists (reset it, or choose another name)"), name=name)
        shown, password_hash, secret = self._secret(name, totp)
        now = iso(self.clock.now())

        def add_user_txn(conn: Tx) -> None:
            self.store.insert(
                conn,
                {
                    "name": name,
                    "role": the_role.value,
                    "password_hash": password_hash,
                    "totp_secret": secret,
                    "language": None,
                    "created_at": now,
                    "password_set_at": now,
                    "password_temporary": 1,
                },
            )
            audit.append(
                conn,
                at=self.clock.now(),
                actor=actor,
                event="user.added",
                subject=name,
                details={"role": the_role.value, "totp": secret is not None},
            )

        await self.db.run(add_user_txn)
        return shown

    async def _existing(self, name: str) -> User:
        row = await self.store.get(name)
        if row is None:
            raise NotFound(N_("no user named {name!r} (see hotline-node users list)"), name=name)
        return row

    async def list_users(self) -> list[dict[str, Any]]:
        return [
            {**asdict(row), "state": "disabled" if row.disabled_at else "active"}
            for row in await self.store.all()
        ]

    async def disable(self, name: str, *, actor: str) -> None:
        row = await self._existing(name)
        if row.disabled_at is not None:
            raise Conflict(
                N_("user {name} was already disabled at {at}"), name=name, at=row.disabled_at
            )
        now = self.clock.now()

        def disable_txn(conn: Tx) -> None:
            self.store.update(conn, name, {"disabled_at": iso(now)})
            ended = self.store.delete_sessions_of(conn, name)
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="user.disabled",
                subject=name,
                details={"sessions_ended": ended},
            )

        await self.db.run(disable_txn)

    async def reset(self, name: str, *, totp: bool, actor: str) -> NewSecret:
        """A new password (and a new TOTP secret where one is used); enabled again; signed out."""
        row = await self._existing(name)
        shown, password_hash, secret = self._secret(name, totp or row.totp_secret is not None)
        now = self.clock.now()

        def reset_txn(conn: Tx) -> None:
            self.store.update(
                conn,
                name,
                {
                    "password_hash": password_hash,
                    "totp_secret": secret,
                    "disabled_at": None,
                    "password_set_at": iso(now),
                    "password_temporary": 1,
                },
            )
            self.store.delete_sessions_of(conn, name)
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="user.reset",
                subject=name,
                details={"totp": secret is not None},
            )

        await self.db.run(reset_txn)
        return shown

    async def active(self, name: str, *roles: UserRole) -> Person:
        """The enabled person this name means (any case), holding one of `roles` if given."""
        row = await self.store.get(person_key(name)) if NAME.match(person_key(name)) else None
        if row is None or row.disabled_at is not None:
            raise NotFound(
                N_("{name!r} is no active person (see hotline-node users list)"), name=name
            )
        found = Person(row.name, UserRole(row.role), row.language, bool(row.password_temporary))
        if roles:
            found.require(*roles)
        return found

    async def change_password(
        self, name: str, *, current: str, new: str, repeated: str, client: str
    ) -> None:
        """A person sets their own password; the one they were given stops working."""
        row = await self._existing(name)
        ok: bool
        try:
            ok = _HASHER.verify(row.password_hash, current)
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            raise Unauthorized(N_("the current password is wrong"))
        if new != repeated:
            raise InvalidInput(N_("the two new passwords differ"))
        if len(new) < MIN_PASSWORD:
            raise InvalidInput(N_("a password has at least {count} characters"), count=MIN_PASSWORD)
        if new == current:
            raise InvalidInput(N_("the new password must differ from the current one"))
        password_hash = _HASHER.hash(new)
        now = self.clock.now()

        def change_password_txn(conn: Tx) -> None:
            self.store.update(
                conn,
                name,
                {
                    "password_hash": password_hash,
                    "password_set_at": iso(now),
                    "password_temporary": 0,
                },
            )
            audit.append(
                conn,
                at=now,
                actor=name,
                event="user.password_changed",
                subject=name,
                details={"client": client},
            )

        await self.db.run(change_password_txn)

    async def set_language(self, name: str, language: str) -> None:
        def set_language_txn(conn: Tx) -> None:
            self.store.update(conn, name, {"language": language})

        await self.db.run(set_language_txn)

    # sign-in -------------------------------------------------------------------------------
    async def sign_in(self, name: str, password: str, code: str | None, *, client: str) -> Session:
        """Check name, password and TOTP code; audited whether it works or not."""
        row = await self.store.get(name) if NAME.match(name) else None
        ok = False
        try:
            ok = _HASHER.verify(row.password_hash if row else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            ok = False
        reason = None
        if row is None or not ok:
            reason = N_("wrong name or password")
        elif row.disabled_at is not None:
            reason = N_("account disabled")
        elif row.totp_secret is None and self.totp_required:
            reason = N_("this node requires a second factor: ask an operator to reset the account")
        elif row.totp_secret is not None and not (
            code
            and pyotp.TOTP(row.totp_secret).verify(
                code.strip(), for_time=self.clock.now(), valid_window=1
            )
        ):
            reason = N_("wrong or missing one-time code")
        now = self.clock.now()
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)

        def sign_in_txn(conn: Tx) -> None:
            self.store.delete_expired(conn, iso(now))
            if reason is None:
                self.store.insert_session(
                    conn,
                    id_hash=_token_hash(token),
                    user=name,
                    csrf=csrf,
                    created_at=iso(now),
                    expires_at=iso(now + self.session_length),
                )
            audit.append(
                conn,
                at=now,
                actor=name if row is not None else "unknown",
                event="user.signed_in" if reason is None else "user.sign_in_refused",
                subject=name[:64],
                details={"client": client, **({"reason": reason} if reason else {})},
            )

        await self.db.run(sign_in_txn)
        if reason is not None:
            # One message for a wrong name or password, so names cannot be probed.
            raise Unauthorized(reason)
        assert row is not None
        return Session(
            token,
            csrf,
            Person(name, UserRole(row.role), row.language, bool(row.password_temporary)),
        )

    async def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        row = await self.store.session(_token_hash(token), iso(self.clock.now()))
        if row is None:
            return None
        return Session(
            token,
            row.csrf,
            Person(row.name, UserRole(row.role), row.language, bool(row.password_temporary)),
        )

    async def sign_out(self, session: Session) -> None:
        now = self.clock.now()

        def sign_out_txn(conn: Tx) -> None:
            self.store.delete_session(conn, _token_hash(session.token))
            audit.append(
                conn,
                at=now,
                actor=session.person.name,
                event="user.signed_out",
                subject=session.person.name,
            )

        await self.db.run(sign_out_txn)
