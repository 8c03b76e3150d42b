"""Polling for what happens in another process (a real worker, the live server): import it as
`from waiting import wait_for` (tests/ is on the path through its conftest)."""

import time


def wait_for(predicate, timeout=60.0, interval=0.2):
    """The predicate's first truthy value, polling until `timeout` seconds; None if it never was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    return None
