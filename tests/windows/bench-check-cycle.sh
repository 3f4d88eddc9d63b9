#!/usr/bin/env bash
# The Windows check cycle's CPU under Wine, for BENCHMARKS.md: runs
# `palisade-agent.exe check --json` RUNS times in one fresh prefix with a
# persistent wineserver, and as many `--version` runs for the cost of
# starting a Wine process at all, and prints the CPU of both (the wine
# processes' user + system time, and the wineserver's, which does the
# registry and device work Windows' kernel would) and the rules' own
# probe_duration_us from the last report.
#
#   tests/windows/bench-check-cycle.sh [EXE] [RUNS]
#
# EXE defaults to what tests/windows/build-agent-exe.sh built.
set -euo pipefail
cd "$(dirname "$0")/../.."

exe=${1:-target/windows-test/palisade-agent.exe}
runs=${2:-50}
prefix=$(mktemp -d)
trap 'WINEPREFIX=$prefix wineserver -k >/dev/null 2>&1 || true; rm -rf "$prefix"' EXIT
export WINEPREFIX=$prefix WINEDEBUG=-all WINEDLLOVERRIDES=bcryptprimitives=n,b
cp "$exe" "$(dirname "$exe")/bcryptprimitives.dll" "$prefix/"
wineserver -p
wineboot -i >/dev/null 2>&1
agent="$prefix/$(basename "$exe")"
wine "$agent" check --json >/dev/null 2>&1 || true # warm the prefix

server_pid=$(pgrep -n -f "wineserver.* -p")

# Python runs the loops: getrusage(RUSAGE_CHILDREN) is the wine processes'
# own CPU, and /proc/PID/stat the wineserver's.
python3 - "$runs" "$server_pid" "$agent" <<'EOF'
import json, os, resource, subprocess, sys, time
runs, server_pid, agent = int(sys.argv[1]), sys.argv[2], sys.argv[3]
hz = os.sysconf("SC_CLK_TCK")

def server_seconds():
    fields = open(f"/proc/{server_pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / hz

def measure(args):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_server, start = server_seconds(), time.monotonic()
    for _ in range(runs):
        subprocess.run(["wine", agent, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, server = time.monotonic() - start, server_seconds() - before_server
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu / runs * 1000, server / runs * 1000, wall / runs * 1000

v = measure(["--version"])
c = measure(["check", "--json"])
print(f"runs: {runs}")
print(f"--version:     {v[0]:6.1f} ms CPU + {v[1]:5.1f} ms wineserver, {v[2]:6.1f} ms wall per run")
print(f"check --json:  {c[0]:6.1f} ms CPU + {c[1]:5.1f} ms wineserver, {c[2]:6.1f} ms wall per run")
print(f"the checks themselves: {c[0] - v[0]:.1f} ms CPU + {c[1] - v[1]:.1f} ms wineserver per run")
out = subprocess.run(["wine", agent, "check", "--json"], capture_output=True, text=True).stdout
for check in json.loads(out)["checks"]:
    print(f"  {check['id']:16} {check['status']:8} probe {check.get('probe_duration_us', 0) / 1000:6.2f} ms")
EOF
