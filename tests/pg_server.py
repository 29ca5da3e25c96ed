"""A throw-away PostgreSQL server for the sweep's multi-worker test and benchmark: Debian's `postgresql`
binaries (/usr/lib/postgresql/VERSION/bin, or the folder in $PG_BIN), a fresh cluster in a temporary folder,
listening on a free port of 127.0.0.1 only (no Unix socket), with password authentication, a database and a
user made the way the README's "Sweeps on several machines" says.

PostgreSQL refuses to run as root; as root (CI, this machine) the server runs as the `postgres` system user
that Debian's package creates (or `nobody`), in a folder that user owns. `stop()` ends it (fast shutdown,
then SIGKILL) and removes the folder; `with PgServer() as pg:` does both on any exit.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def pg_bin() -> Path | None:
    """The folder of initdb and postgres: $PG_BIN, else the newest /usr/lib/postgresql/*/bin (not /usr/local:
    CI's fresh machine has Debian's package only)."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")]
    found = [p for p in found if (p / "initdb").exists()]
    return max(found, key=lambda p: float(p.parent.name)) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    user, password, database = "intformer", "sweep-secret", "intformer"

    def __init__(self, bindir: Path | None = None):
        self.bindir = bindir or pg_bin()
        if self.bindir is None:
            raise FileNotFoundError("no PostgreSQL server binaries (apt-get install postgresql)")
        self.proc = None
        self.port = free_port()
        # as root: the server's own user (it refuses root); the folder must be that user's
        self.run_as = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self.run_as = pwd.getpwnam(name)
                    break
                except KeyError:
                    pass
        self.root = Path(tempfile.mkdtemp(prefix="intformer-pg-"))
        if self.run_as:
            os.chown(self.root, self.run_as.pw_uid, self.run_as.pw_gid)

    @property
    def url(self) -> str:
        """The URL a user gives `intformer sweep --storage` (the plain postgresql:// scheme)."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args, **kw):
        extra = dict(user=self.run_as.pw_uid, group=self.run_as.pw_gid, extra_groups=[]) if self.run_as else {}
        return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True, **extra, **kw)

    def start(self, timeout: float = 60.0) -> "PgServer":
        data, pwfile = self.root / "data", self.root / "pw"
        pwfile.write_text("admin-secret\n")
        if self.run_as:
            os.chown(pwfile, self.run_as.pw_uid, self.run_as.pw_gid)
        self._run(self.bindir / "initdb", "-D", data, "-U", "admin", "--auth=scram-sha-256", f"--pwfile={pwfile}",
                  "--encoding=UTF8", "--no-instructions")
        extra = dict(user=self.run_as.pw_uid, group=self.run_as.pw_gid, extra_groups=[]) if self.run_as else {}
        # fsync off: a test cluster that is thrown away needs no durability, and the disk is shared
        self.log = open(self.root / "server.log", "w")
        self.proc = subprocess.Popen([str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                                      "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                                      "-c", "fsync=off", "-c", "max_connections=60"],
                                     stdout=self.log, stderr=subprocess.STDOUT, **extra)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited {self.proc.returncode}: {self.server_log()}")
            if subprocess.run([str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
                              ).returncode == 0:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"postgres did not accept connections in {timeout:.0f} s")
            time.sleep(0.2)
        self.sql("postgres", "admin", "admin-secret",
                 f"CREATE USER {self.user} PASSWORD '{self.password}'",
                 f"CREATE DATABASE {self.database} OWNER {self.user}")
        return self

    def sql(self, database, user, password, *statements):
        import psycopg
        with psycopg.connect(host="127.0.0.1", port=self.port, dbname=database, user=user, password=password,
                             autocommit=True) as conn:
            for s in statements:
                conn.execute(s)

    def server_log(self) -> str:
        path = self.root / "server.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)          # fast shutdown: ends the sessions, then exits
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PgServer":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
