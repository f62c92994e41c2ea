"""CloudStack 4.21's extensions framework: the External hypervisor type's executables.

- paths: where extensions live, the executable's checks and checksum;
- details: external details (secrets encrypted, never shown back);
- registry: extensions and the clusters they serve;
- parameters: custom actions' declared parameters and value checks;
- actions: custom actions, and running them (a job);
- payload: the payload file's content;
- calls: which extension serves a host, the driver with its payloads prepared;
- vms: the VM lifecycle through an extension (prepare, create, start, ... delete)."""
