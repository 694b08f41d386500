"""A throwaway PostgreSQL cluster for the test suite (importable as ``pg``).

``Cluster.start()`` runs ``initdb`` into a fresh temporary directory, starts the server with
``pg_ctl`` on 127.0.0.1 (a free port, its unix socket inside that directory) and creates
one database. PostgreSQL refuses to run as root, so when the suite runs as root every
server command runs as the ``postgres`` system user the Debian package creates, and the
directory is handed to that user.

Each test gets its own schema (``Cluster.fresh_url()``), named in the URL's
``options=-csearch_path=...``, so child processes that open the same URL see the same
tables and tests never see each other's rows.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
import uuid
from pathlib import Path

DATABASE = "honker_test"
REQUIRED_ENV = "HONKER_POSTGRES_REQUIRED"


class Unavailable(Exception):
    """No PostgreSQL server can be run here (binaries or psycopg missing)."""


def bin_dir() -> Path:
    """The directory holding ``initdb``/``pg_ctl`` (newest Debian version first)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise Unavailable(
        "PostgreSQL server binaries not found (install Debian's `postgresql`; `make test` does it)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One initdb'd, running PostgreSQL cluster in a temporary directory."""

    def __init__(self, listen: tuple[str, ...] = ("127.0.0.1",)) -> None:
        self.listen = listen
        self.bin = bin_dir()
        self.as_postgres = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="honker-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.log = self.root / "server.log"
        self.port = 0
        self.running = False

    # -- server commands -----------------------------------------------------------------
    def _cmd(self, *args: str) -> list[str]:
        argv = [str(self.bin / args[0]), *args[1:]]
        if self.as_postgres:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _run(self, *args: str, timeout: float = 120) -> None:
        proc = subprocess.run(
            self._cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if proc.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} failed (rc={proc.returncode}): "
                f"{proc.stdout}{proc.stderr}{log[-2000:]}"
            )

    def _options(self) -> str:
        return " ".join(
            [
                f"-c listen_addresses={','.join(self.listen)}",
                f"-p {self.port}",
                f"-k {self.sock}",
                "-c max_connections=400",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c shared_buffers=64MB",
            ]
        )

    def start(self) -> str:
        """initdb, start the server, create the database; returns its base URL."""
        self.sock.mkdir()
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
        initdb = "initdb -U postgres -A trust -E UTF8 --no-sync --locale=C"
        self._run(*initdb.split(), "-D", str(self.data))
        if self.listen != ("127.0.0.1",):
            with open(self.data / "pg_hba.conf", "a") as hba:
                for addr in self.listen:
                    hba.write(f"host all all {addr.rsplit('.', 1)[0]}.0/24 trust\n")
        for attempt in range(5):
            self.port = _free_port()
            try:
                self._server("start")
                break
            except RuntimeError:
                if attempt == 4:
                    raise
        self.running = True
        self._run(
            "createdb", "-h", str(self.sock), "-p", str(self.port), "-U", "postgres", DATABASE
        )
        return self.url

    def _server(self, action: str, *flags: str) -> None:
        opts = ("-D", str(self.data), "-l", str(self.log), "-w", "-t", "60")
        self._run("pg_ctl", *opts, *flags, "-o", self._options(), action)

    def restart(self) -> None:
        """``pg_ctl restart`` (fast mode): every client connection is cut."""
        self._server("restart", "-m", "fast")

    def stop(self) -> None:
        """Stop the server (immediate mode) and delete the cluster directory."""
        if self.running:
            self.running = False
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    # -- URLs ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """URL of the test database (default schema ``public``)."""
        return self.url_at("127.0.0.1")

    def url_at(self, host: str) -> str:
        """URL of the test database through address ``host``."""
        return f"postgresql://postgres@{host}:{self.port}/{DATABASE}"

    def schema_url(self, schema: str) -> str:
        """URL whose connections use ``schema`` (``options=-csearch_path=...``)."""
        options = urllib.parse.quote(f"-csearch_path={schema}")
        return f"{self.url}?options={options}"

    def fresh_url(self) -> str:
        """Create a new empty schema and return a URL that selects it."""
        import psycopg

        schema = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        return self.schema_url(schema)


def check_client() -> None:
    """Raise ``Unavailable`` when psycopg (the ``honker[postgres]`` extra) is missing."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise Unavailable(
            f"psycopg/psycopg-pool not installed ({exc}); install honker[postgres]"
        ) from None
