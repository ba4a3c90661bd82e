"""A throw-away PostgreSQL cluster for the sweep tests: ``initdb`` + ``pg_ctl`` on a free port in a temporary folder.

Uses the server binaries of Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``) or any on PATH.
PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user (``runuser``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def server_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (the newest Debian version first), or None."""
    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(initdb).parent
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl", path=str(Path(found).parent)) else None


def why_not_available() -> str | None:
    """Why no cluster can be started here (None: it can)."""
    if server_binaries() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not installed: apt-get install postgresql"
    try:
        import sqlalchemy

        sqlalchemy.create_engine("postgresql://").dispose()  # imports SQLAlchemy's default PostgreSQL driver
    except ImportError as error:
        return f"no PostgreSQL driver for SQLAlchemy ({error}): pip install -e '.[dev]' (psycopg)"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to own the cluster"
        if shutil.which("runuser") is None:
            return "running as root without runuser"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(command: list[str], as_postgres: bool) -> None:
    if as_postgres:
        command = ["runuser", "-u", "postgres", "--", *command]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stdout}{completed.stderr}")


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a cluster (trust authentication, 127.0.0.1 only) and yield its SQLAlchemy URL; stop and delete it after."""
    binaries = server_binaries()
    assert binaries is not None
    as_postgres = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="dfkd-pg-"))
    data = folder / "data"
    port = _free_port()
    if as_postgres:
        shutil.chown(folder, user="postgres", group="postgres")
    try:
        _run([str(binaries / "initdb"), "-D", str(data), "-U", "dfkd", "--auth=trust", "-E", "UTF8"], as_postgres)
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off"
        start = [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-o", options]
        _run([*start, "-w", "-t", "60", "start"], as_postgres)
        try:
            yield f"postgresql://dfkd@127.0.0.1:{port}/postgres"
        finally:
            _run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], as_postgres)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
