"""Accounts, users, passwords, login throttling and API keys."""
from __future__ import annotations

import re
import secrets
from datetime import timedelta

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db
from app.models import Account, AccountState, Role, User, new_uuid, utcnow
from app.services import crypto, events, settings
from app.services.errors import InvalidParameter, NotFound, PermissionDenied, ServiceError

NAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,255}$")
# Hashing a dummy password for unknown users keeps timing the same either way.
_DUMMY_HASH = generate_password_hash("nubo-dummy-password", method="scrypt")


class LoginThrottled(ServiceError):
    code = 429

    def __init__(self, wait: int):
        super().__init__(f"Too many failed attempts. Try again in {wait} s.")
        self.wait = wait


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


def _check_name(name: str, what: str) -> str:
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise InvalidParameter(f"{what} must be 1-255 letters, digits or _.@+-", field=what.lower())
    return name


def _check_password(password: str) -> None:
    if not password or len(password) < 6:
        raise InvalidParameter("Password must be at least 6 characters", field="password")


def get_account(name: str) -> Account | None:
    return db.session.scalar(select(Account).where(Account.name == name, Account.removed.is_(None)))


def get_user(username: str) -> User | None:
    return db.session.scalar(select(User).where(User.username == username, User.removed.is_(None)))


def create_account(name: str, role: str = Role.USER, *, commit: bool = True) -> Account:
    name = _check_name(name, "Account")
    if role not in (Role.ADMIN, Role.USER):
        raise InvalidParameter("Role must be admin or user", field="role")
    if get_account(name):
        raise InvalidParameter(f"An account named {name} already exists", field="account")
    acct = Account(name=name, role=role)
    db.session.add(acct)
    if commit:
        db.session.commit()
    return acct


def create_user(username: str, password: str, *, role: str | None = None, account: str | None = None,
                email: str | None = None, firstname: str | None = None,
                lastname: str | None = None) -> User:
    """Create a user; its account is created when it does not exist (named after the
    user unless given). The user's role follows its account's type, as in CloudStack."""
    username = _check_name(username, "Username")
    _check_password(password)
    if get_user(username):
        raise InvalidParameter(f"A user named {username} already exists", field="username")
    acct = get_account(account or username)
    if acct is None:
        acct = create_account(account or username, role or Role.USER, commit=False)
    elif role and role != acct.role:
        raise InvalidParameter(f"Account {acct.name} is an {acct.role} account; "
                               f"cannot add a user with role {role}", field="role")
    user = User(uuid=new_uuid(), username=username, password_hash=hash_password(password), role=acct.role,
                account=acct, email=email, firstname=firstname, lastname=lastname)
    db.session.add(user)
    events.record("USER.CREATE", f"User {username} created in account {acct.name}",
                  account_id=None, resource_type="User", resource_id=user.uuid)
    db.session.commit()
    return user


def set_password(user: User, password: str) -> None:
    _check_password(password)
    user.password_hash = hash_password(password)
    db.session.commit()


def throttle_wait(user: User) -> int:
    """Seconds this user must still wait before another login attempt is checked."""
    allowed = settings.get("login.throttle.attempts")
    if user.failed_logins < allowed or user.last_failed_login is None:
        return 0
    wait = min(2 ** (user.failed_logins - allowed), settings.get("login.throttle.max.wait"))
    remaining = (user.last_failed_login + timedelta(seconds=wait) - utcnow()).total_seconds()
    return max(0, int(remaining + 0.999))


