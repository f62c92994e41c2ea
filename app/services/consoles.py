"""Console access: single-use tokens, the sessions the console proxy opens with
them, the Hyper-V .rdp file, and their audit events.

A ConsoleSession row goes through:
- create_console(): a random token (only its sha256 is stored) bound to the user,
  the VM and the console kind; `expires` = now + console.token.ttl (≤ 60 s to
  connect); `browser_session` = sha256 of the web session's console id (None
  for API tokens); `client_address` = who asked.
- consume() at the proxy, first connect: a guarded UPDATE on `used IS NULL` (the
  first connect wins) sets `used`, `client_address` (who connected), the target
  = the VM's console *now*, from Nubo's records — never anything the client
  sends —, and turns `expires` into the session's end (console.session.max).
- close() when the connection ends sets `closed`; within console.reconnect.window
  after that, the same browser session (API tokens: the same client address)
  may reconnect with the same token, to the same target only.
- end_session() (an admin) and forget_vm() (VM expunged or migrated) set
  `expires` = now: the proxy's periodic check() ends the connection, and no
  reconnect is possible.
Every accepted, refused, closed and ended connection is an event (CONSOLE.*)
with user, VM and source address; a token is never logged or stored in clear.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import delete, select, update

from app.extensions import db
from app.hypervisors import registry
from app.hypervisors.base import ConsoleKind, ConsoleTarget, DriverError
from app.hypervisors.hyperv.driver import RDP_PORT, rdp_file
from app.hypervisors.simulator import SimulatorType
from app.models import ConsoleSession, User, VirtualMachine, VMState, utcnow
from app.services import events, settings, vms
from app.services import hypervisors as hv
from app.services.errors import (InvalidParameter, NotFound, PermissionDenied, ResourceUnavailable, ServiceError,
                                 Unsupported)
from app.services.pagination import page_of
from app.services.settings import Definition, define

define(Definition("console.token.ttl", "60", "Seconds a console token may be used to connect (at most 60).",
                  category="Console", type="integer", min=5, max=60, unit="seconds"))
define(Definition("console.reconnect.window", "10", "Seconds after a console connection ends during which the "
                  "same browser session may reconnect with its token (0: never).", category="Console",
                  type="integer", min=0, max=300, unit="seconds"))
define(Definition("console.session.max", "14400", "Longest console session in seconds: the proxy then closes it.",
                  category="Console", type="integer", min=60, max=604800, unit="seconds"))
define(Definition("console.idle.timeout", "1800", "Seconds without keyboard or mouse input after which the "
                  "proxy closes a console session (0: never).", category="Console", type="integer", min=0,
                  max=86400, unit="seconds"))
define(Definition("console.vnc.port.min", "5900", "Lowest port the console proxy connects to (libvirt's "
                  "remote_display_port_min): a console recorded on a lower port is refused.", category="Console",
                  type="integer", min=1, max=65535))
define(Definition("console.hyperv.grant.access", "false", "Grant the user VMConnect access to a Hyper-V VM "
                  "(Grant-VMConnectAccess on its host) when they download its .rdp file.", category="Console",
                  type="boolean"))
_WINDOWS_DOMAIN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,253}[A-Za-z0-9])?\Z")


def _check_user_domain(value: str) -> None:
    """A NetBIOS or DNS domain name: it goes into .rdp files and PowerShell grants as DOMAIN\\user."""
    if value and not _WINDOWS_DOMAIN.match(value):
        raise InvalidParameter("console.hyperv.user.domain must be a Windows domain name: ASCII letters, digits, "
                               "dots and hyphens, at most 255 characters", field="value")


define(Definition("console.hyperv.user.domain", "", "Windows domain put before Nubo user names in .rdp files and "
                  "VMConnect grants (DOMAIN\\user); empty: the bare user name.", category="Console",
                  validate=_check_user_domain))

SESSION_KEY = "console_sid"  # the web session's console id: binds reconnects to one browser session
# Where the VNC password an extension's getconsole gave is kept (encrypted) for the proxy.
CONSOLE_SECRET = "UserVmConsole"


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _now() -> datetime:
    """Whole seconds: guarded UPDATEs compare stored times, and MariaDB keeps no fractions."""
    return utcnow().replace(microsecond=0)


# --- What a VM offers ---------------------------------------------------------------

def kind_of(vm: VirtualMachine) -> ConsoleKind:
    t = registry.get(vm.hypervisor_type)
    return t.capabilities.console if t else ConsoleKind.NONE


def _refusal(vm: VirtualMachine) -> ServiceError | None:
    """Why the VM offers no console now (None: it does)."""
    kind, name = kind_of(vm), hv.display_name(vm.hypervisor_type)
    if kind == ConsoleKind.NONE:
        return Unsupported(f"{name} VMs have no console")
    if kind == ConsoleKind.TEXT:
        return Unsupported(f"The text console of {name} VMs is not available in Nubo yet")
    # A Simulator VM's console is a made-up port on 127.0.0.1: relaying to it
    # could reach a real service (or a real guest's VNC) on this machine.
    if vm.hypervisor_type == SimulatorType.name:
        return Unsupported("Simulator VMs have no screen to show")
    if vm.removed is not None or vm.state != VMState.RUNNING:
        return InvalidParameter(f"VM {vm.name} is {vm.state}; its console is available only while it is Running",
                                field="virtualmachineid")
    if kind == ConsoleKind.RDP and not (vm.hypervisor_vm_id and (vm.console_host or vm.host)):
        return ResourceUnavailable(f"Hyper-V has not reported the id of VM {vm.name} yet")
    if kind == ConsoleKind.VNC and not (vm.console_host and vm.console_port) and not _asked_when_opened(vm):
        return ResourceUnavailable(f"The hypervisor has not reported the console of VM {vm.name}")
    return None


def _asked_when_opened(vm: VirtualMachine) -> bool:
    """An extension's VM: its console is asked (`getconsole`) when it is opened, not reported at start."""
    from app.services.extensions import calls as extension_calls
    return vm.host is not None and extension_calls.serves(vm.host)


