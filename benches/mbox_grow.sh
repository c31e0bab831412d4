#!/usr/bin/env bash
# 100 messages added to a 1 GB mbox target (issue 20, item 6): the re-sync appends them in
# place. Prints, for each binary given, the seconds, peak RSS and bytes the re-sync wrote
# (time(1)'s file system outputs: the bytes it dirtied), and whether the file was replaced.
# usage: benches/mbox_grow.sh BIN [OTHER_BIN...]   (WORK=dir, default $TMPDIR/mailmover-grow;
#        MB=size of the target in MiB, default 1024)
set -euo pipefail
W=${WORK:-${TMPDIR:-/tmp}/mailmover-grow}; MB=${MB:-1024}
mkdir -p "$W"
if [ ! -f "$W/made.$MB" ]; then
    rm -rf "$W/src" "$W/extra"
    python3 - "$W" "$MB" <<'PY'
import os, sys
w, mb = sys.argv[1], int(sys.argv[2])
for d in ("src/cur", "src/new", "src/tmp", "extra"):
    os.makedirs(os.path.join(w, d), exist_ok=True)
n = mb * 1024 * 1024 // 10240
for i in range(n + 100):
    body = (f"From: a{i}@example.org\nTo: b@example.org\nSubject: message {i}\n"
            f"Message-ID: <{i}@grow>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\n"
            + f"line {i} of a body that fills ten kilobytes\n" * 230)
    p = os.path.join(w, "src/cur" if i < n else "extra", f"{1700000000 + i}.M{i}P1.grow:2,S")
    with open(p, "w") as f:
        f.write(body)
    os.utime(p, (1700000000 + i, 1700000000 + i))
PY
    touch "$W/made.$MB"
fi
for BIN in "$@"; do
    BIN=$(realpath "$BIN")
    rm -rf "$W/dst" && mkdir "$W/dst"
    "$BIN" sync "maildir:$W/src" "mbox:$W/dst" >/dev/null 2>&1
    size=$(stat -c %s "$W/dst/INBOX"); ino=$(stat -c %i "$W/dst/INBOX")
    mv "$W/extra"/* "$W/src/new/"
    sync
    start=$(date +%s.%N)
    /usr/bin/time -f '%M %O' -o "$W/time" "$BIN" sync "maildir:$W/src" "mbox:$W/dst" >/dev/null 2>"$W/err"
    end=$(date +%s.%N)
    read -r rss blocks < "$W/time"
    now=$(stat -c %s "$W/dst/INBOX"); ino2=$(stat -c %i "$W/dst/INBOX")
    printf '%s: %d MiB target + 100 messages: %.2f s, peak RSS %d MB, wrote %d MB, file %s (%d -> %d bytes)\n' \
        "$BIN" "$MB" "$(echo "$end - $start" | bc)" "$((rss / 1024))" "$((blocks / 2048))" \
        "$([ "$ino" = "$ino2" ] && echo grown in place || echo replaced)" "$size" "$now"
    mv "$W/src/new"/* "$W/extra/"
done
