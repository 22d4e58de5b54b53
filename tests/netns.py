"""A test bed of "pods": Linux network namespaces joined by one bridge, for end-to-end tests.

Each pod is a namespace with `lo` and an `eth0` at 198.18.0.N/24 (the benchmarking range, used only
inside these namespaces), veth-linked to a bridge that lives in a namespace of its own, so nothing
is created in the host's namespace. Commands and processes run inside a pod (`ip netns exec`),
optionally as another uid (the sidecar's 1337). TestBed.close() stops every process and deletes every
namespace, also when a test fails; namespaces left by a killed run are removed by the next one.

Use the `testbed` fixture (registered in tests/conftest.py); it skips, saying why, where root,
`ip netns` or iptables are missing:

    def test_call(testbed):
        bed = testbed("client", "server")             # 198.18.0.1 and 198.18.0.2
        server = bed["server"].spawn(sys.executable, "-u", "server.py", "80")
        server.wait_for_line("ready")                 # wait on output, not on time
        reply = bed["client"].run(sys.executable, "client.py", bed["server"].ip, uid=1337)
        assert reply.stdout == "..."
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest

PREFIX = "pymesh-test-"
SUBNET = ipaddress.ip_network("198.18.0.0/24")
_STALE = re.compile(rf"^{re.escape(PREFIX)}(\d+)-")
_POD_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_counter = itertools.count(1)
NETNS_ETC = "/etc/netns"  # per-namespace /etc files, as `ip netns exec` reads them


def _ip(*argv: str) -> str:
    """Run an `ip` command (or any tool) as root; raise with its stderr when it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout


@functools.cache
def unavailable_reason() -> str | None:
    """Why pods cannot be made here, or None: root, the tools, and a namespace with iptables."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces and write iptables rules"
    for tool in ("ip", "iptables", "iptables-save", "iptables-restore", "setpriv"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` on PATH"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _ip("ip", "netns", "add", probe)
        try:
            _ip("ip", "netns", "exec", probe, "iptables", "-t", "nat", "-S")
        finally:
            _ip("ip", "netns", "del", probe)
    except (RuntimeError, OSError) as error:
        return f"network namespaces with iptables do not work here: {error}"
    return None


requires_netns = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
"""Mark for tests that make namespaces without the `testbed` fixture."""


class Process:
    """A process started in a pod; its stdout and stderr are collected line by line."""

    def __init__(self, argv: list[str], popen: subprocess.Popen):
        self.argv = argv
        self.popen = popen
        self.lines: list[str] = []
        self._matched = 0  # lines before this one were consumed by wait_for_line
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _drain(self) -> None:
        for raw in self.popen.stdout:
            with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for_line(self, text: str, timeout: float = 10.0) -> str:
        """The next output line containing `text`; fails if the process ends or time runs out first."""
        def found() -> int | None:
            return next((i for i in range(self._matched, len(self.lines)) if text in self.lines[i]), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None or self._eof, timeout)
            index = found()
            if index is not None:
                self._matched = index + 1
                return self.lines[index]
            why = "ended" if self._eof else f"printed no such line in {timeout}s"
            output = "\n".join(self.lines) or "(none)"
        raise AssertionError(f"`{' '.join(self.argv)}` {why} (waiting for {text!r}); output:\n{output}")

    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM the process group, SIGKILL after `timeout`; returns the exit status."""
        if self.popen.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait()
        self._reader.join(timeout)
        return self.popen.returncode

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)  # its own session: the group is this process and its children
        except ProcessLookupError:
            pass