def unavailable(vm: VirtualMachine) -> str | None:
    """For pages: why there is no Console button (None: there is one). A running VM that an
    extension runs has one: its console is asked for (getconsole) when it is opened."""
    error = _refusal(vm)
    if isinstance(error, ResourceUnavailable) and vm.state == VMState.RUNNING:
        from app.services.extensions import calls as extension_calls
        if extension_calls.serves(vm.host):
            return None
    return error.message if error else None


def _target(vm: VirtualMachine | None) -> tuple[tuple[str, int] | None, str]:
    """The one address the proxy may connect to for the VM: its VNC console as
    recorded now (set by the driver at start and after migration)."""
    if vm is None or vm.removed is not None:
        return None, "the VM no longer exists"
    error = _refusal(vm)
    if error is not None or kind_of(vm) != ConsoleKind.VNC:
        return None, error.message if error else "the VM has no VNC console"
    if vm.console_port < settings.get("console.vnc.port.min"):
        return None, f"port {vm.console_port} is below console.vnc.port.min"
    return (vm.console_host, vm.console_port), ""


# --- Tokens -------------------------------------------------------------------------

def create_console(caller, vm_uuid: str, *, browser_session: str | None = None,
                   client_address: str | None = None, asked: bool = False) -> tuple[str, ConsoleSession]:
    """A token for the VM's console (the caller must be allowed to use the VM:
    another account's VM is "not found"). Returns the token — the only time it
    exists in clear — and its row."""
    vm = vms.get_vm(caller, vm_uuid, "virtualmachineid")
    if not asked and _external_direct(vm) is not None:
        raise Unsupported(f"The console of VM {vm.name} is a link its extension gives (the VM page's Console)")
    error = _refusal(vm)
    if error is None and kind_of(vm) == ConsoleKind.RDP:
        error = Unsupported("The console of a Hyper-V VM is an .rdp file for VMConnect (the VM page's Console)")
    if error is not None:
        raise error
    now = _now()
    # Tokens nobody used are no use once expired.
    db.session.execute(delete(ConsoleSession).where(ConsoleSession.used.is_(None), ConsoleSession.expires < now)
                       .execution_options(synchronize_session=False))
    token = secrets.token_urlsafe(32)
    row = ConsoleSession(token_hash=_hash(token), user_id=caller.id, vm_id=vm.id, kind=ConsoleKind.VNC.value,
                         expires=now + timedelta(seconds=settings.get("console.token.ttl")),
                         client_address=client_address,
                         browser_session=_hash(browser_session) if browser_session else None)
    db.session.add(row)
    db.session.commit()
    return token, row


