"""Loaded by the Ansible modules' Python (tests/api/ansible/python): ngine_io.cloudstack's poll_job
sleeps a fixed 2 s between queryAsyncJobResult calls and has no option for it, while a Simulator
job ends in well under a second. Sleeps are capped at 0.2 s here, as the cs and libcloud tests
set their poll interval to 0.2 s (tests/api/conftest.py)."""
import time

_sleep = time.sleep


def _capped(seconds: float) -> None:
    _sleep(min(seconds, 0.2))


time.sleep = _capped
