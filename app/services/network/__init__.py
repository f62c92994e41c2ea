"""Guest networking services, CloudStack's model (docs/networking.md):

    physical.py   physical networks, traffic types (labels), network service providers
    offerings.py  network offerings and CloudStack's default ones
    ranges.py     public IP ranges (createVlanIpRange) and shared networks' ranges
    ipam.py       guest addresses of NICs and routers; claiming/freeing public addresses
    networks.py   guest networks: create/update/delete, implement/shutdown, restart
    routers.py    virtual routers: placement, the RouterSpec from the database, apply, health
    public_ips.py associateIpAddress / disassociateIpAddress, static NAT
    rules.py      firewall, port forwarding, ip forwarding and egress rules
    secgroups.py  security groups, their rules, and the rulesets enforced on hosts
    nics.py       a VM's NICs: add, remove, default; segments for a start on a host
"""
