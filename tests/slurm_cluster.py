"""A real single-node Slurm (slurmctld + slurmd + munged) for the tests, started once per session.

`slurm` is a session fixture: on a Debian machine, as root, it installs Slurm 22.05 when it is
missing (`apt-get install slurmctld slurmd slurm-client munge`, about 10 s), starts a private
munged (its own key and socket, run as the `munge` user) and a one-node cluster with one
partition `debug` in a temporary folder, on free ports, with no accounting storage, and points
`SLURM_CONF` at it for the session. At the end it cancels what is left, stops the three daemons
by process id and removes the folder. Elsewhere the tests that use it skip with a one-line
reason, unless `MADLAB_REQUIRE_SLURM=1` (CI) turns that skip into a failure.

Use it outside pytest to try things by hand: `python tests/slurm_cluster.py` starts one, prints
the `export SLURM_CONF=...` line, and stops it on Enter.
"""
from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "scancel", "sinfo", "munged")
MIN_CPUS = 4          # the node offers at least this many CPUs (config_overrides), so that array
                      # throttling is observable on a 2-core machine: unthrottled, 4 tasks would run
READY_TIMEOUT_S = 180.0
REQUIRE = "MADLAB_REQUIRE_SLURM"


def _which_all() -> list[str]:
    extra = os.pathsep.join(["/usr/sbin", "/sbin"])
    path = os.environ.get("PATH", "") + os.pathsep + extra
    return [b for b in BINARIES if shutil.which(b, path=path) is None]


def _binary(name: str) -> str:
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin") or name


def install_packages() -> str | None:
    """Install Debian's Slurm and munge packages when missing; None, or why it cannot."""
    if not _which_all():
        return None
    if os.geteuid() != 0:
        return f"Slurm is not installed and installing it needs root (apt-get install {' '.join(PACKAGES)})"
    if shutil.which("apt-get") is None:
        return f"Slurm is not installed and there is no apt-get here ({' '.join(PACKAGES)})"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:           # an old or empty package list: update once, then retry
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        return f"apt-get install {' '.join(PACKAGES)} failed: {tail[0]}"
    missing = _which_all()
    return f"Slurm installed but {', '.join(missing)} not found" if missing else None


def unavailable() -> str | None:
    """Why a private Slurm cannot be started here, or None."""
    if os.geteuid() != 0:
        return f"a private Slurm needs root (slurmd, munged as the munge user); running as uid {os.geteuid()}"
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install 'madlab[slurm]')"
    return install_packages()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _machine() -> tuple[int, int]:
    """(CPUs, memory in MB) of this machine."""
    cpus = os.cpu_count() or 1
    with open("/proc/meminfo") as f:
        kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    return cpus, kb // 1024


@dataclass
class SlurmCluster:
    """A running private cluster: its folder, config file and daemons."""
    root: Path
    conf: Path
    node: str
    partition: str = "debug"
    cpus: int = 0
    procs: dict = field(default_factory=dict)        # name -> Popen

    @property
    def env(self) -> dict:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def cmd(self, *args: str, check: bool = True) -> str:
        """Run a Slurm client command against this cluster; its stdout."""
        done = subprocess.run([_binary(args[0]), *args[1:]], env=self.env, capture_output=True,
                              text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def jobs(self, states: str = "all") -> list[dict]:
        """Every job element slurmctld knows (array elements one per line): id, state, reason, comment."""
        out = self.cmd("squeue", "-h", "-r", "-t", states, "-o", "%i|%T|%r|%k")
        rows = []
        for line in out.splitlines():
            if line.strip():
                job, state, reason, comment = line.split("|", 3)
                rows.append({"id": job, "state": state, "reason": reason, "comment": comment})
        return rows

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.root.glob("*.log")))

    def wait_until(self, predicate, what: str, timeout_s: float = 120.0, every_s: float = 0.2):
        """Poll `predicate()` until it returns something truthy (returned); fail naming `what`."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            time.sleep(every_s)

    def cancel_all(self) -> None:
        """Cancel every job and wait until none is left running (their processes gone)."""
        try:
            self.cmd("scancel", "--quiet", "--user", pwd.getpwuid(os.getuid()).pw_name, check=False)
            self.wait_until(lambda: not self.jobs("PENDING,RUNNING,COMPLETING,CONFIGURING,SUSPENDED"),
                            "the jobs to end", timeout_s=60)
        except Exception:  # noqa: BLE001 - best effort at teardown; the daemons are stopped anyway
            pass

    def stop(self) -> None:
        """Cancel the jobs, then stop the daemons this object started, by process id."""
        if not self.procs:
            return
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.cancel_all()
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _write_conf(root: Path, node: str, cpus: int, mem_mb: int, munge_socket: Path) -> Path:
    ctld_port, d_port = _free_port(), _free_port()
    conf = root / "slurm.conf"
    conf.write_text(f"""\
