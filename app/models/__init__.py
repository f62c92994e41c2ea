"""Typed SQLAlchemy 2.0 models, one module per area. Import from here."""
from app.models.base import DOMAIN_ID, DOMAIN_NAME, cs_date, utcnow, new_uuid  # noqa: F401
from app.models.roles import AccountRole, Permission, RolePermission, RoleType  # noqa: F401
from app.models.domains import (  # noqa: F401
    Domain, DomainResourceCount, DomainResourceLimit, DomainState, InvitationState, Project, ProjectAccount,
    ProjectInvitation, ProjectRole, ProjectState,
)
from app.models.accounts import ACCOUNT_TYPES, ROLE_TYPES, Account, AccountState, LoginThrottle, ResourceCount, ResourceLimit, RevokedSession, Role, SSHKeyPair, User  # noqa: F401
from app.models.infra import (  # noqa: F401
    AllocationState, Cluster, Host, HostState, NetworkType, Pod, ResourceState, Zone,
)
from app.models.storage import ImageStore, ImageStoreState, PoolState, PoolType, StoragePool, StoragePoolWork, StorageScope  # noqa: F401
from app.models.templates import (  # noqa: F401
    DownloadState, OsCategory, OsType, Template, TemplateFormat, TemplatePermission, TemplatePoolRef, TemplateStoreRef,
)
from app.models.offerings import DiskOffering, OfferingDomain, OfferingZone, ServiceOffering  # noqa: F401
from app.models.networks import (  # noqa: F401
    FirewallRule, GuestType, GuestVnet, IpAddress, IpCursor, IpState, Network, NetworkOffering, NetworkServiceProvider,
    NetworkState, PhysicalNetwork, PhysicalNetworkTrafficType, Provider, PublicIpAddress, Router, RouterState,
    RulePurpose, RuleState, SecurityGroup, SecurityGroupRule, Service, TrafficType, VlanIpRange, VmSecurityGroup,
)
from app.models.userdata import InstanceGroup, UserData  # noqa: F401
from app.models.vms import Nic, VirtualMachine, VMState, Volume, VolumeState, VolumeType  # noqa: F401
from app.models.snapshots import INTERVAL_NUMBERS, IntervalType, Snapshot, SnapshotPolicy, SnapshotState  # noqa: F401
from app.models.transfers import Extract, ExtractState, VolumeStoreRef  # noqa: F401
from app.models.settings import Setting, SettingValue  # noqa: F401
from app.models.vm_snapshots import VMSnapshot, VMSnapshotState, VMSnapshotType  # noqa: F401
from app.models.jobs import AsyncJob, JobStatus  # noqa: F401
from app.models.events import Event, EventBucket  # noqa: F401
from app.models.metrics import HOURLY, RAW, MetricKind, MetricSample  # noqa: F401
from app.models.consoles import ConsoleSession  # noqa: F401
from app.models.changes import Change  # noqa: F401
from app.models.hypervisors import HypervisorCapability  # noqa: F401
from app.models.wizards import WizardDraft  # noqa: F401
from app.models.tags import ResourceTag  # noqa: F401
from app.models.details import Region, ResourceDetail  # noqa: F401
from app.models.affinity import AffinityGroup, AffinityGroupVM  # noqa: F401
from app.models.simulator import SimFault, SimHost, SimPool, SimRouter, SimSegment, SimVM, SimVMSnapshot, SimVolume  # noqa: F401
from app.models.alerts import Alert  # noqa: F401
from app.models.extensions import Extension, ExtensionCustomAction, ExtensionResourceMap, ExtensionState, ExternalDetail  # noqa: F401
from app.models.ha import FINAL_STEPS, HaStep, HaWork, HaWorkType  # noqa: F401
