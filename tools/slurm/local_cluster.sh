#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, with accounting (sacct), for the tests and for
# trying tools/submit_slurm.py: Debian's munge, MariaDB, slurmdbd, slurmctld and slurmd, run as
# root without systemd or cgroups.
#
#   sudo tools/slurm/local_cluster.sh start    # installs the packages when missing; prints
#                                               # "export SLURM_CONF=..." for the clients
#   sudo tools/slurm/local_cluster.sh status
#   sudo tools/slurm/local_cluster.sh stop     # stops every daemon it started, by its PID
#   sudo tools/slurm/local_cluster.sh reset    # stop, then delete the state (job ids restart)
#
# Everything lives in $ZIP_D2_SLURM_DIR (default /var/spool/zip_d2_slurm): config (etc/), the
# controller's state and the accounting database, which are kept together across stop/start so
# that job ids keep counting up and sacct never sees an old job under a new job's id. The
# system's /etc/slurm is not touched: clients find this cluster through SLURM_CONF. PID files
# are in /run/zip_d2_slurm. Latency is tuned for tests (a job starts within ~1 s, a requeued
# one within seconds: batch_sched_delay=0, sched_min_interval=0, cred_expire=10).
set -euo pipefail

DIR=${ZIP_D2_SLURM_DIR:-/var/spool/zip_d2_slurm}
RUN=/run/zip_d2_slurm
ETC=$DIR/etc
DB_PORT=${ZIP_D2_SLURM_DB_PORT:-16819}
DB_SOCKET=$RUN/mysql/mariadb.sock
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
# Order matters: each daemon needs the ones before it.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

die() { echo "local_cluster: error: $*" >&2; exit 2; }
say() { echo "local_cluster: $*"; }

