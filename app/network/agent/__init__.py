"""Programs copied to and run on a router's host (stdlib only: a host has Python 3, not Nubo)."""