def websocket_url(token: str) -> str:
    """Where a browser connects, with the token (NUBO_CONSOLE_PUBLIC_URL)."""
    base = current_app.config["CONSOLE_PUBLIC_URL"]
    return f"{base}{'&' if '?' in base else '?'}token={token}"


def endpoint(caller, vm_uuid: str, *, client_address: str | None, page_url: str) -> dict:
    """createConsoleEndpoint: CloudStack's answer (url + websocket host/port/path/token).
    The url opens Nubo's console page with the token in its fragment (never sent
    to the web server, so never in its logs)."""
    direct = _external_direct(vms.get_vm(caller, vm_uuid, "virtualmachineid"))
    if direct is not None:  # an extension's own console: its URL, as CloudStack answers a `direct` one
        return {"success": True, "url": direct}
    token, _ = create_console(caller, vm_uuid, client_address=client_address, asked=True)
    u = urlsplit(current_app.config["CONSOLE_PUBLIC_URL"])
    port = u.port or (443 if u.scheme == "wss" else 80)
    return {"success": True, "url": f"{page_url}#token={token}",
            "websocket": {"token": token, "host": u.hostname, "port": str(port), "path": u.path or "/"}}


@dataclass(frozen=True)
class Opened:
    """What the VM page's Console action gives: a VNC page or a Hyper-V .rdp file."""
    vm: VirtualMachine
    url: str | None = None  # VNC: the websocket URL with a fresh token
    rdp: tuple[str, str] | None = None  # Hyper-V: (file name, contents)
    direct: str | None = None  # an extension's `direct` console URL, shown as a link


def _external_direct(vm: VirtualMachine) -> str | None:
    """A VM run by an extension: ask it (`getconsole`) now. A VNC answer is recorded as the VM's
    console (then proxied with the same single-use tokens as any VNC console); a `direct` URL is
    returned, to be shown as a link. None for every other VM."""
    from app.services.extensions import calls as extension_calls
    host = vm.host
    if vm.state != VMState.RUNNING or host is None or not extension_calls.serves(host):
        return None
    driver = extension_calls.driver_for(host, [vm], caller=events.actor())
    db.session.commit()
    try:
        target = driver.console_target(vm.instance_name)
    except DriverError as e:
        raise ResourceUnavailable(f"The extension gave no console for VM {vm.name}: {e}") from None
    finally:
        driver.close()
    external = getattr(target, "external", None)
    if external is not None and external.url:
        if urlsplit(external.url).scheme.lower() not in ("http", "https"):
            raise ResourceUnavailable(f"The extension's console link for VM {vm.name} is not http(s)")
        return external.url
    vm.console_host, vm.console_port = target.host, target.port
    from app.services.extensions import details as extension_details
    extension_details.replace(CONSOLE_SECRET, vm.id, {"password": target.password} if target.password else {})
    db.session.commit()
    return None


