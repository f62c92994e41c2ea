"""Console access records (tokens and sessions). The console issue builds the
token service and the proxy on these rows; here: forgetting a VM's tokens when it
is expunged or moves to another host (a token names one host and port)."""
from __future__ import annotations

from sqlalchemy import delete

from app.extensions import db
from app.models import ConsoleSession, VirtualMachine


def forget_vm(vm: VirtualMachine) -> None:
    """Unused tokens of the VM can no longer be used; open sessions are ended by the proxy."""
    db.session.execute(delete(ConsoleSession).where(ConsoleSession.vm_id == vm.id, ConsoleSession.used.is_(None)))
