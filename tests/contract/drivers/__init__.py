"""One module per driver under test. Each exposes:

    NAME: str                      # test id, e.g. "libvirt-test", "kvm", "simulator", "hyperv"
    def available() -> str | None  # None when it can run here, else the reason it cannot
    @contextlib.contextmanager
    def environment(tmp_path) -> Iterator[ContractEnv]   # see tests/contract/env.py

The contract suite (tests/contract/test_driver_contract.py) runs every test
against every module here.
"""