def open_console(caller, vm_uuid: str, *, browser_session: str | None, client_address: str | None) -> Opened:
    vm = vms.get_vm(caller, vm_uuid, "virtualmachineid")
    direct = _external_direct(vm)
    if direct is not None:
        return Opened(vm, direct=direct)
    if kind_of(vm) == ConsoleKind.RDP:
        return Opened(vm, rdp=rdp(caller, vm_uuid, client_address=client_address))
    token, _ = create_console(caller, vm_uuid, browser_session=browser_session, client_address=client_address,
                              asked=True)
    return Opened(vm, url=websocket_url(token))


@dataclass(frozen=True)
class Grant:
    """What the proxy may connect to for one accepted token."""
    session_id: int
    user_id: int
    vm_id: int
    host: str
    port: int
    used: datetime  # this connection's start (guards close())
    ends: datetime  # the session's end: console.session.max after its first connect
    # The VNC password the proxy answers the console with (an extension's getconsole gave one);
    # never sent to the browser, never in a repr (a grant printed or logged).
    password: str | None = field(default=None, repr=False)


def consume(token: str | None, *, client_address: str | None, browser_session: str | None = None) -> Grant | None:
    """The proxy's check of a token (None: refused, and logged). Atomic: of two
    connects with one token, one wins; a reconnect needs the same browser session
    (or, for API tokens, client address) within console.reconnect.window of the
    previous connection's end."""
    now = _now()
    row = _session_of(token) if token else None
    if row is None:
        return _refuse(None, client_address, "no token" if not token else "unknown token")
    target, why = _target(db.session.get(VirtualMachine, row.vm_id))
    if target is None:
        return _refuse(row, client_address, why)
    if row.used is None:
        if now >= row.expires:
            return _refuse(row, client_address, "expired token")
        ends = now + timedelta(seconds=settings.get("console.session.max"))
        guard = (ConsoleSession.used.is_(None), ConsoleSession.expires > now)
        values = dict(used=now, client_address=client_address, target_host=target[0], target_port=target[1],
                      expires=ends)
    else:
        why = _no_reconnect(row, target, now, client_address, browser_session)
        if why:
            return _refuse(row, client_address, why)
        ends, values = row.expires, dict(used=now, closed=None)
        guard = (ConsoleSession.used == row.used, ConsoleSession.closed == row.closed)
    done = db.session.execute(update(ConsoleSession).where(ConsoleSession.id == row.id, *guard).values(**values)
                              .execution_options(synchronize_session=False))
    if done.rowcount != 1:
        db.session.rollback()
        return _refuse(row, client_address, "token already used")
    _record(row, "CONSOLE.OPEN", f"{'reconnected' if row.used else 'opened'} from {client_address or 'unknown'}",
            client_address)
    db.session.commit()
    from app.services.extensions import details as extension_details
    password = extension_details.values_of(CONSOLE_SECRET, row.vm_id).get("password")
    return Grant(row.id, row.user_id, row.vm_id, target[0], target[1], used=now, ends=ends, password=password)


def _session_of(token: str) -> ConsoleSession | None:
    return db.session.scalar(select(ConsoleSession).where(ConsoleSession.token_hash == _hash(token)))


def warm_up() -> None:
    """For the console proxy's parent process: consume()'s look-ups once, writing
    nothing, so that the connection processes it forks start with them ready."""
    _session_of(secrets.token_urlsafe(32))
    _target(db.session.get(VirtualMachine, 0))
    settings.get("console.session.max")
    db.session.rollback()


def _no_reconnect(row: ConsoleSession, target, now, client_address, browser_session) -> str | None:
    """Why a used token may not connect again (None: a reconnect it may make)."""
    if row.browser_session is not None:
        same = bool(browser_session) and secrets.compare_digest(row.browser_session, _hash(browser_session))
    else:
        same = client_address is not None and row.client_address == client_address
    if not same:
        return "token already used"
    if row.closed is None:
        return "token already used (its session is connected)"
    if now >= row.expires:
        return "the session has ended"
    window = settings.get("console.reconnect.window")
    if window <= 0 or now - row.closed > timedelta(seconds=window):
        return "token already used (the reconnect window has passed)"
    if (row.target_host, row.target_port) != target:
        return "the VM's console has moved since the token was used"
    return None


