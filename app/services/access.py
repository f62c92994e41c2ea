"""The one access layer: which accounts' objects a caller may see and act on, and whose
name a create call makes something in. Every service filters its queries through
`owned(...)` and picks owners through `owner_for(...)`, so that domains, projects and
roles change the rule here, once, for every object kind.

Today's rule (before domains and projects): a root admin sees every account; anyone else
sees only their own account's objects.
"""
from __future__ import annotations

from sqlalchemy import ColumnElement, true

from app.models import Account


def owned(caller, column) -> ColumnElement[bool]:
    """A WHERE criterion on an `account_id` column: the rows the caller may see.
    Use it in every query that lists or looks up an account's objects:

        select(Snapshot).where(access.owned(caller, Snapshot.account_id))
    """
    if caller.is_admin:
        return true()
    return column == caller.account_id


def can_see(caller, account_id: int | None) -> bool:
    """The same rule for one row already loaded (account_id None: not owned by anyone)."""
    return caller.is_admin or (account_id is not None and account_id == caller.account_id)


def owner_for(caller, account: str | None = None, domainid: str | None = None,
              projectid: str | None = None) -> Account:
    """The account a create call makes its object for: CloudStack's `account` (+ `domainid`)
    or `projectid`; the caller's own account when none is named. Naming another account is
    refused for those who may not act in it (531); an unknown one is "not found" (431)."""
    from app.services import accounts
    return accounts.named_account(caller, account)
