"""What the example scripts share: waiting for a process to report ready, and for a stop signal."""

import signal
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


def wait_for_stop(message: str) -> None:
    """Print `message`, then wait for Ctrl-C or SIGTERM. Both are blocked first, so neither kills
    the script before its cleanup runs (SIGTERM's default action would leave its processes and
    files behind)."""
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    print(message, flush=True)
    signal.sigwait(stop)