# a private one-node Slurm for madlab's tests (tests/slurm_cluster.py)
ClusterName=madlabtest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket},cred_expire=10
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
KillWait=3
MinJobAge=300
InactiveLimit=0
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def start(root: Path | None = None) -> SlurmCluster:
    """Start munged, slurmctld and slurmd in `root` (a new temporary folder by default)."""
    root = Path(root or tempfile.mkdtemp(prefix="madlab-slurm-"))
    root.chmod(0o755)                                   # the munge user must reach its folder
    munge = pwd.getpwnam("munge")
    mdir = root / "munge"
    mdir.mkdir()
    mdir.chmod(0o755)                                   # munged: the socket folder must be searchable by all
    key = mdir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    for p in (mdir, key):
        os.chown(p, munge.pw_uid, munge.pw_gid)
    for d in ("state", "spool"):
        (root / d).mkdir()
    sock = mdir / "munge.socket"
    cpus, mem_mb = _machine()
    node = socket.gethostname().split(".")[0]
    cluster = SlurmCluster(root=root, conf=_write_conf(root, node, max(cpus, MIN_CPUS), mem_mb, sock),
                           node=node, cpus=max(cpus, MIN_CPUS))
    atexit.register(cluster.stop)
    logs = {}

    def spawn(name: str, args: list[str], **kw) -> None:
        logs[name] = open(root / f"{name}.out", "w")
        cluster.procs[name] = subprocess.Popen(args, stdout=logs[name], stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, env=cluster.env,
                                               start_new_session=True, **kw)

    try:
        spawn("munged", [_binary("munged"), "--foreground", f"--socket={sock}", f"--key-file={key}",
                         f"--pid-file={mdir}/munged.pid", f"--log-file={mdir}/munged.log",
                         f"--seed-file={mdir}/munged.seed"],
              user=munge.pw_uid, group=munge.pw_gid, extra_groups=[])
        cluster.wait_until(lambda: sock.exists() or cluster.procs["munged"].poll() is not None,
                           "munged's socket", timeout_s=60, every_s=0.05)
        if not sock.exists():
            raise RuntimeError("munged did not start")
        spawn("slurmctld", [_binary("slurmctld"), "-D", "-i", "-f", str(cluster.conf)])
        spawn("slurmd", [_binary("slurmd"), "-D", "-f", str(cluster.conf), "-N", node])

        def idle():
            for name, proc in cluster.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with status {proc.returncode}")
            done = subprocess.run([_binary("sinfo"), "-h", "-o", "%T"], env=cluster.env,
                                  capture_output=True, text=True)
            return done.returncode == 0 and done.stdout.strip() == "idle"

        cluster.wait_until(idle, "the Slurm node to become idle", timeout_s=READY_TIMEOUT_S, every_s=0.25)
    except Exception as err:
        text = "".join(f"\n== {n}: " + (root / f"{n}.out").read_text(errors="replace")[-1500:]
                       for n in logs if (root / f"{n}.out").exists())
        cluster.stop()
        raise RuntimeError(f"could not start a private Slurm: {err}{text}") from None
    finally:
        for f in logs.values():
            f.close()
    return cluster


def _skip_or_fail(reason: str):
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{REQUIRE}=1 but no Slurm here: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm():
    """A running private single-node Slurm (SLURM_CONF points at it for the session)."""
    reason = unavailable()
    if reason:
        _skip_or_fail(reason)
    try:
        cluster = start()
    except RuntimeError as err:
        _skip_or_fail(str(err))
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before
        cluster.stop()


if __name__ == "__main__":
    why = unavailable()
    if why:
        raise SystemExit(why)
    c = start()
    print(f"export SLURM_CONF={c.conf}\n(Enter stops it)")
    try:
        input()
    finally:
        c.stop()
