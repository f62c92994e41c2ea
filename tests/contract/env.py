"""What a driver module hands the contract suite."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from app.hypervisors.base import Driver, HypervisorType, StoragePoolSpec, VMSpec


@dataclass
class ContractEnv:
    driver: Driver
    hv_type: HypervisorType
    # A pool the driver can prepare and create volumes in.
    pool: StoragePoolSpec
    # A spec for a VM that can really start on this driver (disks already made).
    make_vm_spec: Callable[[str], VMSpec]
    # A second host of the same type for migration, when the environment has one.
    migration_target: Driver | None = None
    # Hooks a driver module may give for checks the suite cannot do through the
    # interface (e.g. what the hypervisor really received).
    extras: dict = field(default_factory=dict)
