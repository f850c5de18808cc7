#!/usr/bin/env bash
# Starts and stops a single-node Slurm cluster on this machine (munged, slurmctld, slurmd), for
# tests of Slurm array jobs. Every file (munge key, slurm.conf, state, spool, logs, pid files)
# lives under STATE_DIR, and the daemons listen on this host only: the node is this host's
# short name at 127.0.0.1.
#
# Usage:
#   scripts/slurm-local.sh start STATE_DIR   start the daemons; wait until the node is idle
#   scripts/slurm-local.sh stop STATE_DIR    stop the daemons started with STATE_DIR
#   scripts/slurm-local.sh check             exit 0 when this machine can run the cluster
#
# Clients find the cluster through SLURM_CONF=STATE_DIR/slurm.conf, which `start` prints.
# Ports: SLURMCTLD_PORT (default 6817) and SLURMD_PORT (default 6818).
#
# Needs root and the Debian 12 packages slurmctld, slurmd, slurm-client and munge (Slurm 22.05).
# Exit status: 0 on success, 3 when not root, 4 when a program is missing, 1 on other failures.
set -euo pipefail

readonly REQUIRED_PROGRAMS=(munged mungekey slurmctld slurmd sbatch squeue sinfo scontrol)
readonly DEBIAN_PACKAGES='slurmctld slurmd slurm-client munge'

usage() {
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 1
}

check_machine() {
  local missing=()
  for program in "${REQUIRED_PROGRAMS[@]}"; do
    command -v "$program" >/dev/null 2>&1 || [[ -x "/usr/sbin/$program" ]] || missing+=("$program")
  done
  if ((${#missing[@]} > 0)); then
    echo "slurm-local: missing programs: ${missing[*]}. Install the Debian packages: apt-get install $DEBIAN_PACKAGES" >&2
    exit 4
  fi
  if [[ "$(id -u)" != 0 ]]; then
    echo "slurm-local: the daemons run as root (SlurmUser=root), so run this script as root." >&2
    exit 3
  fi
}

# Waits up to $2 seconds for the command $1 to succeed.
wait_for() {
  local deadline=$((SECONDS + $2))
  until eval "$1" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then return 1; fi
    sleep 0.5
  done
}

write_config() {
  local dir=$1 host=$2
  local cpus memory_mb
  cpus=$(nproc)
  memory_mb=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 / 2 }' /proc/meminfo)

  cat >"$dir/slurm.conf" <<EOF
# Written by scripts/slurm-local.sh: one node, state under $dir.
ClusterName=modarch-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that requests no memory gets all of it and runs alone on the node.
DefMemPerCPU=$((memory_mb / cpus))
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  local dir=$1 host
  host=$(hostname -s)
  mkdir -p "$dir"/{munge,state,spool,log}
  dir=$(cd "$dir" && pwd)
  chmod 700 "$dir/munge"

  if [[ ! -f "$dir/munge/munge.key" ]]; then mungekey --create --keyfile="$dir/munge/munge.key"; fi
  chmod 600 "$dir/munge/munge.key"
  # --force: munged refuses to run as root without it.
  munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed"
  wait_for "test -S '$dir/munge/munge.socket'" 10 || { echo "slurm-local: munged did not start. See $dir/log/munged.log" >&2; exit 1; }

  write_config "$dir" "$host"
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -f "$SLURM_CONF"
  wait_for "scontrol ping | grep -q UP" 30 || { echo "slurm-local: slurmctld did not respond to scontrol ping within 30 s. See $dir/log/slurmctld.log" >&2; exit 1; }
  slurmd -f "$SLURM_CONF"
  if ! wait_for "sinfo -h -N -n '$host' -o %T | grep -Eq '^(idle|mixed|allocated)'" 60; then
    echo "slurm-local: node $host did not become idle within 60 s (state: $(sinfo -h -N -o %T 2>&1)). See $dir/log/slurmd.log" >&2
    exit 1
  fi
  echo "slurm-local: node $host is up. Clients need: export SLURM_CONF=$SLURM_CONF"
}

# Sends SIGTERM to the process in pid file $1, then waits up to 20 s for it to exit.
stop_daemon() {
  local pid_file=$1 pid
  [[ -f "$pid_file" ]] || return 0
  pid=$(cat "$pid_file")
  if kill "$pid" 2>/dev/null; then
    wait_for "! kill -0 $pid" 20 || echo "slurm-local: process $pid ($pid_file) is still running after 20 s" >&2
  fi
  rm -f "$pid_file"
}

stop() {
  local dir=$1
  stop_daemon "$dir/slurmd.pid"
  stop_daemon "$dir/slurmctld.pid"
  stop_daemon "$dir/munge/munged.pid"
  echo "slurm-local: stopped the daemons of $dir"
}

case "${1:-}" in
  start)
    [[ $# -eq 2 ]] || usage
    check_machine
    start "$2"
    ;;
  stop)
    [[ $# -eq 2 ]] || usage
    stop "$2"
    ;;
  check)
    check_machine
    ;;
  *) usage ;;
esac
