"""A throwaway PostgreSQL cluster for the tests: initdb into a temporary folder as an
unprivileged user, listening on 127.0.0.1 only (and a unix socket in that folder), durability
off (it is thrown away). `.ci/run` starts one and exports its URL as HAPPYHOME_TEST_PG_URL;
without that, the tests start their own (tests/conftest.py) and stop it at the end.

    python tests/pgcluster.py start FOLDER   # prints the URL
    python tests/pgcluster.py stop FOLDER
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
from pathlib import Path

USER = "happyhome"  # the cluster's superuser (trust authentication, 127.0.0.1 only)


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql)")
    return found


def _as_user(cmd: list[str]) -> list[str]:
    """initdb refuses to run as root: run the cluster as the postgres system user then."""
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError as err:
        raise RuntimeError("running as root and there is no postgres user to run the cluster as") from err
    return ["runuser", "-u", "postgres", "--", *cmd]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: Path) -> str:
    """initdb and start a cluster in `folder` (created); returns its URL."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    subprocess.run(_as_user([_bin("initdb"), "-D", str(data), "-U", USER, "-A", "trust", "-E", "UTF8",
                             "--no-locale"]), check=True, capture_output=True)
    port = _free_port()
    options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c synchronous_commit=off "
               f"-c full_page_writes=off -c max_connections=200")
    subprocess.run(_as_user([_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w",
                             "-t", "60", "start"]), check=True, capture_output=True)
    return f"postgresql://{USER}@127.0.0.1:{port}/postgres"


def stop(folder: Path) -> None:
    data = Path(folder) / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run(_as_user([_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       check=False, capture_output=True)


if __name__ == "__main__":
    action, where = sys.argv[1], Path(sys.argv[2])
    if action == "start":
        print(start(where))
    else:
        stop(where)
