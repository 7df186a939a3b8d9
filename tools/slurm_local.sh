#!/usr/bin/env bash
# A one-node Slurm cluster on 127.0.0.1, to try the Slurm recipes of docs/training.md and
# docs/depth_priors.md on one machine (and to test them in CI).
#
#   sudo tools/slurm_local.sh          # start (same as "start"); idempotent
#   sudo tools/slurm_local.sh stop     # stop the daemons this script started
#   tools/slurm_local.sh status        # exit 0 if the node is up and takes jobs
#
# What "start" does, in order (each step is skipped when already done):
#   1. installs Debian's slurm-wlm and munge with apt-get if they are missing (Debian/Ubuntu, root);
#   2. writes /etc/slurm/slurm.conf for one node: this machine's CPUs and memory, slurmctld and
#      slurmd run as root, proctrack/linuxproc and task/none (no cgroups needed), no accounting,
#      one partition "debug" that jobs may share with --oversubscribe, short scheduler intervals;
#   3. starts munged (as user munge), slurmctld and slurmd;
#   4. waits until `sinfo` shows the node idle.
# State, logs and pid files live in $SLURM_LOCAL_DIR (default /var/tmp/s3dgs-slurm); the daemons'
# logs are there if a job does not start. An existing slurm.conf that this script did not write is
# never touched: start refuses instead.
#
# Exit status: 0 up; 1 failed (the message says where to look); 3 cannot run here (not root, no
# apt-get, packages not installable): the one-line reason is on stderr.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by s3dgs tools/slurm_local.sh"
DIR=${SLURM_LOCAL_DIR:-/var/tmp/s3dgs-slurm}
PATH=$PATH:/usr/sbin:/sbin
NODE=$(hostname -s)

unavailable() { echo "slurm_local.sh: $*" >&2; exit 3; }
fail() { echo "slurm_local.sh: $*" >&2; exit 1; }

# True when the pid file names a running process (any user may ask: no signal is sent).
pid_alive() { [ -f "$1" ] && [ -d "/proc/$(cat "$1")" ]; }

# True when this script's slurmctld runs and the node is idle or running jobs. (The pid file is checked
# first: without a slurmctld, sinfo retries for about 10 s before it gives up.)
node_up() {
    pid_alive "$DIR/slurmctld.pid" && [ -f "$CONF" ] && command -v sinfo >/dev/null || return 1
    local state
    state=$(timeout 10 sinfo -h -n "$NODE" -o %T 2>/dev/null) || return 1
    [[ $state =~ ^(idle|mixed|allocated|completing)$ ]]
}

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return
    [ "$(id -u)" = 0 ] || unavailable "slurm-wlm and munge are not installed; run as root to install them"
    command -v apt-get >/dev/null || unavailable "slurm-wlm and munge are not installed and there is no apt-get" \
        "(install them with your distribution's packages)"
    local log=/tmp/slurm_local_apt.log
    echo "installing slurm-wlm and munge with apt-get (log: $log)" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Fresh containers have no package lists: update only when the first try fails.
    if ! apt-get install -y -q --no-install-recommends slurm-wlm munge >"$log" 2>&1; then
        apt-get update -q >>"$log" 2>&1 && apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$log" 2>&1 \
            || unavailable "apt-get install slurm-wlm munge failed: $(tail -n 1 "$log")"
    fi
}

write_conf() {
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        fail "$CONF exists and was not written by this script; not touching a real cluster's configuration"
    fi
    local cpus mem
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)   # CPUs this machine lets us use
    mem=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)   # MB, a margin below the total
    mkdir -p "$(dirname "$CONF")" "$DIR/state" "$DIR/spool"
    local new
    new=$(cat <<EOF
$MARK
ClusterName=local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
ReturnToService=2
MinJobAge=60
KillWait=5
InactiveLimit=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
)
    if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$new" ]; then
        stop_daemons   # a running slurmctld would keep the old configuration
        printf '%s\n' "$new" >"$CONF"
    fi
}

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge
    chown munge:munge /run/munge
    if ! pid_alive /run/munge/munged.pid; then
        runuser -u munge -- munged
        touch "$DIR/munged.ours"   # stop ends only a munged that this script started
    fi
    munge -n | unmunge >/dev/null || fail "munged does not answer (see /var/log/munge/munged.log)"
}

start() {
    if node_up; then
        echo "slurm is up: $(sinfo -h -o '%P %D %T %N')"
        return
    fi
    install_packages
    [ "$(id -u)" = 0 ] || unavailable "starting slurmctld and slurmd needs root"
    write_conf
    start_munge
    pid_alive "$DIR/slurmctld.pid" || slurmctld || fail "slurmctld did not start (see $DIR/slurmctld.log)"
    pid_alive "$DIR/slurmd.pid" || slurmd || fail "slurmd did not start (see $DIR/slurmd.log)"
    for _ in $(seq 60); do
        if node_up; then
            echo "slurm is up: $(sinfo -h -o '%P %D %T %N')"
            return
        fi
        sleep 0.5
    done
    fail "node $NODE not idle after 30 s: $(sinfo -h -o '%T %E' 2>&1) (see $DIR/slurmctld.log and $DIR/slurmd.log)"
}

# Stop slurmd and slurmctld.
stop_daemons() {
    local name pidfile
    for name in slurmd slurmctld; do
        pidfile=$DIR/$name.pid
        if pid_alive "$pidfile"; then
            kill "$(cat "$pidfile")"
            for _ in $(seq 50); do pid_alive "$pidfile" || break; sleep 0.2; done
        fi
        rm -f "$pidfile"
    done
}

case "${1:-start}" in
    start) start ;;
    stop)
        [ "$(id -u)" = 0 ] || fail "stop needs root"
        stop_daemons
        if [ -f "$DIR/munged.ours" ] && pid_alive /run/munge/munged.pid; then
            kill "$(cat /run/munge/munged.pid)"
        fi
        rm -f "$DIR/munged.ours"
        echo "slurm stopped" ;;
    status) node_up && sinfo -h -o '%P %D %T %N' ;;
    *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
