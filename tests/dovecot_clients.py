"""What IMAP and POP3 clients see of some mail stores, served by a real Dovecot.

usage: dovecot_clients.py WORK '{"user": "mail_location", ...}'

Starts Dovecot (its master process, a throw-away configuration under WORK, listening on
127.0.0.1 only, every user the uid 65534), logs every user in with Python's imaplib and
poplib, and prints JSON: per user, INBOX's UIDVALIDITY, each UID's Message-ID, and each
POP3 UIDL's Message-ID. Dovecot is stopped before the script exits. Run as root.
"""

import imaplib
import json
import os
import poplib
import re
import socket
import subprocess
import sys
import time

NOBODY = 65534


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def message_id(header):
    m = re.search(rb"(?im)^message-id:\s*(\S+)", header)
    return m.group(1).decode() if m else None


def configure(work, users):
    imap_port, pop3_port = free_port(), free_port()
    lines = []
    for user, location in users.items():
        home = os.path.join(work, "home-" + user)
        os.makedirs(home, exist_ok=True)
        os.chown(home, NOBODY, NOBODY)
        lines.append("%s:{PLAIN}pw:%d:%d::%s::userdb_mail=%s" % (user, NOBODY, NOBODY, home, location))
    with open(os.path.join(work, "passwd"), "w") as f:
        f.write("\n".join(lines) + "\n")
    conf = os.path.join(work, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(f"""
base_dir = {work}/run
state_dir = {work}/state
log_path = {work}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mailbox_list_index = no
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = {work}/passwd
}}
userdb {{
  driver = passwd-file
  args = {work}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
""")
    return conf, imap_port, pop3_port


def wait_for(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("Dovecot did not listen on port %d" % port)


def imap_view(port, user):
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login(user, "pw")
    typ, _ = m.select("INBOX", readonly=True)
    assert typ == "OK", typ
    validity = int(m.response("UIDVALIDITY")[1][0])
    uids = {}
    typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            uids[uid] = message_id(item[1])
    m.logout()
    return validity, uids


def pop3_view(port, user):
    p = poplib.POP3("127.0.0.1", port)
    p.user(user)
    p.pass_("pw")
    uidls = {}
    for line in p.uidl()[1]:
        n, uidl = line.decode().split(" ", 1)
        header = b"\r\n".join(p.top(int(n), 0)[1])
        uidls[uidl] = message_id(header)
    p.quit()
    return uidls


def main():
    work, users = sys.argv[1], json.loads(sys.argv[2])
    os.makedirs(work, exist_ok=True)
    conf, imap_port, pop3_port = configure(work, users)
    server = subprocess.Popen(["dovecot", "-F", "-c", conf])
    try:
        wait_for(imap_port)
        wait_for(pop3_port)
        out = {}
        for user in users:
            validity, uids = imap_view(imap_port, user)
            out[user] = {"validity": validity, "imap": uids, "pop3": pop3_view(pop3_port, user)}
        print(json.dumps(out, sort_keys=True))
    finally:
        server.terminate()
        server.wait(timeout=30)


main()
