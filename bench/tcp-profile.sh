#!/bin/bash
# Where a TCP stream's time goes: runs bench/dataplane (cyphonic only, one 20 s TCP stream first), samples the whole
# machine with `perf record -a -g` for SECONDS while the stream runs, and prints the CPU time of the processes
# involved (both node daemons' data-plane worker threads, their other threads, iperf3 client and server, idle,
# everything else) and, for the data-plane threads, the split by kind of work (AES-GCM bulk, OpenSSL per-packet
# overhead, copies, checksums, engine code, kernel). docs/PERFORMANCE.md "Where a TCP stream's time goes" explains
# the categories and their limits (cpu-clock sampling in a PVM guest: time with interrupts off lands on
# pvm_irq_enable).
#
# usage: bench/tcp-profile.sh [SECONDS (8)] [OUT prefix (/tmp/cyp-tcp-profile)]   (root, perf, iperf3; after npm run build)
#        bench/tcp-profile.sh --analyze OUT   (the split again from an earlier run's files)
set -euo pipefail
ANALYZE=0
if [ "${1:-}" = "--analyze" ]; then ANALYZE=1; OUT=$2; else SECS=${1:-8}; OUT=${2:-/tmp/cyp-tcp-profile}; fi
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "perf is missing (apt-get install linux-perf)" >&2; exit 1; }
NCPU=$(nproc)
if [ "$ANALYZE" = 0 ]; then
node dist/bench/dataplane.js --only cyphonic --seconds 20 --repeat 1 --udp-steps 0 >"$OUT.bench.txt" 2>&1 &
BENCH=$!
# our iperf3 client: a descendant of the bench process (other jobs on the machine may run iperf3 too)
client() { local todo=("$BENCH") p c; while [ ${#todo[@]} -gt 0 ]; do p=${todo[0]}; todo=("${todo[@]:1}")
  for c in $(pgrep -P "$p"); do todo+=("$c"); grep -q -- ' -c ' <(tr '\0' ' ' 2>/dev/null <"/proc/$c/cmdline") && [ "$(cat /proc/"$c"/comm 2>/dev/null)" = iperf3 ] && echo "$c"; done; done; }
for _ in $(seq 1 900); do [ -n "$(client)" ] && break; sleep 0.2; done
sleep 2
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
ps -eLo pid,tid,comm,args >"$OUT.ps"
# schedstat of the daemons' and iperf3's threads around the window: time on a CPU, time runnable but waiting for one
snap() { for p in $(pgrep -f "node up --state /tmp/cyp-bench-dp") $(pgrep -f "iperf3 -[cs] "); do for t in /proc/"$p"/task/*; do
  [ -r "$t/schedstat" ] && echo "$p ${t##*/} $(cat "$t/schedstat" 2>/dev/null)"; done; done; }
T0=$(date +%s%N)
snap >"$OUT.sched0"
perf record -a -g -o "$OUT.data" -- sleep "$SECS" >"$OUT.rec.log" 2>&1
snap >"$OUT.sched1"
T1=$(date +%s%N)
echo $(( T1 - T0 )) >"$OUT.window"
wait "$BENCH" || true
# one line per sample: pid/tid, ip, the sampled frame's symbol and object
perf script -i "$OUT.data" -F pid,tid,ip,sym,dso -G 2>/dev/null >"$OUT.flat"
echo "$LOAD0" >"$OUT.load"
fi
echo "load average at start: $(cat "$OUT.load"); TCP 1-stream result (under perf):"
grep -E '^cyphonic +[0-9]' "$OUT.bench.txt" || true
awk -v psfile="$OUT.ps" -v ncpu="$NCPU" '
BEGIN {
  while ((getline line < psfile) > 0) {
    n = split(line, f, " ")
    if (f[1] == "PID") continue
    args = ""; for (i = 4; i <= n; i++) args = args " " f[i]
    if (args ~ /node up --state \/tmp\/cyp-bench-dp/) { daemon[f[1]] = 1 }
    if (args ~ /iperf3 -c/) kind[f[1]] = "iperf3 client"
    if (args ~ /iperf3 -s/) kind[f[1]] = "iperf3 server"
  }
}
function cat(sym, dso) {
  if (sym ~ /^(_aesni_ctr32_ghash_6x|_aesni_ctr32_6x|aesni_ctr32_encrypt_blocks|aesni_gcm_(en|de)crypt|gcm_ghash_avx|CRYPTO_gcm128_(en|de)crypt_ctr32|generic_aes_gcm_cipher_update)$/) return "AES-GCM bulk (CTR + GHASH over the payload)"
  if (sym ~ /^(CRYPTO_gcm128_|aesni_encrypt|gcm_gmult|EVP_|OSSL_|ossl_|evp_|__strcmp|CRYPTO_|aes_gcm|gcm_)/) return "AES-GCM per packet (OpenSSL EVP calls, params, IV/AAD/tag)"
  if (sym ~ /^__(memmove|memcpy|memset)/) return "copies in user space (memcpy/memset)"
  if (sym ~ /^(_copy_to_iter|_copy_from_iter|copy_user|rep_movs|_copy_to_user|_copy_from_user|clear_page)/) return "copies in the kernel (TUN/socket data in and out)"
  if (sym ~ /^(vnet_segment_cap|csum|ipv4_fix_checksum)/ || sym ~ /csum/) return "checksums (TSO cut: full TCP checksum per packet)"
  if (dso ~ /cyphonic_native/) return "engine code (routing, replay, coalescing, batching)"
  if (sym ~ /^pvm_irq_enable$/) return "kernel, interrupts off (network stack in softirq, wake-ups; attributed at irq enable)"
  if (sym ~ /^(__poll|do_sys_poll|do_poll|schedule|__schedule|finish_task_switch|pvm_safe_halt|tun_chr_poll|sock_poll|udp_poll|ep_)/) return "poll, sleep and wake-up"
  if (dso ~ /kernel/) return "kernel: syscalls, TUN, UDP, IP, TCP (GSO/GRO)"
  if (dso ~ /libc/) return "libc (syscall stubs)"
  return "JavaScript / V8 / other"
}
/^ *[0-9]+\/[0-9]+ / {
  split($1, pt, "/"); pid = pt[1]; tid = pt[2]
  sym = $3; dso = $NF
  total++
  if (pid == 0) who = "idle"
  else if (pid in daemon) who = (tid == pid ? "node daemons, main threads" : "node daemons, other threads")
  else if (pid in kind) who = kind[pid]
  else who = "other processes (other users of the machine)"
  byw[who]++
  if (who == "node daemons, other threads") { tcount[tid]++ }
  key[tid SUBSEP cat(sym, dso)]++
  tids[tid] = 1
}
END {
  printf "\nsamples: %d (cpu-clock, all CPUs); share of the machine by process:\n", total
  for (w in byw) printf "  %6.1f %%  %s\n", 100 * byw[w] / total, w
  # the data-plane worker: the busiest non-main thread of each daemon (the engine turns there)
  printf "\ndata-plane worker threads (the two busiest daemon threads), split by kind of work (%% of that thread):\n"
  for (t in tcount) if (tcount[t] > best1) { best1 = tcount[t]; t1 = t }
  for (t in tcount) if (t != t1 && tcount[t] > best2) { best2 = tcount[t]; t2 = t }
  for (k in key) { split(k, kk, SUBSEP); if (kk[1] == t1) c1[kk[2]] = key[k]; if (kk[1] == t2) c2[kk[2]] = key[k]; cats[kk[2]] = 1 }
  printf "  %-88s %9s %9s\n", "", "tid " t1, "tid " t2
  for (c in cats) if (c in c1 || c in c2) printf "  %-88s %8.1f%% %8.1f%%\n", c, 100 * c1[c] / best1, 100 * c2[c] / best2
  printf "  %-88s %8.1f%% %8.1f%%\n", "(thread busy: share of one CPU)", 100 * best1 * ncpu / total, 100 * best2 * ncpu / total
}' "$OUT.flat"
# Per thread over the window (from just before the first snapshot to just after the last, so a little longer than
# the perf window): on a CPU, runnable but waiting for a CPU (the run queue), and the rest (asleep: waiting
# for packets). A thread that is mostly waiting for a CPU would not go faster with a second thread of its own.
[ -r "$OUT.sched0" ] && [ -r "$OUT.sched1" ] || exit 0
echo
echo "threads over the window (schedstat): on CPU / waiting for a CPU / asleep, % of the window"
awk -v win="$(cat "$OUT.window")" -v psfile="$OUT.ps" '
BEGIN { while ((getline line < psfile) > 0) { split(line, f, " "); if (f[1] == "PID") continue
          args = line; if (args ~ /iperf3 -c/) name[f[1]] = "iperf3 client"; else if (args ~ /iperf3 -s/) name[f[1]] = "iperf3 server"
          else if (args ~ /node up/ && match(args, /nodes\/[a-z0-9]+/)) name[f[1]] = "node " substr(args, RSTART + 6, RLENGTH - 6) } }
FNR == NR { run0[$2] = $3; wait0[$2] = $4; next }
($2 in run0) { r = ($3 - run0[$2]) / win * 100; w = ($4 - wait0[$2]) / win * 100
  a = 100 - r - w; if (a < 0) a = 0
  if (r + w >= 2) printf "  %-14s tid %-7s %5.1f %% / %5.1f %% / %5.1f %%\n", name[$1], $2, r, w, a }' "$OUT.sched0" "$OUT.sched1"