pid_of() {  # the live PID recorded for daemon $1, or nothing
    local file=$RUN/$1.pid pid
    [[ -s $file ]] || return 0
    pid=$(<"$file")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll until COMMAND succeeds
    local limit=$1 what=$2 start=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        if (( SECONDS - start >= limit )); then
            die "$what not ready after ${limit}s; logs in $DIR/log"
        fi
        sleep 0.2
    done
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    (( ${#missing[@]} )) || return 0
    command -v apt-get >/dev/null ||
        die "packages missing (${missing[*]}) and no apt-get here; install them by hand"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # No daemon may start at install time: this script starts them itself.
    local policy=/usr/sbin/policy-rc.d created=
    if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"
        created=1; fi
    if ! apt-get install -y -qq "${missing[@]}" >"$DIR/log/apt.log" 2>&1; then
        apt-get update -qq >>"$DIR/log/apt.log" 2>&1 &&
            apt-get install -y -qq "${missing[@]}" >>"$DIR/log/apt.log" 2>&1 ||
            { [[ -n $created ]] && rm -f "$policy"; die "apt-get install failed; see $DIR/log/apt.log"; }
    fi
    [[ -n $created ]] && rm -f "$policy"
    return 0
}

write_configs() {
    local host node cpus
    host=$(hostname -s)
    # The node line as slurmd sees the machine, with at least 8 CPUs declared (config_overrides)
    # so that a 4-task array and its merge job run at once on a small CI machine.
    node=$(slurmd -C | head -1)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
    if (( cpus < 8 )); then
        node="NodeName=$host CPUs=8 Boards=1 SocketsPerBoard=1 CoresPerSocket=8 ThreadsPerCore=1"
        node+=" RealMemory=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$(slurmd -C)")"
    fi
    cat >"$ETC/slurm.conf" <<EOF
# Written by zip_d2 tools/slurm/local_cluster.sh: a single-node test cluster.
ClusterName=zipd2
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/slurmd-%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
JobRequeue=1
ReturnToService=2
MinJobAge=60
KillWait=5
MailProg=/bin/true
MpiDefault=none
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$ETC/slurmdbd.conf" <<EOF
# Written by zip_d2 tools/slurm/local_cluster.sh.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$ETC/slurmdbd.conf"
}

start_munge() {
    [[ -n $(pid_of munged) ]] && return 0
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 755 /run/munge /var/log/munge /var/lib/munge
    # munged writes its PID file as the munge user: give it a folder of its own.
    install -d -o munge -g munge -m 755 "$RUN/munge"
    runuser -u munge -- /usr/sbin/munged --force --pid-file="$RUN/munge/munged.pid"
    wait_for 10 munged test -s "$RUN/munge/munged.pid"
    ln -sf "$RUN/munge/munged.pid" "$RUN/munged.pid"
    wait_for 10 munge sh -c 'munge -n | unmunge'
}

start_mariadb() {
    [[ -n $(pid_of mariadbd) ]] && return 0
    local data=$DIR/mysql fresh=
    if [[ ! -d $data/mysql ]]; then
        install -d -o mysql -g mysql "$data"
        mariadb-install-db --user=mysql --datadir="$data" --auth-root-authentication-method=socket \
            >"$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed; see $DIR/log"
        fresh=1
    fi
    install -d -o mysql -g mysql -m 755 "$RUN/mysql"
    # Not daemonised: started in the background here, with its own PID file, socket and port.
    setsid /usr/sbin/mariadbd --user=mysql --datadir="$data" --socket="$DB_SOCKET" \
        --pid-file="$RUN/mysql/mariadbd.pid" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --skip-name-resolve --log-error="$DIR/log/mariadb.log" </dev/null >/dev/null 2>&1 &
    wait_for 60 MariaDB mariadb --socket="$DB_SOCKET" -uroot -e "select 1"
    ln -sf "$RUN/mysql/mariadbd.pid" "$RUN/mariadbd.pid"
    if [[ -n $fresh ]]; then
        mariadb --socket="$DB_SOCKET" -uroot -e "
            CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
            FLUSH PRIVILEGES;"
    fi
}

start_slurm() {
    export SLURM_CONF=$ETC/slurm.conf
    if [[ -z $(pid_of slurmdbd) ]]; then
        slurmdbd
        wait_for 30 slurmdbd sacctmgr -n list cluster
    fi
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx zipd2; then
        sacctmgr -i add cluster zipd2 >/dev/null
    fi
    [[ -n $(pid_of slurmctld) ]] || slurmctld
    wait_for 30 slurmctld scontrol ping
    [[ -n $(pid_of slurmd) ]] || slurmd
    # Idle: registered and ready for jobs (mixed/allocated: jobs from before a restart run).
    wait_for 60 "the node" sh -c 'sinfo -h -o %T | grep -Eq "^(idle|mixed|allocated)$"'
}

start() {
    [[ $(id -u) == 0 ]] || die "run as root (it installs packages and starts daemons)"
    mkdir -p "$DIR/log" "$DIR/state" "$DIR/spool" "$ETC" "$RUN"
    install_packages
    local host
    host=$(hostname -s)
    getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >>/etc/hosts
    write_configs
    start_munge
    start_mariadb
    start_slurm
    say "up: $(sinfo -h -o '%P %D node(s) %T')"
    echo "export SLURM_CONF=$ETC/slurm.conf"
}

stop_daemon() {  # SIGTERM, then SIGKILL after 20 s, by the PID in the daemon's PID file
    local name=$1 pid i
    pid=$(pid_of "$name")
    [[ -n $pid ]] || { rm -f "$RUN/$name.pid"; return 0; }
    kill "$pid"
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name (pid $pid) ignored SIGTERM for 20 s; killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN/$name.pid"
}

stop() {
    # Each takes ~2 s to exit: the job daemons together, then accounting, then the rest.
    stop_daemon slurmd & stop_daemon slurmctld & wait
    stop_daemon slurmdbd
    stop_daemon mariadbd & stop_daemon munged & wait
    say "stopped"
}

status() {
    local name pid rc=0
    for name in "${DAEMONS[@]}"; do
        pid=$(pid_of "$name")
        if [[ -n $pid ]]; then echo "$name: running (pid $pid)"; else echo "$name: stopped"; rc=3; fi
    done
    if (( rc == 0 )); then SLURM_CONF=$ETC/slurm.conf sinfo; echo "export SLURM_CONF=$ETC/slurm.conf"; fi
    return $rc
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    reset) stop; rm -rf "$DIR"; say "deleted $DIR" ;;
    *) echo "usage: $0 start|stop|status|reset" >&2; exit 2 ;;
esac
