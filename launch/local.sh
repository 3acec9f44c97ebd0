#!/usr/bin/env bash
# Starts N annojax processes on this machine, joined by jax.distributed over
# loopback (CPU collectives via gloo), e.g. to try multi-host code paths:
#
#   launch/local.sh 2 --config=configs/tiny.py --workdir=/tmp/annojax_mp
#
# Every further argument goes to `python -m annojax.main`. Each process gets
# one CPU device (or set XLA_FLAGS yourself) and logs to
# <workdir>/logs/process_<i>.log. Exits non-zero if any process fails.
# The interpreter is $PYTHON if set, else the `python3` (or `python`) first
# on PATH: with a virtual environment, activate it or set
# PYTHON=/path/to/venv/bin/python, and every process runs that one.
set -euo pipefail
n="${1:?usage: launch/local.sh NUM_PROCESSES --config=... --workdir=... [flags]}"
shift
workdir=""
for a in "$@"; do
  case "$a" in --workdir=*) workdir="${a#--workdir=}" ;; esac
done
[[ -n "$workdir" ]] || { echo "launch/local.sh: --workdir=DIR is required" >&2; exit 2; }
py="${PYTHON:-$(command -v python3 || command -v python)}"
[[ -n "$py" ]] || { echo "launch/local.sh: no python3 on PATH; set PYTHON" >&2; exit 2; }
port="${ANNOJAX_PORT:-$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
mkdir -p "$workdir/logs"
pids=()
for ((i = 0; i < n; i++)); do
  JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}" "$py" -m annojax.main "$@" \
    --config.distributed.mode=explicit \
    --config.distributed.coordinator_address="127.0.0.1:$port" \
    --config.distributed.num_processes="$n" \
    --config.distributed.process_id="$i" \
    >"$workdir/logs/process_$i.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "launch/local.sh: process $i failed; see $workdir/logs/process_$i.log" >&2
    tail -n 20 "$workdir/logs/process_$i.log" >&2
    status=1
  fi
done
exit $status