def authenticate(username: str, password: str) -> User | None:
    """Check credentials. Returns the user, or None for a wrong name/password or a
    disabled user (the caller shows one message for all). Raises LoginThrottled
    while a user with repeated failures must wait; every failure is logged."""
    user = get_user((username or "").strip())
    if user is None:
        check_password_hash(_DUMMY_HASH, password or "")
        events.record("USER.LOGIN", f"Failed login for unknown user {username!r}",
                      level="WARN", commit=True)
        return None
    wait = throttle_wait(user)
    if wait:
        events.record("USER.LOGIN", f"Throttled login for {user.username} ({user.failed_logins} failures)",
                      user=user, level="WARN", commit=True)
        raise LoginThrottled(wait)
    if not check_password_hash(user.password_hash, password or "") or not user.is_active:
        user.failed_logins += 1
        user.last_failed_login = utcnow()
        events.record("USER.LOGIN", f"Failed login for {user.username} (failure {user.failed_logins})",
                      user=user, level="WARN", commit=True)
        return None
    user.failed_logins = 0
    user.last_login = utcnow()
    events.record("USER.LOGIN", f"User {user.username} logged in", user=user, commit=True)
    return user


def register_keys(user: User) -> tuple[str, str]:
    """New API key and secret for the user (replacing any old pair)."""
    api_key = secrets.token_urlsafe(64)
    secret = secrets.token_urlsafe(64)
    user.api_key = api_key
    user.secret_key_enc = crypto.encrypt(secret)
    events.record("REGISTER.USER.KEY", f"API keys registered for {user.username}",
                  user=user, resource_type="User", resource_id=user.uuid)
    db.session.commit()
    return api_key, secret


def get_keys(user: User) -> tuple[str, str] | None:
    if not user.api_key or not user.secret_key_enc:
        return None
    return user.api_key, crypto.decrypt(user.secret_key_enc)


def ensure_keys(user: User) -> tuple[str, str]:
    return get_keys(user) or register_keys(user)


def user_by_api_key(api_key: str) -> User | None:
    return db.session.scalar(select(User).where(User.api_key == api_key, User.removed.is_(None)))


def user_by_uuid(uuid: str) -> User:
    user = db.session.scalar(select(User).where(User.uuid == uuid, User.removed.is_(None)))
    if user is None:
        raise NotFound("Unable to find user with specified id", field="id")
    return user


def set_user_state(user: User, enabled: bool) -> User:
    user.state = AccountState.ENABLED if enabled else AccountState.DISABLED
    events.record("USER.ENABLE" if enabled else "USER.DISABLE",
                  f"User {user.username} {'enabled' if enabled else 'disabled'}",
                  resource_type="User", resource_id=user.uuid)
    db.session.commit()
    return user


def ensure_admin(password: str | None) -> str | None:
    """First start: create `admin` (in account `admin`). Returns the generated
    password when one had to be made up, so the caller can print it once."""
    if get_user("admin"):
        return None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(12)
    create_user("admin", password, role=Role.ADMIN, account="admin")
    return generated


# --- Lists and administration (API and admin pages) ---------------------------

def list_users(caller: User, *, id: str | None = None, username: str | None = None,
               account: str | None = None, state: str | None = None, keyword: str | None = None,
               listall: bool = False, page=None):
    """Admins see every user; a user sees the users of their own account."""
    from app.services.pagination import page_of
    q = select(User).join(Account).where(User.removed.is_(None)).order_by(User.id)
    if not caller.is_admin:
        q = q.where(User.account_id == caller.account_id)
    elif account:
        q = q.where(Account.name == account)
    if id:
        q = q.where(User.uuid == id)
    if username:
        q = q.where(User.username == username)
    if state:
        q = q.where(User.state == state.lower())
    if keyword:
        q = q.where(User.username.contains(keyword, autoescape=True))
    return page_of(q, page)


def list_accounts(caller: User, *, id: str | None = None, name: str | None = None,
                  keyword: str | None = None, page=None):
    from app.services.pagination import page_of
    q = select(Account).where(Account.removed.is_(None)).order_by(Account.id)
    if not caller.is_admin:
        q = q.where(Account.id == caller.account_id)
    if id:
        q = q.where(Account.uuid == id)
    if name:
        q = q.where(Account.name == name)
    if keyword:
        q = q.where(Account.name.contains(keyword, autoescape=True))
    return page_of(q, page)


