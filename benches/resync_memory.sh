#!/usr/bin/env bash
# Peak memory of a re-sync of an N-message Maildir after one new message (issue 19's planner
# figures): a dry run, a sync, a verify and an unchanged re-run, each under /usr/bin/time.
# usage: benches/resync_memory.sh BIN N [WORKDIR]   (TARGET=mbox: into one mbox file)
set -euo pipefail
BIN=$(realpath "$1"); N=$2; W=${3:-${TMPDIR:-/tmp}/mailmover-mem-$N}
if [ ! -d "$W/src/cur" ]; then
    python3 - "$W/src" "$N" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for d in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(root, d), exist_ok=True)
for i in range(n):
    body = (f"From: a{i}@example.org\nTo: b@example.org\nSubject: message {i}\n"
            f"Message-ID: <{i}@gen>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\nbody {i}\n" + "x" * 400 + "\n")
    p = os.path.join(root, "cur", f"{1700000000 + i}.M{i}P1.gen:2,S")
    with open(p, "w") as f:
        f.write(body)
    os.utime(p, (1700000000 + i, 1700000000 + i))
PY
fi
rm -rf "$W/dst" "$W/dst.mbox"
case ${TARGET:-maildir} in
    maildir) DST="maildir:$W/dst" ;;
    mbox) DST="mbox:$W/dst.mbox" ;;
    *) echo "TARGET is maildir or mbox" >&2; exit 2 ;;
esac
"$BIN" sync "maildir:$W/src" "$DST" >/dev/null 2>&1
printf 'From: new@x\nSubject: new\n\nnew one\n' > "$W/src/new/1800000000.Mnew.gen"
rss() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1; }
echo "N=$N dry-run KB: $(rss "$BIN" sync --dry-run "maildir:$W/src" "$DST")"
echo "N=$N sync KB: $(rss "$BIN" sync "maildir:$W/src" "$DST")"
echo "N=$N verify KB: $(rss "$BIN" verify "maildir:$W/src" "$DST")"
echo "N=$N unchanged-sync KB: $(rss "$BIN" sync "maildir:$W/src" "$DST")"
rm -f "$W/src/new/1800000000.Mnew.gen"
