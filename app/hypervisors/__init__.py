"""Hypervisor types: a registry filled from the `nubo.hypervisors` entry points,
one driver interface (base.py), and the drivers."""
