"""The pymesh quickstart: two versions of an app, a sidecar in front of their client, a 90/10
canary split and a header-based route, and what the proxy observed.

    python examples/quickstart/run.py            # run, print what happened, stop everything
    python examples/quickstart/run.py --keep     # leave the mesh running to explore (Ctrl-C)
"""

from __future__ import annotations

import argparse
import collections
import http.client
import os
import re
import signal
import subprocess
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from common import wait_ready  # noqa: E402  (examples/common.py)
SIDECAR = ("127.0.0.1", 9080)
APPS = {"reviews-v1": 9081, "reviews-v2": 9082}
ADMIN, STATS = 15000, 15090
REQUESTS = 1000


def start(argv: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(argv, start_new_session=True, **kwargs)


def send(count: int, headers: dict[str, str]) -> tuple[collections.Counter, collections.Counter]:
    """`count` keep-alive requests through the sidecar; tallies of versions and status codes."""
    versions, statuses = collections.Counter(), collections.Counter()
    connection = http.client.HTTPConnection(*SIDECAR, timeout=5)
    for _ in range(count):
        connection.request("GET", "/reviews/1", headers={"Host": "reviews.demo", **headers})
        response = connection.getresponse()
        versions[response.read().decode().strip()] += 1
        statuses[response.status] += 1
    connection.close()
    return versions, statuses


def metric_lines(text: str) -> list[str]:
    """istio_requests_total series, shortened to the labels a reader cares about."""
    keep = ("destination_service", "destination_version", "response_code", "response_flags")
    lines = []
    for line in text.splitlines():
        if line.startswith("istio_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            short = ",".join(f'{k}="{labels[k]}"' for k in keep)
            lines.append(f"istio_requests_total{{{short}}} {line.rsplit(' ', 1)[1]}")
    return sorted(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the mesh running after the demo")
    args = parser.parse_args()
    processes = [start([sys.executable, os.path.join(HERE, "..", "app.py"), name, str(port)]) for name, port in APPS.items()]
    access_log = os.path.join(os.environ.get("TMPDIR", "/tmp"), "pymesh-quickstart-access.log")
    proxy = start(
        [sys.executable, "-m", "pymesh", "proxy", "--config", os.path.join(HERE, "mesh.yaml"),
         "--workload", "productpage", "--namespace", "demo", "--labels", "app=productpage,version=v1",
         "--access-log", access_log, "--log-level", "warning"],
    )
    processes.append(proxy)
    try:
        wait_ready(f"http://127.0.0.1:{ADMIN}/ready")
        print("pymesh quickstart")
        print(f"  apps:    reviews v1 on 127.0.0.1:{APPS['reviews-v1']}, v2 on 127.0.0.1:{APPS['reviews-v2']}")
        print(f"  sidecar: egress listener http://{SIDECAR[0]}:{SIDECAR[1]} (config: examples/quickstart/mesh.yaml)")
        print(f"\n{REQUESTS} requests to http://reviews.demo:9080/reviews/1 through the sidecar:")
        versions, statuses = send(REQUESTS, {})
        for version, count in sorted(versions.items()):
            print(f"  {version}: {count:4d}  ({100 * count / REQUESTS:.1f}%)   VirtualService weight {90 if 'v1' in version else 10}%")
        print(f"  status codes: {dict(statuses)}")
        versions, statuses = send(20, {"end-user": "jason"})
        print(f"\n20 requests with 'end-user: jason' (route jason-sees-v2): {dict(versions)}")
        with urllib.request.urlopen(f"http://127.0.0.1:{STATS}/stats/prometheus", timeout=5) as response:
            metrics = response.read().decode()
        print("\nWhat the sidecar reports (http://127.0.0.1:15090/stats/prometheus, labels shortened):")
        for line in metric_lines(metrics):
            print(f"  {line}")
        print(f"\nAccess log (JSON, one line per request): {access_log}")
        print(f"Admin: http://127.0.0.1:{ADMIN}/config_dump  /clusters  /stats")
        if args.keep:
            print("\nThe mesh keeps running; try: curl -H 'Host: reviews.demo' http://127.0.0.1:9080/  (Ctrl-C stops)")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    sys.exit(main())
