# shellcheck shell=bash
# Sourced by the benchmark scripts (bench.sh, bench-frames.sh, ab.sh).
# cpu_times prints "steal total": the jiffies the hypervisor stole (time given to other guests:
# this VM's slow phases) and all jiffies, over all CPUs so far (/proc/stat). Read it before and
# after a run; the steal share of the run is the difference of the first over that of the second.
cpu_times() { awk '/^cpu / { print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
