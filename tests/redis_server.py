"""A private redis-server for the tests, on a free port, that a test may stop and start again."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers_as(client: Callable[[], redis.Redis], pid: int) -> bool:
    """Whether the server on the client's port is the process ``pid`` (not another test process's), and
    has loaded its data (INFO answers while an AOF is loading; PING and the rest do not)."""
    try:
        connected = client()
        return int(connected.info("server")["process_id"]) == pid and bool(connected.ping())
    except (redis.ConnectionError, redis.AuthenticationError, redis.ResponseError):
        return False


def came_up(process: subprocess.Popen, client: Callable[[], redis.Redis], timeout: float, what: str) -> bool:
    """True once ``process`` answers on the client's port; False if it ended first (its port was taken)."""
    deadline = time.monotonic() + timeout
    while not answers_as(client, process.pid):
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer in time")
        time.sleep(0.02)
    return True


@dataclass(frozen=True)
class Certificates:
    """A certificate authority of the test's own and a server certificate for 127.0.0.1 that it signed."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> Certificates:
        """With the ``openssl`` command line; P-256 keys, which take milliseconds to make."""
        ca, ca_key = directory / "ca.pem", directory / "ca-key.pem"
        cert, key, request = directory / "server.pem", directory / "server-key.pem", directory / "server.csr"
        extensions = directory / "server.ext"
        extensions.write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
        )
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        # basicConstraints and keyUsage on the CA: what Python 3.13's strict verification asks of one.
        ca_extensions = ["-addext", "basicConstraints=critical,CA:TRUE"]
        ca_extensions += ["-addext", "keyUsage=critical,keyCertSign,cRLSign", "-days", "2"]
        signing = ["-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2", "-extfile", extensions]
        for command in (
            ["req", "-x509", *ec, *ca_extensions, "-keyout", ca_key, "-out", ca, "-subj", "/CN=test CA"],
            ["req", *ec, "-keyout", key, "-out", request, "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", request, *signing, "-out", cert],
        ):
            subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
        return cls(ca=ca, cert=cert, key=key)


class RedisServer:
    """``options`` are more ``redis-server`` arguments (``--requirepass``, ``--user``...); ``tls`` serves TLS
    only, with these certificates; ``client_options`` are what ``client()`` needs to be let in."""

    def __init__(
        self,
        appendonly: bool = False,
        options: Sequence[str] = (),
        tls: Certificates | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not on PATH")
        self.executable = executable
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jobs-redis-"))
        self.appendonly = appendonly
        self.options = list(options)
        self.tls = tls
        self.client_options = dict(client_options or {})
        self.process: subprocess.Popen | None = None
        self._started = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, db: int = 0) -> redis.Redis:
        options: dict[str, Any] = {"socket_timeout": 5, "db": db, **self.client_options}
        if self.tls is not None:
            options.update(ssl=True, ssl_ca_certs=str(self.tls.ca))
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def _listen_options(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(self.tls.cert),
            "--tls-key-file",
            str(self.tls.key),
            "--tls-ca-cert-file",
            str(self.tls.ca),
            "--tls-auth-clients",
            "no",
        ]

    def start(self, timeout: float = 10) -> None:
        """Start the server and wait until it answers as this process. Another test process may take the
        free port between its choice and the bind: the first start then moves to another port; a restart
        keeps its port (the test's clients know it), and fails."""
        for _ in range(5):
            if self._launch(timeout):
                self._started = True
                return
            if self._started:
                raise RuntimeError(f"redis-server could not listen on port {self.port} again")
            self.port = free_port()
        raise RuntimeError(f"redis-server found no port to listen on; see {self.dir}/redis.log")

    def _launch(self, timeout: float) -> bool:
        """Start redis-server; True once it answers, False if it ended (its port was taken)."""
        args = [
            self.executable,
            *self._listen_options(),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--logfile",
            "redis.log",
            *self.options,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return came_up(self.process, self.client, timeout, "redis-server")

    @contextlib.contextmanager
    def failing_snapshots(self) -> Iterator[None]:
        """The server answers every write, and PING, with ``MISCONF`` while the block runs, as when the disk
        of its host is full: it gets a save point (``stop-writes-on-bgsave-error`` is on by default), and its
        snapshot fails, its file's path being a directory (which root cannot write over either, where a
        chmod would not stop root; ``dir`` and ``dbfilename`` cannot be set at run time). On the way out the
        path is freed and a snapshot succeeds, which lifts the refusal; the save point and the snapshot go,
        so that a restart starts empty."""
        path = self.dir / "dump.rdb"
        (path / "in-the-way").mkdir(parents=True)
        client = self.client()
        try:
            client.config_set("stop-writes-on-bgsave-error", "yes")
            client.config_set("save", "3600 1")
            if self.snapshot(client) != "err":
                raise RuntimeError("the snapshot did not fail")
            yield
        finally:
            shutil.rmtree(path)
            if self.snapshot(client) != "ok":
                raise RuntimeError(f"the snapshot failed again; see {self.dir}/redis.log")
            client.config_set("save", "")
            path.unlink()
            client.close()

    @staticmethod
    def snapshot(client: redis.Redis, timeout: float = 10) -> str:
        """Write a snapshot (``BGSAVE``) and return its outcome once it ended, ``"ok"`` or ``"err"``: the
        server forks its child before it answers, so the wait cannot see an earlier snapshot's outcome."""
        client.bgsave()
        deadline = time.monotonic() + timeout
        while True:
            persistence = client.info("persistence")
            if not persistence["rdb_bgsave_in_progress"]:
                return persistence["rdb_last_bgsave_status"]
            if time.monotonic() > deadline:
                raise RuntimeError("the snapshot did not end in time")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelServer:
    """A Redis Sentinel (``redis-server --sentinel``) that monitors ``primary`` as ``service``."""

    def __init__(self, primary: RedisServer, service: str | None = None, password: str | None = None) -> None:
        self.primary = primary
        # A name of its own: django-redis keeps its connection pools for the life of the process, by URL,
        # and a Sentinel URL names the service, not the sentinel: a second Sentinel of the same name in
        # this process would get the pool of the first, which asks a sentinel that is gone.
        self.service = service or f"primary-{uuid.uuid4().hex[:8]}"
        self.password = password
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="jobs-sentinel-"))
        self.config = self.dir / "sentinel.conf"
        self.process: subprocess.Popen | None = None

    def _write_config(self) -> None:
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.dir}",
            "logfile sentinel.log",
            f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} 1",
            f"sentinel down-after-milliseconds {self.service} 5000",
        ]
        if self.password is not None:
            lines.append(f"sentinel auth-pass {self.service} {self.password}")
        # Sentinel rewrites its configuration file as it learns, so it gets a file of its own.
        self.config.write_text("\n".join(lines) + "\n")

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self, timeout: float = 10) -> None:
        """Start the sentinel on a free port (another, if another test process took that one first) and
        wait until it reports its primary."""
        for _ in range(5):
            self._write_config()
            self.process = subprocess.Popen(
                [self.primary.executable, str(self.config), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if came_up(self.process, self.client, timeout, "the sentinel"):
                break
            self.port = free_port()
        else:
            raise RuntimeError(f"redis-server --sentinel found no port; see {self.dir}/sentinel.log")
        deadline = time.monotonic() + timeout
        while not self.knows_primary():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server --sentinel exited; see {self.dir}/sentinel.log")
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinel did not report its primary in time")
            time.sleep(0.05)

    def knows_primary(self) -> bool:
        """What redis-py's ``Sentinel.discover_master`` needs: the primary known, up, and a master."""
        try:
            state = self.client().sentinel_masters().get(self.service)
        except redis.ConnectionError:
            return False
        return bool(state) and state["is_master"] and not state["is_sdown"] and not state["is_odown"]

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)
