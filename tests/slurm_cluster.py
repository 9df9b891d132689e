"""A real single-node SLURM cluster for the tests: munged, MariaDB, slurmdbd, slurmctld, slurmd.

Everything lives in one fresh temporary directory with its own munge key and socket, its
own database and free TCP ports, so it cannot clash with another cluster on the machine.
Client commands (and the jobs, through sbatch's exported environment) find it through
``SLURM_CONF``.  slurmdbd + MariaDB are there because submitit follows job states with
``sacct`` only (no squeue fallback): without accounting, a job that dies without writing
its result (killed, timed out) would leave the launching process polling forever.

Needs root (the daemons run as root, munged as ``munge``, MariaDB as ``mysql``) and
Debian's ``slurmd slurmctld slurmdbd slurm-client munge mariadb-server``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

NODE = "node0"
PARTITION = "debug"
CLUSTER = "adaxtest"
BINARIES = ("munged", "mariadbd", "mariadb-install-db", "mariadb", "slurmdbd", "slurmctld", "slurmd", "sbatch",
            "sacct", "sacctmgr", "scontrol", "sinfo", "squeue", "scancel")


def cannot_start_reason() -> str | None:
    """Why this machine cannot run the test cluster, or None."""
    if os.geteuid() != 0:
        return "the SLURM test cluster needs root (munged runs as 'munge', MariaDB as 'mysql')"
    missing = [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if missing:
        return ("SLURM/munge/MariaDB not installed (missing " + ", ".join(missing) + "): "
                "apt-get install slurmd slurmctld slurmdbd slurm-client munge mariadb-server")
    for user in ("munge", "mysql"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"user '{user}' does not exist (installed by Debian's munge/mariadb-server packages)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class ClusterError(RuntimeError):
    pass


class SlurmCluster:
    """``start()`` brings the cluster up (node idle), ``stop()`` tears everything down."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="adaxbench-slurm-"))
        self.root.chmod(0o755)
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env = {**os.environ, "SLURM_CONF": str(self.root / "slurm.conf")}
        self.env.pop("SLURM_JOB_ID", None)

    # ---- helpers -----------------------------------------------------------------
    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def _spawn(self, name: str, cmd: list[str], **kw) -> subprocess.Popen:
        log = open(self.root / "log" / f"{name}.out", "wb")
        proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **kw)
        self.procs.append((name, proc))
        return proc

    def _wait(self, what: str, ok, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise ClusterError(f"{name} exited ({proc.returncode}) while waiting for {what}: "
                                       + self.log_tail(name))
            try:
                if ok():
                    return
            except (subprocess.SubprocessError, OSError):
                pass
            time.sleep(0.2)
        raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.root / "log" / f"{name}.out"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # ---- lifecycle ---------------------------------------------------------------
    def start(self, timeout: float = 90) -> "SlurmCluster":
        r = self.root
        for d in ("log", "state", "spool"):
            (r / d).mkdir()
        munge_uid, mysql_uid = pwd.getpwnam("munge"), pwd.getpwnam("mysql")
        # munge: own key and socket; the socket dir must be reachable by job users.
        (r / "munge").mkdir(mode=0o711)
        os.chown(r / "munge", munge_uid.pw_uid, munge_uid.pw_gid)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chown(key, munge_uid.pw_uid, munge_uid.pw_gid)
        key.chmod(0o400)
        sock = r / "munge" / "munge.sock"
        self._spawn("munged", [_which("munged"), "--foreground", "--force", f"--key-file={key}", f"--socket={sock}",
                               f"--pid-file={r}/munge/munged.pid", f"--log-file={r}/munge/munged.log",
                               f"--seed-file={r}/munge/munged.seed"], user="munge", group="munge")
        # MariaDB for slurmdbd, on a private datadir and a free port.
        db = r / "mysql"
        db.mkdir()
        os.chown(db, mysql_uid.pw_uid, mysql_uid.pw_gid)
        db_port, dbd_port, ctld_port, slurmd_port = (_free_port() for _ in range(4))
        self.run(_which("mariadb-install-db"), "--no-defaults", "--user=mysql", f"--datadir={db}",
                 "--auth-root-authentication-method=normal", "--skip-test-db", timeout=120)
        db_sock = db / "mysqld.sock"
        self._spawn("mariadbd", [_which("mariadbd"), "--no-defaults", "--user=mysql", f"--datadir={db}",
                                 f"--socket={db_sock}", f"--port={db_port}", "--bind-address=127.0.0.1",
                                 f"--pid-file={db}/mysqld.pid", "--skip-log-bin", "--skip-name-resolve",
                                 "--innodb-buffer-pool-size=32M", "--innodb-lock-wait-timeout=900"])
        self._wait("munged", lambda: sock.exists(), 20)
        self._wait("MariaDB", lambda: self.run("mariadb", "--no-defaults", "-S", str(db_sock), "-u", "root",
                                               "-e", "select 1", check=False).returncode == 0, 60)
        self.run("mariadb", "--no-defaults", "-S", str(db_sock), "-u", "root", "-e",
                 "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; "
                 "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';")
        self._write_configs(sock, db_port, dbd_port, ctld_port, slurmd_port)
        self._spawn("slurmdbd", [_which("slurmdbd"), "-D"])
        self._wait("slurmdbd", lambda: self.run("sacctmgr", "-n", "show", "cluster", check=False).returncode == 0, 60)
        self.run("sacctmgr", "-i", "add", "cluster", CLUSTER)
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i"])
        self._wait("slurmctld", lambda: "UP" in self.run("scontrol", "ping", check=False).stdout, 60)
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", NODE])
        self._wait(f"node {NODE} to be idle",
                   lambda: self.run("sinfo", "-h", "-n", NODE, "-o", "%T", check=False).stdout.strip() == "idle",
                   timeout)
        return self

    def _write_configs(self, munge_sock: Path, db_port: int, dbd_port: int, ctld_port: int, slurmd_port: int) -> None:
        r = self.root
        # This machine's hardware exactly as slurmd sees it (CPUs, sockets, cores, threads).
        hw = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]
        fields = dict(f.split("=", 1) for f in hw.split() if "=" in f)
        cpus = {k: fields[k] for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
                if k in fields}
        memory = int(int(fields.get("RealMemory", "2048")) * 0.9)
        self.cpus = int(cpus["CPUs"])
        node_hw = " ".join(f"{k}={v}" for k, v in cpus.items())
        (r / "slurm.conf").write_text(f"""\
ClusterName={CLUSTER}
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={munge_sock}
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={dbd_port}
AccountingStoragePass={munge_sock}
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=10
MinJobAge=300
NodeName={NODE} NodeHostname={socket.gethostname()} NodeAddr=127.0.0.1 {node_hw} RealMemory={memory} Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        # A GPU GRES the scheduler can allocate, on a machine without a GPU. Slurm 22.05 drops
        # a GPU that has no File= ("Removing file-less GPU"), so it names a harmless device.
        (r / "gres.conf").write_text(f"NodeName={NODE} Name=gpu File=/dev/null\n")
        dbd = r / "slurmdbd.conf"
        dbd.write_text(f"""\
AuthType=auth/munge
AuthInfo=socket={munge_sock}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={dbd_port}
SlurmUser=root
LogFile={r}/log/slurmdbd.log
PidFile={r}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={db_port}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
""")
        dbd.chmod(0o600)

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- job helpers ---------------------------------------------------------------
    def job_ids(self) -> list[str]:
        out = self.run("squeue", "-h", "-o", "%i").stdout.split()
        return out

    def release_requeued(self) -> None:
        """Slurm holds a requeued job for ~2 minutes (Reason=BeginTime); start it now instead."""
        out = self.run("squeue", "-h", "-t", "PD", "-o", "%i %r", check=False).stdout
        for line in out.splitlines():
            job, _, reason = line.partition(" ")
            if reason.strip() == "BeginTime":
                self.run("scontrol", "update", f"JobId={job}", "StartTime=now", check=False)

    def sacct(self, job: str, fields: str = "JobID,State,ExitCode,AllocTRES") -> list[dict[str, str]]:
        out = self.run("sacct", "-n", "-P", "-D", "-j", job, "-o", fields).stdout
        names = fields.split(",")
        return [dict(zip(names, line.split("|"))) for line in out.splitlines() if line]

    def cancel_all(self) -> None:
        self.run("scancel", "--full", "-u", "root", check=False)
