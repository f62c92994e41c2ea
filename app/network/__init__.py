"""What makes guest networks real on hosts (docs/networking.md): `host` is the executor that
runs on a hypervisor host (bridges, router namespaces, security-group tables), `agent` what a
router runs there (the metadata server). Nothing here reads the database: services build the
value objects of host/specs.py from it and hand them over through a driver."""
