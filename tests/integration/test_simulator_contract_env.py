"""The Simulator's contract-suite environment works on its own (the shared suite,
tests/contract/test_driver_contract.py, runs it against the common tests)."""
from app.hypervisors.base import HostUnreachable, PowerState
from tests.contract.drivers import simulator as module


def test_environment_runs_a_vm_and_migrates(tmp_path):
    assert module.available() is None
    with module.environment(tmp_path) as env:
        env.make_vm_spec("i-contract")
        spec = env.make_vm_spec("i-contract")  # asking twice is fine
        info = env.driver.start_vm(spec)
        assert info.state == PowerState.RUNNING and env.driver.vm_info("i-contract").uuid == spec.uuid
        env.driver.migrate_vm("i-contract", env.migration_target.conn)
        assert [v.name for v in env.migration_target.list_vms()] == ["i-contract"]
        env.extras["set_host_up"]("contract-1", False)
        try:
            env.driver.list_vms()
        except HostUnreachable:
            pass
        else:
            raise AssertionError("a down host must be unreachable")
        env.extras["set_host_up"]("contract-1", True)
        env.migration_target.destroy_vm("i-contract")
        assert env.migration_target.list_vms() == [] and env.driver.list_vms() == []