class Pod:
    """One network namespace with an address on the bed's bridge."""

    def __init__(self, bed: TestBed, name: str, netns: str, ip: str):
        self.bed, self.name, self.netns, self.ip = bed, name, netns, ip

    def __repr__(self) -> str:
        return f"Pod({self.name!r}, {self.ip})"

    def command(self, *argv: object, uid: int | None = None, gid: int | None = None) -> list[str]:
        """argv as run inside this pod, as uid:gid (gid defaults to uid) when uid is given.

        Such a process keeps CAP_DAC_READ_SEARCH so it can still read an interpreter or virtual
        environment that only root can reach, while its uid (what iptables' owner match sees) is `uid`.
        """
        prefix = ["ip", "netns", "exec", self.netns]
        if uid is not None:
            prefix += ["setpriv", f"--reuid={uid}", f"--regid={uid if gid is None else gid}",
                       "--clear-groups", "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--"]
        return [*prefix, *map(str, argv)]

    def run(self, *argv: object, uid: int | None = None, gid: int | None = None, input: str | None = None,
            check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """Run to completion inside the pod; with check, a non-zero exit fails with the output."""
        command = self.command(*argv, uid=uid, gid=gid)
        done = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"`{' '.join(command)}` exited {done.returncode}\n"
                                 f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
        return done

    def set_hosts(self, names: dict[str, str]) -> None:
        """Name -> address entries of this pod's /etc/hosts (with localhost): `ip netns exec`
        mounts /etc/netns/<netns>/hosts over /etc/hosts for what runs in the pod, so DNS names
        in configuration (ServiceEntry resolution: DNS) resolve to pods. The bed removes it."""
        directory = os.path.join(NETNS_ETC, self.netns)
        os.makedirs(directory, exist_ok=True)
        self.bed.etc_dirs.append(directory)
        lines = ["127.0.0.1 localhost", "::1 localhost"] + [f"{ip} {name}" for name, ip in names.items()]
        with open(os.path.join(directory, "hosts"), "w") as hosts:
            hosts.write("\n".join(lines) + "\n")

    def spawn(self, *argv: object, uid: int | None = None, gid: int | None = None,
              env: dict[str, str] | None = None) -> Process:
        """Start a process in the pod; the bed stops it at close()."""
        command = self.command(*argv, uid=uid, gid=gid)
        popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
        process = Process(command, popen)
        self.bed.processes.append(process)
        return process


class TestBed:
    """Pods on one bridge; close() (or leaving a `with` block) removes everything it made."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self) -> None:
        _remove_stale_namespaces()
        self.id = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        self.pods: dict[str, Pod] = {}
        self.processes: list[Process] = []
        self.namespaces: list[str] = []
        self.etc_dirs: list[str] = []  # /etc/netns/<netns> folders made by Pod.set_hosts
        try:
            self.bridge = self._add_namespace("br")
            _ip("ip", "-n", self.bridge, "link", "add", "br0", "type", "bridge")
            _ip("ip", "-n", self.bridge, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> TestBed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getitem__(self, name: str) -> Pod:
        return self.pods[name]

    def add_pod(self, name: str) -> Pod:
        """A new pod at the next address (198.18.0.1, .2, ...)."""
        if not _POD_NAME.match(name) or name == "br" or name in self.pods:
            raise ValueError(f"bad or duplicate pod name {name!r}")
        index = len(self.pods) + 1
        ip = str(SUBNET.network_address + index)
        netns, peer = self._add_namespace(name), f"v{index}"
        _ip("ip", "-n", netns, "link", "set", "lo", "up")
        _ip("ip", "-n", netns, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", self.bridge)
        _ip("ip", "-n", self.bridge, "link", "set", peer, "master", "br0", "up")
        _ip("ip", "-n", netns, "addr", "add", f"{ip}/{SUBNET.prefixlen}", "dev", "eth0")
        _ip("ip", "-n", netns, "link", "set", "eth0", "up")
        self.pods[name] = Pod(self, name, netns, ip)
        return self.pods[name]

    def _add_namespace(self, name: str) -> str:
        netns = f"{self.id}-{name}"
        _ip("ip", "netns", "add", netns)
        self.namespaces.append(netns)  # recorded before any setup, so close() removes it
        return netns

    def close(self) -> None:
        """Stop the processes, then delete the namespaces (killing anything left in them)."""
        errors = []
        for process in reversed(self.processes):
            try:
                process.stop()
            except OSError as error:
                errors.append(f"stopping {process.argv}: {error}")
        self.processes.clear()
        for netns in reversed(self.namespaces):
            try:
                _delete_namespace(netns)
            except (RuntimeError, OSError) as error:
                errors.append(str(error))
        self.namespaces.clear()
        for directory in self.etc_dirs:
            shutil.rmtree(directory, ignore_errors=True)
        self.etc_dirs.clear()
        if errors:
            raise RuntimeError("test bed teardown: " + "; ".join(errors))


def _delete_namespace(netns: str) -> None:
    for pid in _ip("ip", "netns", "pids", netns).split():
        try:
            os.kill(int(pid), signal.SIGKILL)  # a process this bed started in its own namespace
        except ProcessLookupError:
            pass
    _ip("ip", "netns", "del", netns)


def _remove_stale_namespaces() -> None:
    """Delete test namespaces whose creating process is gone (a run killed before teardown)."""
    for line in _ip("ip", "netns", "list").splitlines():
        netns = line.split()[0] if line.split() else ""
        match = _STALE.match(netns)
        if match and not _alive(int(match.group(1))):
            _delete_namespace(netns)
            shutil.rmtree(os.path.join(NETNS_ETC, netns), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture
def testbed() -> Iterator[Callable[..., TestBed]]:
    """Factory fixture: testbed("a", "b") -> a TestBed with those pods, torn down after the test."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    beds: list[TestBed] = []

    def make(*pod_names: str) -> TestBed:
        bed = TestBed()
        beds.append(bed)
        for name in pod_names:
            bed.add_pod(name)
        return bed

    yield make
    errors = []
    for bed in beds:
        try:
            bed.close()
        except RuntimeError as error:
            errors.append(str(error))
    assert not errors, errors
