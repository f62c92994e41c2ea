"""VM high availability, as CloudStack's HighAvailabilityManager and KVMInvestigator do it.

A host that stops answering the monitor goes Alert. When it has been silent for
ping.interval × ping.timeout, it is *investigated* before anything is decided
(investigation.py): its neighbours in the cluster (Up hosts of a type that can read storage
heartbeats) read its heartbeat on the shared primary storage through their own libvirtd.
- a neighbour sees the heartbeat fresh (younger than ha.heartbeat.timeout): the host is alive
  and only cut off from Nubo; it stays Alert, its VMs Unknown, nothing is restarted;
- the neighbours see it stale: the host is judged Down (fenced): its VMs are marked Stopped
  with their capacity given back, and its HA-enabled VMs are restarted on other Up hosts of
  its cluster (work.py, one ha_work row per VM, worked off sweep by sweep);
- nobody can tell (no Up neighbour, no shared pool, no heartbeat ever written, vm.ha.enabled
  off): the host goes Down on time alone, as before, its VMs are marked Stopped, and its HA
  VMs are NOT restarted (their death is not confirmed: an event says so).
When a Down host answers again, the copies it still holds of VMs that the database places
on another host are destroyed and undefined there, never restarted (work.fence_returned).

The monitor calls this package at two points: ping_hosts asks investigation.judge for the
hosts due to go Down, and each sweep calls work.sweep (copies on returned hosts, then the
HA work). Nothing here imports the monitor.
"""
from __future__ import annotations

from app.services.settings import Definition, define

define(Definition("vm.ha.enabled", "true", "Enable/Disable VM High Availability manager: a host silent for "
                  "ping.interval × ping.timeout is investigated through its neighbours and, judged Down, its "
                  "HA-enabled VMs are restarted on other hosts of its cluster.", category="High availability",
                  type="boolean", scopes=("zone",)))
define(Definition("ha.heartbeat.timeout", "60", "A host's heartbeat on shared primary storage older than this, "
                  "as its neighbours see it, has stopped (the host is dead). Several times the interval of "
                  "scripts/host/nubo-heartbeat.sh on the hosts.", category="High availability", type="integer",
                  min=1, max=3600, unit="seconds", scopes=("cluster",)))
define(Definition("restart.retry.interval", "600", "The time (in seconds) between retries to restart a VM.",
                  category="High availability", type="integer", min=1, max=86400, unit="seconds"))
define(Definition("max.retries", "5", "Number of times to retry start.", category="High availability",
                  type="integer", min=1, max=100))
define(Definition("ha.investigators", "3", "Neighbours of a silent host asked for its heartbeat, at most.",
                  category="High availability", type="integer", min=1, max=16))
