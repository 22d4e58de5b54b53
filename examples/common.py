"""What the example scripts share: waiting for a process to report ready."""

import time
import urllib.request


def wait_ready(url: str, timeout: float = 20.0) -> None:
    """Poll a readiness URL until it answers 200; exit with a message when it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"not ready in time: {url}")
        time.sleep(0.05)
