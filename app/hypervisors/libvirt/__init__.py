"""The libvirt driver family: one driver (driver.py) shared by KVM, Xen (libxl),
LXC, OpenVZ and Custom; each type's flavour (flavours.py) states only what
differs; domain XML is built in domain_xml.py; the registered types are in
types.py."""
