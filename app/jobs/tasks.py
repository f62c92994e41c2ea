"""huey tasks. Each runs inside a Flask app context of its own."""
from __future__ import annotations

from huey import crontab

from app.jobs import huey, transfers
from app.jobs import service


@huey.task()
def run_job(job_id: int) -> None:
    app = service.app_for_worker()
    with app.app_context():  # a fresh context: its own database session
        service.execute(job_id)


@transfers.task()
def run_transfer(job_id: int) -> None:
    """A long transfer, on the transfers queue's own consumer. When its account already
    runs as many transfers as it may, the job goes back to wait its turn (the thread is
    free meanwhile for other accounts' transfers)."""
    app = service.app_for_worker()
    with app.app_context():
        wait = service.execute(job_id)
    if wait:
        run_transfer.schedule((job_id,), delay=wait)


@huey.periodic_task(crontab(minute="*"))
def reap_jobs() -> None:
    app = service.app_for_worker()
    with app.app_context():
        service.reap()


@huey.periodic_task(crontab(minute="23"))
def purge_orphan_tags() -> None:
    """Tags and details of objects that no longer exist (hidden already) are deleted."""
    app = service.app_for_worker()
    with app.app_context():
        from app.services import resource_details, tags
        tags.purge()
        resource_details.purge()


@huey.periodic_task(crontab(minute="*"))
def expunge_destroyed_vms() -> None:
    """VMs destroyed longer than expunge.delay ago are expunged."""
    app = service.app_for_worker()
    with app.app_context():
        from app.services import vms
        vms.sweep_expunge()


@huey.periodic_task(crontab(minute="*"))
def run_snapshot_policies() -> None:
    """Scheduled volume snapshots whose time has come (a missed run is taken once)."""
    app = service.app_for_worker()
    with app.app_context():
        from app.services.snapshots import policies, volume
        policies.run_due()
        volume.recover()


@huey.periodic_task(crontab(minute="*"))
def clean_transfers() -> None:
    """Extract URLs past extract.url.expiration.interval end (a volume's copy is deleted);
    browser volume uploads whose URL expired unused, or that stopped mid-way, fail."""
    app = service.app_for_worker()
    with app.app_context():
        from app.services.transfers import extracts, volume_uploads
        extracts.cleanup()
        volume_uploads.expire_unused()
