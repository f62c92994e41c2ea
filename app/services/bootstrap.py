"""First-start set-up, safe to run on every start."""
from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import OsCategory, OsType
from app.services import accounts, settings

# Guest OS types (CloudStack's guest_os), by category.
OS_TYPES = {
    "CentOS": ["CentOS 7 (64-bit)", "CentOS Stream 9 (64-bit)"],
    "Debian": ["Debian GNU/Linux 11 (64-bit)", "Debian GNU/Linux 12 (64-bit)"],
    "Ubuntu": ["Ubuntu 22.04 LTS (64-bit)", "Ubuntu 24.04 LTS (64-bit)"],
    "RedHat": ["Red Hat Enterprise Linux 9 (64-bit)", "Rocky Linux 9 (64-bit)", "AlmaLinux 9 (64-bit)"],
    "Windows": ["Windows Server 2019 (64-bit)", "Windows Server 2022 (64-bit)", "Windows 11 (64-bit)"],
    "Other": ["Other Linux (64-bit)", "Other (64-bit)", "Other PV Virtio-SCSI (64-bit)"],
}


def seed_reference_data() -> None:
    from app.services import domains
    domains.ensure_root()  # CloudStack's ROOT domain, the top of the tree
    existing = set(db.session.scalars(select(OsType.description)))
    categories = {c.name: c for c in db.session.scalars(select(OsCategory))}
    for cat_name, types in OS_TYPES.items():
        cat = categories.get(cat_name)
        if cat is None:
            cat = categories[cat_name] = OsCategory(name=cat_name)
            db.session.add(cat)
        for t in types:
            if t not in existing:
                db.session.add(OsType(description=t, category=cat))
    from app.services import hypervisors
    hypervisors.ensure_capability_rows()
    from app.services.network import offerings
    offerings.ensure_defaults(commit=False)  # CloudStack's default network offerings, in every database
    from app.services import regions, roles
    regions.ensure_local()  # region 1: this management server
    roles.ensure_defaults(commit=False)  # the four default roles; accounts without one get their type's
    db.session.commit()


def run(config) -> str | None:
    """Returns the admin password when one was generated (to print once)."""
    settings.sync_definitions()
    seed_reference_data()
    generated = accounts.ensure_admin(config.get("ADMIN_PASSWORD"))
    if config.get("SEED_DEMO"):
        from app.services import demo
        demo.seed_demo()  # only on a fresh install, and only with the Simulator installed
    return generated