def refuse(client_address: str | None, why: str) -> None:
    """Log a console connection refused before any token was found (e.g. its Origin):
    aggregated per source and window, as anyone can cause it (app/services/events.py)."""
    events.record_unauthenticated("CONSOLE.REFUSED", f"Console connection from {client_address or 'unknown'} "
                                  f"refused: {why}", source_address=client_address)


def _refuse(row: ConsoleSession | None, client_address: str | None, why: str) -> None:
    if row is None:
        refuse(client_address, why)
    else:
        _record(row, "CONSOLE.REFUSED", f"connection from {client_address or 'unknown'} refused: {why}",
                client_address, level="WARN")
        db.session.commit()
    return None


def _record(row: ConsoleSession, type_: str, what: str, source: str | None, level: str = "INFO",
            user=None) -> None:
    vm = db.session.get(VirtualMachine, row.vm_id)
    owner = db.session.get(User, row.user_id)
    events.record(type_, f"Console of VM {vm.name if vm else row.vm_id} ({owner.username if owner else '?'}): {what}",
                  user=user or owner, account_id=owner.account_id if owner else None, level=level,
                  resource_type="VirtualMachine", resource_id=vm.uuid if vm else None, source_address=source)


def check(grant: Grant) -> str | None:
    """Why an open console connection must end now (None: it may go on)."""
    now = _now()
    target, why = _target(db.session.get(VirtualMachine, grant.vm_id))
    if target is None:
        return why
    if target != (grant.host, grant.port):
        return "the VM's console has moved"
    row = db.session.get(ConsoleSession, grant.session_id)
    if row is None:
        return "the session no longer exists"
    if now >= grant.ends:
        return "the maximum session length was reached"
    if now >= row.expires:
        return "ended by an administrator"
    return None


def close(grant: Grant, reason: str, client_address: str | None) -> None:
    """The proxy's connection ended: record when (unless a reconnect took over) and why."""
    now = _now()
    db.session.execute(update(ConsoleSession).where(ConsoleSession.id == grant.session_id,
                                                    ConsoleSession.used == grant.used)
                       .values(closed=now).execution_options(synchronize_session=False))
    row = db.session.get(ConsoleSession, grant.session_id)
    if row is not None:
        _record(row, "CONSOLE.CLOSE", f"closed after {now - grant.used} ({reason})", client_address)
    db.session.commit()


def forget_vm(vm: VirtualMachine) -> None:
    """The VM is expunged or has moved: its unused tokens go, its open sessions end
    (the proxy notices at its next check) and none can reconnect. In the caller's
    transaction."""
    db.session.execute(delete(ConsoleSession).where(ConsoleSession.vm_id == vm.id, ConsoleSession.used.is_(None))
                       .execution_options(synchronize_session=False))
    now = _now()
    db.session.execute(update(ConsoleSession).where(ConsoleSession.vm_id == vm.id, ConsoleSession.expires > now)
                       .values(expires=now).execution_options(synchronize_session=False))


# --- Sessions for people ---------------------------------------------------------------

@dataclass(frozen=True)
class SessionView:
    session: ConsoleSession
    user: User
    vm: VirtualMachine

    @property
    def active(self) -> bool:
        s = self.session
        return s.used is not None and s.closed is None and s.expires > _now()


