"""Who makes an API call (signed, or with a login's sessionkey: sessions.load_caller), read as
one row instead of an ORM User.

Every signed call used to load its caller as a User joined with its account, the account's
role and its domain: the largest part of what a small call (queryAsyncJobResult, listZones)
cost. A `Caller` is read in one Core statement with just what the API's pipeline and most
commands read: the key check, the role check, the rate limit, the access layer's own-account
and role-type rules, events, the serialisers' admin fields.

`caller.account` loads the Account (its role and domain joined) when a command needs it, and
anything else (`caller.email`, `caller.password_hash`) the User: each once a request, through
the session's identity map, answering as the User would. A Caller stands in for a User
wherever a service takes one."""
from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Select, bindparam, select

from app.extensions import db
from app.models import Account, User
from app.models.accounts import ROLE_TYPES, AccountState, Role
from app.models.roles import AccountRole


class RoleRef(NamedTuple):
    """What the role check reads of an account's role (roles._compiled)."""
    id: int
    uuid: str
    rules_version: int
    role_type: str
    is_default: bool


def statement(*extra) -> Select:
    """The caller's row, then `extra` columns (a login session's revocation check): add the
    WHERE. Build it once (module level): building a statement costs as much as running it."""
    return (select(User.id, User.uuid, User.username, User.role, User.state, User.account_id, User.api_key,
                   User.secret_key_enc, User.session_version, Account.name, Account.role, Account.state,
                   Account.cleanup_started, Account.domain_id, AccountRole.id, AccountRole.uuid,
                   AccountRole.rules_version, AccountRole.role_type, AccountRole.is_default, *extra)
            .join(Account, Account.id == User.account_id)
            .outerjoin(AccountRole, AccountRole.id == Account.role_id))


_BY_API_KEY = statement().where(User.api_key == bindparam("api_key"), User.removed.is_(None))


class Caller:
    """A User's identity, from one row; the User itself on demand (see the module's text)."""

    __slots__ = ("id", "uuid", "username", "role", "state", "account_id", "api_key", "secret_key_enc",
                 "session_version", "account_name", "account_role", "account_state", "account_cleanup_started",
                 "domain_id", "role_ref", "_user")

    def __init__(self, r) -> None:
        """From a row of statement() (its extra columns after these)."""
        (self.id, self.uuid, self.username, self.role, self.state, self.account_id, self.api_key,
         self.secret_key_enc, self.session_version, self.account_name, self.account_role, self.account_state,
         self.account_cleanup_started, self.domain_id) = r[:14]
        self.role_ref = RoleRef(*r[14:19]) if r[14] is not None else None
        self._user: User | None = None

    # The User's own properties, from the row (app/models/accounts.py says what they mean).
    removed: datetime | None = None  # the statement reads live users only

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def role_type(self) -> str:
        if self.role_ref is not None:
            return self.role_ref.role_type
        return ROLE_TYPES.get(self.account_role, "User")

    @property
    def is_active(self) -> bool:
        return (self.state == AccountState.ENABLED and self.account_state == AccountState.ENABLED
                and self.account_cleanup_started is None)

    @property
    def account(self) -> Account:
        """The ORM Account (with its role and domain: one statement, the first time): what a
        create call makes its object for (access.owner_for)."""
        if self._user is not None:
            return self._user.account
        return db.session.get(Account, self.account_id)

    def user(self) -> User:
        """The ORM User (one statement, the first time)."""
        if self._user is None:
            self._user = db.session.get(User, self.id)
        return self._user

    def __getattr__(self, name: str):
        # Only for names not above (slots, properties): the User answers.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.user(), name)

    def __eq__(self, other) -> bool:
        return isinstance(other, (Caller, User)) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("user", self.id))

    def __repr__(self) -> str:
        return f"<Caller {self.username} ({self.id})>"


def by_api_key(api_key: str) -> Caller | None:
    # On the session's connection: a Core row needs none of the ORM's execution steps.
    row = db.session.connection().execute(_BY_API_KEY, {"api_key": api_key}).first()
    return Caller(row) if row is not None else None
