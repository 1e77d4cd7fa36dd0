"""Named people for the console: roles, Argon2 passwords, TOTP, server-side sessions."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from node.clock import Clock, iso, parse_iso
from node.errors import N_, Conflict, Forbidden, InvalidInput, NotFound, RateLimited, Unauthorized
from node.secretbox import SecretBox, is_sealed
from node.store import audit, sign_in_limits
from node.store.db import Database, Tx
from node.store.users import User, UserStore

log = logging.getLogger("hotline.users")

NAME = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
MIN_PASSWORD = 12
# Verifying a wrong password against this keeps an unknown name as slow as a known one.
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
# Every refusal reads the same, whichever factor was wrong (or the account is disabled, or its
# code guessing is being slowed): a refusal must never confirm a password.
REFUSED = N_("wrong name, password or one-time code")
# Wrong codes after a right password: this many pass unhindered (a person mistyping), then each
# further one makes the person wait twice as long, up to a day, and the first is alerted on.
TOTP_FREE_FAILURES = 5
TOTP_MAX_WAIT = timedelta(days=1)
TOTP_STEP = 30  # seconds, pyotp's default period


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


def _bound(name: str) -> str:
    """What a person's sealed TOTP secret is bound to: their row."""
    return f"users.totp_secret:{name}"


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (one back, now, one ahead: clocks drift) whose code this is, if any."""
    if not (len(code) == 6 and code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _role(role: str) -> UserRole:
    try:
        return UserRole(role)
    except ValueError:
        raise InvalidInput(
            N_("role must be analyst, reviewer or operator (got {value!r})"), value=role
        ) from None


def keep_an_operator(conn: Tx, name: str, *, role_after: UserRole | None) -> None:
    """The one rule every path that disables a person or changes a role goes through (console,
    CLI; the API has none): the last active operator cannot be disabled (`role_after` None)
    or given another role, or nobody could manage people, peers or channels again. Checked
    in the writer transaction, so two operators disabling each other cannot both succeed."""
    row = conn.execute("SELECT role, disabled_at FROM users WHERE name = ?", (name,)).fetchone()
    if row is None or row[0] != UserRole.OPERATOR.value or row[1] is not None:
        return
    if role_after is UserRole.OPERATOR:
        return
    others = conn.execute(
        "SELECT COUNT(*) FROM users WHERE role = ? AND disabled_at IS NULL AND name != ?",
        (UserRole.OPERATOR.value, name),
    ).fetchone()[0]
    if others == 0:
        raise Conflict(
            N_("{name} is the last active operator: add or enable another operator first"),
            name=name,
        )


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
        box: SecretBox,
        session_minutes: int = 480,
        totp_required: bool = False,
        sign_ins_per_minute: int = 10,
    ) -> None:
        self.db = db
        self.box = box
        self.sign_in_rate = sign_ins_per_minute / 60.0
        self.sign_in_burst = float(sign_ins_per_minute)
        self.store = UserStore(db)
        self.clock = clock
        self.node_id = node_id
        self.session_length = timedelta(minutes=session_minutes)
        self.totp_required = totp_required

    def _secret(self, name: str, totp: bool) -> tuple[NewSecret, str, str | None]:
        """What is shown once (the clear secrets), the password's hash and the sealed TOTP
        secret to store."""
        password = secrets.token_urlsafe(15)  # 20 characters, 120 bits
        secret = pyotp.random_base32() if totp or self.totp_required else None
        uri = (
            pyotp.TOTP(secret).provisioning_uri(
                name=name, issuer_name=f"hotline-node {self.node_id}"
            )
            if secret
            else None
        )
        sealed = self.box.seal(secret, _bound(name)) if secret else None
        return NewSecret(password, uri, secret), _HASHER.hash(password), sealed

    async def add(self, name: str, role: str, *, totp: bool, actor: str) -> NewSecret:
        check_name(name)
        the_role = _role(role)
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

    async def seal_clear_secrets(self) -> int:
        """Seal the TOTP secrets stored in clear before migration 19 (run at every start; a
        schema migration cannot, as it has no key secret). Returns how many were sealed."""
        rows = await self.db.fetch_all(
            "SELECT name, totp_secret FROM users WHERE totp_secret IS NOT NULL"
        )
        clear = [(r["name"], r["totp_secret"]) for r in rows if not is_sealed(r["totp_secret"])]
        if not clear:
            return 0
        sealed = {name: self.box.seal(secret, _bound(name)) for name, secret in clear}
        now = self.clock.now()

        def seal_txn(conn: Tx) -> None:
            for name, value in sealed.items():
                # Only a value still in clear: one reset meanwhile is sealed already.
                conn.execute(
                    "UPDATE users SET totp_secret = ? WHERE name = ? AND totp_secret NOT LIKE ?",
                    (value, name, "sealed1:%"),
                )
            audit.append(
                conn,
                at=now,
                actor="node",
                event="user.totp_sealed",
                subject="",
                details={"people": len(sealed)},
            )

        await self.db.run(seal_txn)
        return len(sealed)

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
            keep_an_operator(conn, name, role_after=None)
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

    async def set_role(self, name: str, role: str, *, actor: str) -> None:
        """Another role for a person; their sessions end, so every page is read in the new one."""
        row = await self._existing(name)
        the_role = _role(role)
        if the_role.value == row.role:
            raise Conflict(N_("user {name} is {role} already"), name=name, role=the_role)
        now = self.clock.now()

        def set_role_txn(conn: Tx) -> None:
            keep_an_operator(conn, name, role_after=the_role)
            self.store.update(conn, name, {"role": the_role.value})
            ended = self.store.delete_sessions_of(conn, name)
            audit.append(
                conn,
                at=now,
                actor=actor,
                event="user.role_changed",
                subject=name,
                details={"from": row.role, "to": the_role.value, "sessions_ended": ended},
            )

        await self.db.run(set_role_txn)

    async def enable(self, name: str, *, actor: str) -> None:
        """A disabled person may sign in again (with the password and code they had)."""
        row = await self._existing(name)
        if row.disabled_at is None:
            raise Conflict(N_("user {name} is not disabled"), name=name)
        now = self.clock.now()

        def enable_txn(conn: Tx) -> None:
            self.store.update(conn, name, {"disabled_at": None})
            audit.append(conn, at=now, actor=actor, event="user.enabled", subject=name)

        await self.db.run(enable_txn)

    async def reset(self, name: str, *, totp: bool, actor: str) -> NewSecret:
        """A new password (and a new TOTP secret where one is used); signed out. A disabled
        person stays disabled: enabling is its own, audited decision (`enable`)."""
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
                    "totp_last_step": None,
                    "totp_failures": 0,
                    "totp_wait_until": None,
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
    def device_token(self, name: str) -> str:
        """What a browser keeps once `name` signed in with it (OWASP's device cookie): proof,
        checked without storage, that the person already signed in from this browser."""
        nonce = secrets.token_urlsafe(12)
        return f"{nonce}.{self.box.keyed_hash(f'device|{name}|{nonce}')}"

    def _known_device(self, name: str, token: str | None) -> str | None:
        nonce, _, mac = (token or "").partition(".")
        if not nonce or not mac:
            return None
        expected = self.box.keyed_hash(f"device|{name}|{nonce}")
        # As bytes: compare_digest refuses a str with non-ASCII characters (TypeError).
        same = hmac.compare_digest(mac.encode("utf-8", "replace"), expected.encode())
        return nonce if same else None

    async def take_sign_in_attempt(self, name: str, client: str, device: str | None = None) -> None:
        """One attempt from this address and at this name, or RateLimited. Both are limited:
        guessing one account from many addresses is slowed as much as guessing many from one.

        A browser the person already signed in with (`device`, see `device_token`) has a bucket
        of its own instead of the name's: a stranger who spends the name's allowance slows every
        other browser, but cannot lock the person out of their own. The buckets are stored (a
        restart gives no fresh allowance) under keyed hashes: neither what a stranger typed as
        a name nor their address is kept."""
        known = self._known_device(name, device)
        per_name = (
            f"device:{self.box.keyed_hash(known)}" if known else f"name:{self.box.keyed_hash(name)}"
        )
        keys = [f"addr:{self.box.keyed_hash(client)}", per_name]
        now = self.clock.now().timestamp()

        def take_txn(conn: Tx) -> int | None:
            return sign_in_limits.take(
                conn, keys, now=now, rate=self.sign_in_rate, burst=self.sign_in_burst
            )

        wait = await self.db.run(take_txn)
        if wait is not None:
            raise RateLimited(
                N_("too many sign-in attempts; retry in {seconds} s"), wait, seconds=wait
            )

    async def sign_in(self, name: str, password: str, code: str | None, *, client: str) -> Session:
        """Check name, password and TOTP code; audited whether it works or not.

        Every refusal reads the same (REFUSED), whichever factor was wrong; the audit log says
        which, for the operator. A refused stranger is audited without what they typed (a name
        field sometimes holds a password) and without their address: only a keyed hash of the
        name, which shows repeated tries at one name without revealing it.
        """
        row = await self.store.get(name) if NAME.match(name) else None
        ok = False
        try:
            ok = _HASHER.verify(row.password_hash if row else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            ok = False
        now = self.clock.now()
        secret = (
            self.box.open(row.totp_secret, _bound(row.name))
            if row is not None and ok and row.totp_secret
            else None
        )
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)

        def sign_in_txn(conn: Tx) -> str | None:
            self.store.delete_expired(conn, iso(now))
            why: str | None = None
            shown: str | None = None
            if row is None:
                why = "unknown name"
            elif not ok:
                why = "wrong password"
            elif row.totp_secret is None and self.totp_required:
                # Only after a right password: the person needs to know what to ask for.
                why = "no second factor"
                shown = N_(
                    "this node requires a second factor: ask an operator to reset the account"
                )
            elif secret is not None:
                why = self._check_code(conn, row.name, secret, code, now)
            if why is None and row is not None and row.disabled_at is not None:
                # Only once every factor was right: a disabled account confirms no password.
                why = "account disabled"
                shown = N_("account disabled")
            if why is None:
                assert row is not None
                self.store.insert_session(
                    conn,
                    id_hash=_token_hash(token),
                    user=row.name,
                    csrf=csrf,
                    created_at=iso(now),
                    expires_at=iso(now + self.session_length),
                )
                audit.append(
                    conn,
                    at=now,
                    actor=row.name,
                    event="user.signed_in",
                    subject=row.name,
                    details={"client": client},
                )
                return None
            audit.append(
                conn,
                at=now,
                actor=row.name if row is not None else "unknown",
                event="user.sign_in_refused",
                subject=row.name if row is not None else "unknown user",
                details={"reason": why}
                if row is not None
                else {"reason": why, "name_hash": self.box.keyed_hash(name)},
            )
            return shown or REFUSED

        refused = await self.db.run(sign_in_txn)
        if refused is not None:
            raise Unauthorized(refused)
        assert row is not None
        return Session(
            token,
            csrf,
            Person(row.name, UserRole(row.role), row.language, bool(row.password_temporary)),
        )

    def _check_code(
        self, conn: Tx, name: str, secret: str, code: str | None, now: datetime
    ) -> str | None:
        """Inside the sign-in transaction, after a right password: None when `code` is right,
        unused and the person is not made to wait, else why not. A code is accepted once: the
        time step it belongs to is kept, and only a later step is accepted after it. Wrong codes
        past TOTP_FREE_FAILURES make the person wait, doubling each time; the first such wait
        is audited (user.totp_guessing) and logged, since it means the password is known."""
        stored = conn.execute(
            "SELECT totp_last_step, totp_failures, totp_wait_until FROM users WHERE name = ?",
            (name,),
        ).fetchone()
        last_step, failures, wait_until = stored[0], int(stored[1]), stored[2]
        if wait_until is not None and parse_iso(wait_until) > now:
            # Not even checked: while waiting, a right code is refused as a wrong one.
            return "code guessing slowed"
        step = _matching_step(secret, (code or "").strip(), now)
        if step is not None and (last_step is None or step > last_step):
            self.store.update(
                conn,
                name,
                {"totp_last_step": step, "totp_failures": 0, "totp_wait_until": None},
            )
            return None
        failures += 1
        wait = None
        if failures > TOTP_FREE_FAILURES:
            wait = min(
                TOTP_MAX_WAIT,
                timedelta(seconds=TOTP_STEP * 2 ** min(failures - TOTP_FREE_FAILURES, 20)),
            )
        self.store.update(
            conn,
            name,
            {"totp_failures": failures, "totp_wait_until": iso(now + wait) if wait else None},
        )
        if failures == TOTP_FREE_FAILURES + 1:
            audit.append(
                conn,
                at=now,
                actor="node",
                event="user.totp_guessing",
                subject=name,
                details={"failures": failures},
            )
            log.warning(
                "%d wrong one-time codes for %s after a right password: its password is"
                " probably known to someone else; sign-ins of %s are slowed (reset it)",
                failures,
                name,
                name,
            )
        return "code replayed" if step is not None else "wrong code"

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