def list_sessions(caller, *, active_only: bool = True, vm_uuid: str | None = None, uuid: str | None = None,
                  page=None) -> tuple[list[SessionView], int]:
    """Console sessions, newest first: admins see all, users their own. Active:
    connected now (used, not closed, not ended)."""
    q = (select(ConsoleSession, User, VirtualMachine).join(User, User.id == ConsoleSession.user_id)
         .join(VirtualMachine, VirtualMachine.id == ConsoleSession.vm_id).order_by(ConsoleSession.id.desc()))
    if not caller.is_admin:
        q = q.where(ConsoleSession.user_id == caller.id)
    if active_only:
        q = q.where(ConsoleSession.used.is_not(None), ConsoleSession.closed.is_(None),
                    ConsoleSession.expires > _now())
    if vm_uuid:
        q = q.where(VirtualMachine.uuid == vm_uuid)
    if uuid:
        q = q.where(ConsoleSession.uuid == uuid)
    rows, total = page_of(q, page, scalars=False)
    return [SessionView(*r) for r in rows], total


def end_session(caller, uuid: str) -> ConsoleSession:
    """An admin ends a console session: the proxy closes it within its check
    interval (NUBO_CONSOLE_CHECK_SECONDS) and it cannot reconnect."""
    if not caller.is_admin:
        raise PermissionDenied("Only administrators may end console sessions")
    row = db.session.scalar(select(ConsoleSession).where(ConsoleSession.uuid == uuid))
    if row is None:
        raise NotFound("Unable to find console session with the specified id", field="id")
    now = _now()
    done = db.session.execute(update(ConsoleSession).where(
        ConsoleSession.id == row.id, ConsoleSession.used.is_not(None), ConsoleSession.closed.is_(None),
        ConsoleSession.expires > now).values(expires=now, closed=now).execution_options(synchronize_session=False))
    if done.rowcount != 1:
        db.session.rollback()
        raise InvalidParameter("That console session is not active", field="id")
    _record(row, "CONSOLE.END", f"ended by {caller.username}", None, user=caller)
    db.session.commit()
    db.session.refresh(row)
    return row


# --- Hyper-V: an .rdp file for VMConnect ------------------------------------------------

def rdp(caller, vm_uuid: str, *, client_address: str | None = None) -> tuple[str, str]:
    """(file name, contents) of the VMConnect .rdp file of a running Hyper-V VM:
    RDP to its host on 2179 with the VM's GUID; the user name, never a password.
    With console.hyperv.grant.access, the user is first granted VMConnect access."""
    vm = vms.get_vm(caller, vm_uuid, "virtualmachineid")
    error = _refusal(vm)
    if error is None and kind_of(vm) != ConsoleKind.RDP:
        error = Unsupported(f"{hv.display_name(vm.hypervisor_type)} consoles open in the browser, not over RDP")
    if error is not None:
        raise error
    domain = settings.get("console.hyperv.user.domain")
    username = f"{domain}\\{caller.username}" if domain else caller.username
    target = ConsoleTarget(kind=ConsoleKind.RDP, host=vm.console_host or vm.host.address,
                           port=vm.console_port or RDP_PORT, vm_guid=vm.hypervisor_vm_id)
    try:  # built first: a refused file grants nothing and records no console opening
        text = rdp_file(target, username)
    except ValueError as e:  # a host address or user name that would add a line to the file
        raise InvalidParameter(f"No .rdp file can be made for VM {vm.name}: {e}") from None
    if settings.get("console.hyperv.grant.access"):
        _grant_vmconnect(vm, username)
    events.record("CONSOLE.OPEN", f"Console of VM {vm.name} ({caller.username}): .rdp file for VMConnect to "
                  f"{target.host}:{target.port}", user=caller, resource_type="VirtualMachine",
                  resource_id=vm.uuid, source_address=client_address, commit=True)
    return f"{vm.name}.rdp", text


def _grant_vmconnect(vm: VirtualMachine, username: str) -> None:
    from app.services.hosts import connection_for
    driver = hv.driver_for(vm.host.hypervisor_type, connection_for(vm.host))
    try:
        driver.grant_console_access(vm.instance_name, username)
    except DriverError as e:
        raise ResourceUnavailable(f"VMConnect access to VM {vm.name} could not be granted to {username}: {e}") from None
    finally:
        driver.close()
