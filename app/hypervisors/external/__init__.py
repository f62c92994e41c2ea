"""The External hypervisor type (CloudStack 4.21): VMs run by an extension's executable."""