def visible_user(caller: User, uuid: str) -> User:
    """A user the caller may act on (admins: any; users: only themselves)."""
    user = db.session.scalar(select(User).where(User.uuid == uuid, User.removed.is_(None)))
    if user is None or (not caller.is_admin and user.id != caller.id):
        raise NotFound("Unable to find user with specified id", field="id")
    return user


def delete_user(caller: User, user: User) -> None:
    if user.id == caller.id:
        raise InvalidParameter("You cannot delete yourself", field="id")
    if user.username == "admin":
        raise InvalidParameter("The default admin user cannot be deleted", field="id")
    user.removed = utcnow()
    user.api_key = None
    user.secret_key_enc = None
    events.record("USER.DELETE", f"User {user.username} deleted", user=caller,
                  resource_type="User", resource_id=user.uuid)
    db.session.commit()


# --- Self-service and account administration (pages and updateUser) ----------

def visible_account(caller: User, uuid: str) -> Account:
    """An account the caller may see: admins any, users their own (else "not found")."""
    q = select(Account).where(Account.uuid == uuid, Account.removed.is_(None))
    if not caller.is_admin:
        q = q.where(Account.id == caller.account_id)
    acct = db.session.scalar(q)
    if acct is None:
        raise NotFound("Unable to find account with the specified id", field="id")
    return acct


def named_account(caller: User, name: str | None) -> Account:
    """The account an API call names (account=): the caller's own when none is named;
    another only for admins (users: 531), "not found" when it does not exist."""
    if not name or name == caller.account.name:
        return caller.account
    if not caller.is_admin:
        raise PermissionDenied(f"You may only act in your own account, {caller.account.name}")
    acct = get_account(name)
    if acct is None:
        raise NotFound(f"Unable to find account {name}", field="account")
    return acct


def update_user(caller: User, user: User, *, username: str | None = None, firstname: str | None = None,
                lastname: str | None = None, email: str | None = None, password: str | None = None,
                current_password: str | None = None) -> User:
    """updateUser: users change their own names, email and password; admins anyone's,
    the user name included. Changing one's own password needs the current one."""
    if not caller.is_admin and user.id != caller.id:
        raise NotFound("Unable to find user with specified id", field="id")
    if username is not None and username != user.username:
        if not caller.is_admin:
            raise PermissionDenied("Only administrators may rename users")
        username = _check_name(username, "Username")
        if get_user(username):
            raise InvalidParameter(f"A user named {username} already exists", field="username")
        user.username = username
    for attr, value in (("firstname", firstname), ("lastname", lastname), ("email", email)):
        if value is not None:
            if len(value) > 255:
                raise InvalidParameter(f"{attr} is at most 255 characters", field=attr)
            setattr(user, attr, value.strip() or None)
    if password is not None:
        _check_password(password)
        if user.id == caller.id and not check_password_hash(user.password_hash, current_password or ""):
            raise InvalidParameter("The current password is wrong", field="currentpassword")
        user.password_hash = hash_password(password)
        user.failed_logins = 0
    events.record("USER.UPDATE", f"User {user.username} updated" + (" (password changed)" if password else ""),
                  user=caller, account_id=user.account_id, resource_type="User", resource_id=user.uuid)
    db.session.commit()
    return user


def set_account_state(caller: User, account: Account, enabled: bool) -> Account:
    """Enable or disable a whole account: its users can neither log in nor call the API."""
    if account.id == caller.account_id and not enabled:
        raise InvalidParameter("You cannot disable your own account", field="id")
    account.state = AccountState.ENABLED if enabled else AccountState.DISABLED
    events.record("ACCOUNT.ENABLE" if enabled else "ACCOUNT.DISABLE",
                  f"Account {account.name} {'enabled' if enabled else 'disabled'}", user=caller,
                  account_id=account.id, resource_type="Account", resource_id=account.uuid)
    db.session.commit()
    return account


def account_names(limit: int = 500) -> list[str]:
    """Names of live accounts, for filter selects: one light query."""
    return list(db.session.scalars(select(Account.name).where(Account.removed.is_(None))
                                   .order_by(Account.name).limit(limit)))
