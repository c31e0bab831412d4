#!/usr/bin/env bash
# The performance table in one command: mailmover beside its peers on the shared bench corpus,
# plus what the peers script does not measure (re-runs against `find`, verify against reading
# both sides, --jobs 1 vs 2, memory on a 4 GiB mbox and a 500,000-message Maildir, syscalls per
# message).
#
#   benches/run.sh [WORKDIR]        (default: $TMPDIR/mailmover-bench, needs ~40 GB free)
#
# Run as root on a quiet machine: the peers script drops the page cache for cold runs. Peers
# come from Debian: apt-get install -y --no-install-recommends mb2md dovecot-core mailutils
# mblaze time strace. QUICK=1 skips the peers and the big memory corpora; SECTIONS="reruns scaling"
# runs only the named sections (peers reruns scaling memory syscalls).
# Output: Markdown on stdout and in WORKDIR/results.md; raw TSVs in WORKDIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared/bench}
W=${1:-${TMPDIR:-/tmp}/mailmover-bench}
mkdir -p "$W"
W=$(cd "$W" && pwd)
(cd "$ROOT" && cargo build --release -q)
BIN=$ROOT/target/release/mailmover
NOFSYNC=$W/mailmover-no-fsync
printf '#!/bin/sh\nexec "%s" "$@" --no-fsync\n' "$BIN" > "$NOFSYNC"
chmod +x "$NOFSYNC"
OUT=$W/results.md
: > "$OUT"
# ext4 without a journal (this machine's disk: no /proc/fs/jbd2 entry) will not reuse an inode
# freed in the last 60 s, or the last 300 s while its inode-table block is dirty (which the next
# files created beside it make it), and scans past every such inode at each file creation: a
# tool started within five minutes of a 47,000-file deletion loses seconds to it, whichever
# tool it is (perf shows recently_deleted() under ext4 inode allocation; measured: mbox ->
# Maildir 2.4 s at rest, 5-24 s within five minutes of deleting the outputs of the section
# before). peers.sh deletes each output just before the next tool runs. So nothing is deleted
# while tools are timed: `rm` (for peers.sh too, via PATH) moves what it is given into $GRAVE,
# which is emptied between sections, followed by a pause of SETTLE seconds (default 305).
# (Deleting even a single 1 GiB file frees its page cache, and on this VM the next tool to
# write pays for memory freed that way: see the balloon note below. Measured: mailmover b
# 0.8 s after a run that freed nothing, 1.4 s after one that freed 1 GiB.)
GRAVE=$W/grave
mkdir -p "$GRAVE" "$W/bin" "$W/tmp"
cat > "$W/bin/rm" <<EOF2
#!/bin/sh
for a in "\$@"; do
  case "\$a" in -*) continue;; esac
  [ -e "\$a" ] || [ -L "\$a" ] || continue
  case "\$(realpath -m -- "\$a")" in
    "$W"/*) mv -- "\$a" "$GRAVE/\$(date +%s%N).\$\$" ;;
    *) /bin/rm -rf -- "\$a" ;;
  esac
done
EOF2
chmod +x "$W/bin/rm"
export PATH="$W/bin:$PATH" TMPDIR="$W/tmp"
# The machine is also a VM whose host takes back the memory the guest frees (virtio-balloon
# free page reporting): the first write into such memory costs seconds per GiB, while memory
# the page cache recycles is cheap, as on any server whose RAM is in use. So that no tool's time
# depends on how much never-used memory the kernel hands it, a helper holds all but HEADROOM_GB
# of the memory for the whole run and filler files keep the rest in the page cache
# (BALLOON=0 turns this off). The "This machine" section shows the effect with dd alone.
# Deleting outputs frees their cached pages again, so fill() reads two fillers, twice the
# headroom: whatever was freed is taken back into the page cache before the next tool runs.
BALLOON=${BALLOON:-1}
HEADROOM_GB=${HEADROOM_GB:-6}
fill() { if [ "$BALLOON" = 1 ]; then cat "$W/filler.1" "$W/filler.2" > /dev/null; fi; }
rest() { sync; sleep "$1"; fill; }
settle() { /bin/rm -rf "$GRAVE"; mkdir -p "$GRAVE"; rest "${SETTLE:-305}"; }
# Between the invocations of a section nothing is deleted, but each writes some 4 GiB: a pause
# of PAUSE seconds after its sync gives every invocation the same start. (Durable mbox ->
# Maildir from a cold cache took 1.9 s after the settle and 4.1-4.4 s right after such an
# invocation; with the pause, 2.75, 2.78 and once still 4.9 s: not the whole cause.)
pause() { rest "${PAUSE:-30}"; }
say() { echo "$*" | tee -a "$OUT"; }
SECTIONS=${SECTIONS:-"peers reruns scaling memory syscalls"}
section() { case " $SECTIONS " in *" $1 "*) return 0;; esac; return 1; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1 || true; t1=$(date +%s.%N); echo "$t0 $t1" | awk '{printf "%.3f", $2-$1}'; }
ratio() { echo "$1 $2" | awk '{ if ($2 > 0) printf "%.2f", $1/$2; else print "-" }'; }
preread() { local p=${1#*:}; if [ -d "$p" ]; then find "$p" -type f -print0 | xargs -0 -r cat > /dev/null; else cat "$p" > /dev/null; fi; }
rss_mb() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1 | awk '{printf "%.0f", $1/1024}'; }

C=$W/c1g
[ -f "$C/corpus.mbox" ] || python3 "$SHARED/gen_corpus.py" --out "$C" --size-mb 1024 --mbox --maildir --folders 8 -q
N=$(grep -vc '^#' "$C/manifest.tsv")

say "# mailmover performance ($(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r))"
say ""
say "Corpus: gen_corpus.py --size-mb 1024 --mbox --maildir --folders 8 ($N messages)."

ddnew() { local t0 t1; sync; t0=$(date +%s.%N); dd if="$C/corpus.mbox" of="$1" bs=1M status=none; t1=$(date +%s.%N); echo "$t0 $t1" | awk '{printf "%.2f", $2-$1}'; }
if [ "$BALLOON" = 1 ]; then
  cat "$C/corpus.mbox" > /dev/null
  before=$(ddnew "$W/dd.1")
  avail_kb=$(awk '/^MemAvailable/ {print $2}' /proc/meminfo)
  hold_kb=$((avail_kb - HEADROOM_GB * 1024 * 1024))
  if [ "$hold_kb" -gt 0 ]; then
    cat > "$W/balloon.py" <<'PY'
import mmap, signal, sys
n = int(sys.argv[1]) * 1024
m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(0, n, 4096):
    m[i] = 1
print("held", flush=True)
signal.pause()
PY
    python3 "$W/balloon.py" "$hold_kb" > "$W/balloon.log" 2>&1 &
    BALLOON_PID=$!
    trap 'kill $BALLOON_PID 2>/dev/null || true' EXIT
    while ! grep -q held "$W/balloon.log"; do kill -0 $BALLOON_PID; sleep 1; done
  fi
  /bin/rm -f "$W/filler"
  for i in 1 2; do /bin/rm -f "$W/filler.$i"; truncate -s "${HEADROOM_GB}G" "$W/filler.$i"; done   # sparse: cached zero pages, no disk
  fill
  after=$(ddnew "$W/dd.2")
  /bin/rm -f "$W/dd.1" "$W/dd.2"
  say ""
  say "## This machine"
  say ""
  say "dd of the 1 GiB mbox into a new file: $before s into memory the kernel had not used yet,"
  say "$after s once all but ${HEADROOM_GB} GiB are held and the page cache recycles memory (see run.sh)."
fi

# --- 1. side by side with the peers, cold and warm, durable and --no-fsync -------------------
# The peers the targets name; PEERS="baseline mb2md doveadm movemail mblaze python mailmover" for all.
# Write-heavy timings on this VM vary up to 2x between invocations of the same tool, so after
# the peers' invocation the baselines (cat, read-all-files, cp -a) and mailmover are timed REPS
# more times each way (durable, --no-fsync), alternating; the ratios use medians. Outputs stay
# in $GRAVE until the section ends (about 18 GB for the peers and 5 GB per invocation).
export PEERS=${PEERS:-"baseline mb2md doveadm mblaze mailmover"}
REPS=${REPS:-2}
if [ "${QUICK:-0}" != 1 ] && section peers; then
  for cache in cold warm; do
    settle
    CACHE=$cache MAILMOVER=$BIN "$SHARED/peers.sh" "$C" "$W/peers-$cache.tsv" > "$W/peers-$cache.md"
    for i in $(seq "$REPS"); do
      pause
      CACHE=$cache PEERS="baseline mailmover" MAILMOVER=$NOFSYNC "$SHARED/peers.sh" "$C" "$W/nofsync-$cache-$i.tsv" > /dev/null
      pause
      CACHE=$cache PEERS="baseline mailmover" MAILMOVER=$BIN "$SHARED/peers.sh" "$C" "$W/durable-$cache-$i.tsv" > /dev/null
    done
  done
  say ""
  say "## Side by side (peers.sh, same run per cache mode)"
  for cache in cold warm; do
    say ""
    say "### $cache cache: the peers' invocation (one run each)"
    say ""
    say "| tool | job | seconds | peak RSS MB | messages out | rc |"
    say "| --- | --- | ---: | ---: | ---: | ---: |"
    awk -F'\t' -v OFS=' | ' '$1 !~ /^#/ && $1 != "tool" && NF >= 9 {print "| " $1, $2, $3, $6, $7, $9 " |"}' "$W/peers-$cache.tsv" | tee -a "$OUT"
  done
  python3 - "$W" "$REPS" <<'PY' | tee -a "$OUT"
import csv, statistics, sys
w, reps = sys.argv[1], int(sys.argv[2])
def rows(p):
    out = {}
    for r in csv.reader(open(p), delimiter='\t'):
        if len(r) >= 9 and not r[0].startswith('#') and r[0] != 'tool':
            try: out.setdefault((r[0], r[1]), (float(r[2]), r[8]))
            except ValueError: pass
    return out
def samples(files, tool, job):
    return [f[(tool, job)][0] for f in files if (tool, job) in f and f[(tool, job)][1] == '0']
med = lambda v: statistics.median(v) if v else None
fmt = lambda x: '-' if x is None else '%.2f' % x
print('\n### Baselines and mailmover: median of the invocations (min–max, runs)\n')
print('Baselines from every invocation of the section; mailmover durable from the peers\' invocation')
print('and %d more, --no-fsync from %d.\n' % (reps, reps))
print('| cache | tool | job | median s | min–max | runs |')
print('| --- | --- | --- | ---: | --- | ---: |')
M = {}
for cache in ('cold', 'warm'):
    peers = rows('%s/peers-%s.tsv' % (w, cache))
    nof = [rows('%s/nofsync-%s-%d.tsv' % (w, cache, i)) for i in range(1, reps + 1)]
    dur = [peers] + [rows('%s/durable-%s-%d.tsv' % (w, cache, i)) for i in range(1, reps + 1)]
    sets = [('cat-devnull', 'a', dur + nof), ('cat-file', 'a', dur + nof), ('read-all-files', 'b', dur + nof),
            ('cp-a', 'c', dur + nof)]
    for job in ('a', 'a2', 'b', 'b2', 'c', 'c2'):
        sets.append(('mailmover', job, dur))
        sets.append(('mailmover --no-fsync', job, nof))
    for tool, job, files in sets:
        v = samples(files, tool.split(' ')[0], job)
        M[(cache, tool, job)] = med(v)
        if v:
            print('| %s | %s | %s | %s | %s–%s | %d |' % (cache, tool, job, fmt(med(v)), fmt(min(v)), fmt(max(v)), len(v)))
    for tool, job in (('mb2md', 'a'), ('mblaze-mdeliver', 'a'), ('mblaze-mexport', 'b'), ('mblaze-mrefile', 'c'),
                      ('doveadm-sync', 'a'), ('doveadm-sync', 'b'), ('doveadm-sync', 'c'),
                      ('doveadm-sync', 'a2'), ('doveadm-sync', 'b2'), ('doveadm-sync', 'c2')):
        M[(cache, tool, job)] = med(samples([peers], tool, job))
print('\n### Ratios (mailmover --no-fsync median / reference; below 1 is faster; cp -a and read-all-files medians; peers from their invocation; durable median / --no-fsync median in the last column)\n')
print('| cache | job | vs cp -a or read-all | vs mb2md | vs mblaze | vs doveadm sync | durable / no-fsync | durable vs doveadm sync |')
print('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |')
base = {'a': 'cp-a', 'b': 'read-all-files', 'c': 'cp-a'}
blaze = {'a': 'mblaze-mdeliver', 'b': 'mblaze-mexport', 'c': 'mblaze-mrefile'}
for cache in ('cold', 'warm'):
    for job in ('a', 'b', 'c', 'a2', 'b2', 'c2'):
        mm, dur = M.get((cache, 'mailmover --no-fsync', job)), M.get((cache, 'mailmover', job))
        if mm is None: continue
        def r(tool, j, x=mm):
            p = M.get((cache, tool, j)) if tool else None
            return '%.2f' % (x / p) if p and x is not None else '-'
        refj = 'c' if job in ('a', 'c') else 'b'
        cells = [r(base.get(job), refj), r('mb2md', job), r(blaze.get(job), job), r('doveadm-sync', job),
                 '%.2f' % (dur / mm) if dur and mm else '-', r('doveadm-sync', job, dur)]
        print('| %s | %s | %s |' % (cache, job, ' | '.join(cells)))
PY
fi

# --- 2. re-runs against find, verify against reading both sides (warm, same run) -------------
if section reruns; then
  settle
  T=$W/targets
  rm -rf "$T"; mkdir -p "$T"
  "$BIN" sync "mbox:$C/corpus.mbox" "maildir:$T/a" -q --no-fsync
  "$BIN" sync "maildir:$C/maildir" "mbox:$T/b" -q --no-fsync
  "$BIN" sync "maildir:$C/maildir" "maildir:$T/c" -q --no-fsync
  sleep 3   # stamps of folders changed in the last 2 s are not trusted
  for j in a b c; do "$BIN" sync "$([ $j = a ] && echo "mbox:$C/corpus.mbox" || echo "maildir:$C/maildir")" "$([ $j = b ] && echo mbox || echo maildir):$T/$j" -q --no-fsync; done
  say ""
  say "## Unchanged re-runs and verify (warm cache)"
  say ""
  say "| measure | mailmover s | reference | reference s | ratio |"
  say "| --- | ---: | --- | ---: | ---: |"
  for j in a b c; do
    src=$([ $j = a ] && echo "mbox:$C/corpus.mbox" || echo "maildir:$C/maildir")
    dst=$([ $j = b ] && echo "mbox:$T/$j" || echo "maildir:$T/$j")
    find "$T/$j" -type f > /dev/null
    f=$(secs sh -c "find '$T/$j' -type f | wc -l")
    m=$(secs "$BIN" sync "$src" "$dst" -q)
    say "| ${j}2 re-run | $m | find $j -type f \\| wc -l | $f | $(ratio "$m" "$f") |"
  done
  cat "$C/corpus.mbox" > /dev/null; find "$T/a" -type f -exec cat {} + > /dev/null
  r=$(secs sh -c "cat '$C/corpus.mbox' > /dev/null; find '$T/a' -type f -exec cat {} + > /dev/null")
  m=$(secs "$BIN" verify "mbox:$C/corpus.mbox" "maildir:$T/a")
  say "| verify a (mbox vs Maildir) | $m | read every byte of both | $r | $(ratio "$m" "$r") |"
  r=$(secs sh -c "find '$C/maildir' '$T/c' -type f -exec cat {} + > /dev/null")
  m=$(secs "$BIN" verify "maildir:$C/maildir" "maildir:$T/c")
  say "| verify c (Maildir vs Maildir) | $m | read every byte of both | $r | $(ratio "$m" "$r") |"
fi

# --- 3. scaling: --jobs 1 vs 2, and 20 folders of mixed sizes ------------------------------
if section scaling; then
  C20=$W/c20
  [ -d "$C20/maildir" ] || python3 "$SHARED/gen_corpus.py" --out "$C20" --size-mb 512 --maildir --folders 20 -q
  say ""
  say "## Scaling (warm cache, --no-fsync, output on the same disk)"
  say ""
  say "Median of $((REPS + 1)) runs each, --jobs 1 and 2 alternating."
  say ""
  say "| job | --jobs 1 s | --jobs 2 s | gain |"
  say "| --- | ---: | ---: | ---: |"
  settle
  median() { tr ' ' '\n' | sort -g | awk '{v[NR]=$1} END {printf "%.3f", NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
  for spec in "a mbox:$C/corpus.mbox maildir" "b maildir:$C/maildir mbox" "c maildir:$C/maildir maildir" "c-20-folders maildir:$C20/maildir maildir"; do
    set -- $spec
    t1=(); t2=()
    for i in $(seq $((REPS + 1))); do
      for jobs in 1 2; do
        rm -rf "$W/scale"; sync; fill
        preread "$2"
        t=$(secs "$BIN" sync "$2" "$3:$W/scale" -q --no-fsync --jobs $jobs)
        if [ $jobs = 1 ]; then t1+=("$t"); else t2+=("$t"); fi
      done
    done
    m1=$(echo "${t1[*]}" | median); m2=$(echo "${t2[*]}" | median)
    say "| $1 | $m1 | $m2 | $(ratio "$m1" "$m2") |"
  done
  rm -rf "$W/scale"
fi

# --- 4. memory -------------------------------------------------------------------------------
if section memory; then
  settle
  say ""
  say "## Peak memory (/usr/bin/time -v, maximum resident set size)"
  say ""
  say "| input | job | peak RSS MB |"
  say "| --- | --- | ---: |"
  say "| 1 GiB mbox ($N messages) | mbox → Maildir | $(rm -rf "$W/m"; rss_mb "$BIN" sync "mbox:$C/corpus.mbox" "maildir:$W/m" -q --no-fsync) |"
  if [ "${QUICK:-0}" != 1 ]; then
    C4=$W/c4g
    [ -f "$C4/corpus.mbox" ] || python3 "$SHARED/gen_corpus.py" --out "$C4" --size-mb 4096 --mbox -q
    say "| 4 GiB mbox | mbox → Maildir | $(rm -rf "$W/m"; rss_mb "$BIN" sync "mbox:$C4/corpus.mbox" "maildir:$W/m" -q --no-fsync) |"
    rm -rf "$W/m"
    M5=$W/md500k
    if [ ! -d "$M5/cur" ]; then
      python3 - "$M5" <<'PY'
import os, sys
root = sys.argv[1]
for s in ('cur', 'new', 'tmp'):
    os.makedirs(os.path.join(root, s), exist_ok=True)
for i in range(500000):
    body = b'From: s%d@example.com\nSubject: m %d\n\nsmall message %d\n' % (i, i, i)
    name = '%d.M%dP1Q%d.bench,S=%d:2,S' % (1500000000 + i, i, i, len(body))
    with open(os.path.join(root, 'cur', name), 'wb') as f:
        f.write(body)
PY
    fi
    say "| Maildir, 500,000 messages | Maildir → Maildir | $(rm -rf "$W/m"; rss_mb "$BIN" sync "maildir:$M5" "maildir:$W/m" -q --no-fsync) |"
    say "| Maildir, 500,000 messages | Maildir → mbox | $(rm -f "$W/m5.mbox"; rss_mb "$BIN" sync "maildir:$M5" "mbox:$W/m5.mbox" -q --no-fsync) |"
    # A re-sync after new mail: the folder's stamp changed, so both sides are indexed again.
    sleep 2   # stamps younger than two seconds are not trusted
    NEWMSG=$M5/new/1600000000.M1P1Q1.bench-new
    printf 'From: late@example.com\nSubject: late\n\none more\n' > "$NEWMSG"
    sleep 2
    say "| Maildir, 500,000 + 1 new | Maildir → Maildir re-sync | $(rss_mb "$BIN" sync "maildir:$M5" "maildir:$W/m" -q --no-fsync) |"
    say "| Maildir, 500,000 + 1 new | Maildir → mbox re-sync | $(rss_mb "$BIN" sync "maildir:$M5" "mbox:$W/m5.mbox" -q --no-fsync) |"
    /bin/rm -f "$NEWMSG"
    rm -rf "$W/m" "$W/m5.mbox"
  fi
fi

# --- 5. syscalls per written message (10,000 messages) ---------------------------------------
if command -v strace > /dev/null && section syscalls; then
  S=$W/s10k
  [ -f "$S/corpus.mbox" ] || python3 "$SHARED/gen_corpus.py" --out "$S" --messages 10000 --mbox --maildir -q
  NS=$(grep -vc '^#' "$S/manifest.tsv")
  say ""
  say "## Syscalls per written message (strace -c -f, $NS messages)"
  say ""
  say "| job | mode | syscalls | per message | top calls |"
  say "| --- | --- | ---: | ---: | --- |"
  for spec in "a mbox:$S/corpus.mbox maildir" "c maildir:$S/maildir maildir" "b maildir:$S/maildir mbox"; do
    set -- $spec
    for mode in durable no-fsync; do
      rm -rf "$W/st"
      preread "$2"   # warm: a cold source adds one read-ahead hint per message
      extra=$([ $mode = no-fsync ] && echo --no-fsync || true)
      strace -c -f -o "$W/strace.txt" "$BIN" sync "$2" "$3:$W/st" -q $extra > /dev/null 2>&1 || true
      total=$(awk '/^100.00/ {print $4}' "$W/strace.txt")
      top=$(awk 'NR>2 && $1 ~ /^[0-9.]+$/ && $NF != "total" {print $NF":"$4}' "$W/strace.txt" | sort -t: -k2 -nr | head -6 | tr '\n' ' ')
      say "| $1 | $mode | $total | $(echo "$total $NS" | awk '{printf "%.1f", $1/$2}') | $top |"
    done
  done
  rm -rf "$W/st"
fi
/bin/rm -rf "$GRAVE"
echo "results: $OUT" >&2
