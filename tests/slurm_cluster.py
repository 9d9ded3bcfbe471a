"""A real single-node SLURM cluster for the tests (tools/slurm/local_cluster.sh).

The fixture starts the cluster (installing the Debian packages when missing) and stops every
daemon it started when the session ends; a cluster that was already up is used and left up.
It needs root and apt-get: elsewhere the SLURM tests are skipped with the reason, except under
CI (CI=true), where they fail, so that a CI machine never passes without running them.
"""
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tools", "slurm", "local_cluster.sh")


def _unavailable(reason):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"the SLURM tests cannot run under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster():
    """SLURM_CONF of a running single-node cluster with accounting; set in os.environ, so
    sbatch, sacct and the jobs (which inherit the environment) find it."""
    if os.geteuid() != 0:
        _unavailable("starting a SLURM cluster needs root (tools/slurm/local_cluster.sh)")
    try:
        import submitit  # noqa: F401
    except ImportError:
        _unavailable("submitit is not installed (make setup installs it)")
    was_up = subprocess.run(["bash", SCRIPT, "status"], capture_output=True).returncode == 0
    started = subprocess.run(["bash", SCRIPT, "start"], capture_output=True, text=True,
                             timeout=900)
    if started.returncode != 0:
        _unavailable(f"tools/slurm/local_cluster.sh start failed: "
                     f"{(started.stderr or started.stdout).strip()[-500:]}")
    conf = next(line.split("=", 1)[1] for line in started.stdout.splitlines()
                if line.startswith("export SLURM_CONF="))
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old
    if not was_up:
        subprocess.run(["bash", SCRIPT, "stop"], capture_output=True, timeout=120)
