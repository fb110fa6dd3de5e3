"""A real Milvus server for the tests: the ``milvus`` PyPI package's embedded standalone (2.3).

Started once per test session by the ``milvus_server`` fixture (imported into conftest), in a
temporary base directory, on ports picked free for this session (its embedded etcd included, so
two sessions on one machine do not collide), and stopped at the end; it dies with the test process
if that is killed. Tests that use it are skipped, saying why, only when the package is not installed.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ETCD_NAME = "multiembed-tests"


@dataclass(frozen=True)
class RunningServer:
    """Where the session's server listens, what it says it is, and where it keeps its files."""

    uri: str
    port: int
    version: str
    base_dir: Path


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on now (all bound at once, so they differ)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _die_with_parent() -> None:
    """In the server's process before exec: be killed when the test process goes (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _pin_ports(server: Any, base_dir: Path) -> int:
    """Give every port the server opens a free one, the embedded etcd's client and peer ports too
    (the package leaves those at etcd's defaults, 2379 and 2380, through a config file it has no
    key for). Returns the proxy (client) port."""
    config = server.config
    port_keys = sorted(key for key in config.configurable_items if key.endswith("_port"))
    ports = free_ports(len(port_keys) + 3)
    for key, port in zip(port_keys, ports, strict=False):
        config.configs[key] = port  # an explicit port is bound as given, not searched from a default
    etcd_client, etcd_peer, server.webservice_port = ports[len(port_keys) :]
    etcd_file = base_dir / "configs" / "etcd.yaml"
    etcd_file.parent.mkdir(parents=True, exist_ok=True)
    peer = f"http://127.0.0.1:{etcd_peer}"
    client = f"http://127.0.0.1:{etcd_client}"
    etcd_file.write_text(
        f"name: {ETCD_NAME}\nlisten-client-urls: {client}\nadvertise-client-urls: {client}\n"
        f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
        f"initial-cluster: {ETCD_NAME}={peer}\n"
    )
    anchor = "  endpoints: localhost:{{ etcd_port(int): 2379 }}\n"
    assert anchor in config.template_text, "the milvus package's config template changed"
    config.template_text = config.template_text.replace(anchor, f"{anchor}  config:\n    path: {etcd_file}\n")
    return int(config.configs["proxy_port"])


#: the query coordinator's periodic checks, shortened: a bulk import becomes searchable after the
#: next one (seconds by default; the product code waits for it either way, the tests wait less)
QUICKER = (
    "queryCoord:\n  UpdateNextTargetInterval: 1\n  checkSegmentInterval: 200\n  leaderViewUpdateInterval: 1\n"
)


def _quicken(server: Any) -> None:
    anchor = "queryCoord:\n"
    assert anchor in server.config.template_text, "the milvus package's config template changed"
    server.config.template_text = server.config.template_text.replace(anchor, QUICKER, 1)


def _binaries(milvus: Any) -> Path:
    """The server's binaries, unpacked once per machine (the package unpacks ~250 MB into each base
    directory, seconds every session); a lock keeps concurrent sessions from reading a half-written one."""
    import fcntl  # POSIX, like the server binary the package ships

    cache = Path(tempfile.gettempdir()) / f"multiembed-tests-milvus-{milvus.__version__}"
    cache.mkdir(exist_ok=True)
    with (cache / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        milvus._initialize_data_files(str(cache))  # skips files whose recorded checksum matches
    return cache / "bin"


def start_server(base_dir: Path) -> tuple[Any, RunningServer]:
    """Start the package's server in ``base_dir``; returns it (to ``stop()``) and where it listens."""
    import milvus
    from pymilvus import MilvusClient

    server = milvus.default_server
    base_dir.mkdir(parents=True, exist_ok=True)
    (base_dir / "bin").symlink_to(_binaries(milvus))
    server.set_base_dir(str(base_dir))
    port = _pin_ports(server, base_dir)
    _quicken(server)
    if sys.platform.startswith("linux"):  # the package starts its binary with subprocess.Popen
        milvus.subprocess = SimpleNamespace(  # seen by the package's module only, while it starts
            Popen=partial(subprocess.Popen, preexec_fn=_die_with_parent),
            TimeoutExpired=subprocess.TimeoutExpired,
        )
    try:
        server.start()
    except BaseException:
        server.stop()
        log = base_dir / "logs" / "milvus-stderr.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        raise RuntimeError(f"the Milvus server did not start; its stderr ends:\n{tail}") from None
    finally:
        milvus.subprocess = subprocess
    uri = f"http://127.0.0.1:{port}"
    client = MilvusClient(uri)
    try:
        version = str(client.get_server_version())
    finally:
        client.close()
    return server, RunningServer(uri, port, version, base_dir)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The session's Milvus server (started on first use, ~10 s; stopped when the session ends)."""
    pytest.importorskip(
        "milvus",
        reason="the `milvus` package (a Milvus server for tests) is not installed: pip install milvus",
    )
    started = time.monotonic()
    server, running = start_server(tmp_path_factory.mktemp("milvus-server"))
    print(f"\nMilvus server {running.version} at {running.uri} in {time.monotonic() - started:.1f}s")
    try:
        yield running
    finally:
        server.stop()
