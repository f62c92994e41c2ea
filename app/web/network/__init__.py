"""Guest networking pages (CloudStack's words: Isolated, Shared, Source NAT, Static NAT,
Port forwarding, Firewall, Egress rules, Security groups).

- guest.py: Networks (list, create an Isolated network, its page with its VMs, router,
  egress rules, restart, delete) and Public IPs (list, acquire for a network, release, its
  page with port forwarding, firewall rules and static NAT).
Every rule is app/services/network's; these views only call it.
"""
