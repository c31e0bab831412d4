//! Forensic conversion (issue 21, item 4): `--manifest` accounts for every source message with
//! digests a third party can recompute, errors included; `--sign-key` signs it with Ed25519 and
//! `audit-verify --public-key` checks it without the secret; the zone used for From_ dates
//! without one is in every report.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use serde_json::Value;

fn records(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn the_manifest_accounts_for_every_source_message() {
    let env = TestEnv::new();
    let mbox = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\n>From quoted\n\n\
From c@d Tue Jan  2 10:00:00 2024\nSubject: two\n\nb2\n\n\
From e@f Wed Jan  3 00:00:00 2024\nSubject: cut\nContent-Length: 500\n\nshort\n";
    env.write("in.mbox", mbox);
    let r = env.run(["sync", "in.mbox", "out", "--manifest", "m.jsonl", "--mbox-tz", "+0200", "--json"]);
    r.expect_code(1);
    let recs = records(&std::fs::read_to_string(env.path("m.jsonl")).unwrap());
    let header = &recs[0];
    assert_eq!((header["type"].as_str(), header["schema"].as_str()), (Some("header"), Some("mailmover.manifest/1")));
    for key in ["version", "host", "user", "argv", "source", "target", "started"] {
        assert!(!header[key].is_null(), "header lacks {key}: {header}");
    }
    assert_eq!(header["mbox_tz"], "+0200");
    let copies: Vec<&Value> = recs.iter().filter(|r| r["type"] == "copy").collect();
    assert_eq!(copies.len(), 3, "the truncated message's bytes are still written: {recs:?}");
    for c in &copies {
        // The digest of the stored bytes, recomputed from the offset and length given.
        let (off, len) = (c["offset"].as_u64().unwrap() as usize, c["length"].as_u64().unwrap() as usize);
        assert_eq!(c["sha256_source"].as_str().unwrap(), sha256(&mbox[off..off + len]));
        assert!(mbox[off..].starts_with(b"From "), "the offset is the From_ line's");
        // And of the message written.
        let written = std::fs::read(env.path(c["target"].as_str().unwrap())).unwrap();
        assert_eq!(c["sha256"].as_str().unwrap(), sha256(&written));
        assert_eq!(c["date_source"], "from-line");
    }
    assert_eq!(copies[1]["internal_date"], "2024-01-02T08:00:00Z", "read in +0200");
    let file = recs.iter().find(|r| r["type"] == "source_file").unwrap();
    assert_eq!(
        (file["sha256"].as_str().unwrap(), file["size"].as_u64()),
        (sha256(mbox).as_str(), Some(mbox.len() as u64))
    );
    let error = recs.iter().find(|r| r["type"] == "error").unwrap();
    assert!(error["reason"].as_str().unwrap().contains("truncated") && error["offset"].is_number(), "{error}");
    let end = recs.last().unwrap();
    assert_eq!(
        (end["type"].as_str(), end["exit"].as_u64(), end["counts"]["transferred"].as_u64()),
        (Some("end"), Some(1), Some(3))
    );
    // The zone is in the run's own reports too.
    assert_eq!(r.json()["mbox_tz"], "+0200");
    let human = env.run(["sync", "in.mbox", "human", "--mbox-tz", "+0200"]);
    assert!(human.stderr.contains("  zone-less From_ dates . +0200\n"), "{}", human.stderr);

    // A re-run: every message is there already, and said so.
    env.run(["sync", "in.mbox", "out", "--manifest", "again.jsonl", "--mbox-tz", "+0200"]).expect_code(1);
    let again = records(&std::fs::read_to_string(env.path("again.jsonl")).unwrap());
    assert_eq!(again.iter().filter(|r| r["type"] == "exists").count(), 3);
    // Never over an existing manifest.
    let refused = env.run(["sync", "in.mbox", "out", "--manifest", "m.jsonl"]);
    refused.expect_code(2);
    assert!(refused.stderr.contains("exists already"), "{}", refused.stderr);
}

#[test]
fn a_dry_run_manifest_has_no_copy_records() {
    let env = TestEnv::new();
    env.write("in.mbox", b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\n");
    env.run(["sync", "in.mbox", "out", "--dry-run", "--manifest", "m.jsonl"]).expect_code(0);
    let recs = records(&std::fs::read_to_string(env.path("m.jsonl")).unwrap());
    assert_eq!(recs.iter().filter(|r| r["type"] == "would_copy").count(), 1);
    assert!(!recs.iter().any(|r| r["type"] == "copy"), "{recs:?}");
    assert!(recs.iter().any(|r| r["type"] == "end" && r["dry_run"] == true));
}

#[test]
fn a_signed_manifest_is_checked_with_the_public_key_alone() {
    let env = TestEnv::new();
    for d in ["src/cur", "src/new", "src/tmp"] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
    env.write("src/cur/1.a:2,S", &message("a", "x\n"));
    let (private, public) = ed25519_keys(&env, 7);
    let (_, other) = ed25519_keys(&env, 8);
    env.run(["sync", "maildir:src", "out", "--manifest", "m.jsonl", "--sign-key", &private]).expect_code(0);
    let text = std::fs::read_to_string(env.path("m.jsonl")).unwrap();
    let recs = records(&text);
    let copy = recs.iter().find(|r| r["type"] == "copy").unwrap();
    assert_eq!(copy["source_size"].as_u64(), Some(std::fs::metadata(env.path("src/cur/1.a:2,S")).unwrap().len()));
    assert!(copy["source_mtime"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(recs.last().unwrap()["type"], "signature");

    let ok = env.run(["audit-verify", "m.jsonl", "--public-key", &public]);
    ok.expect_code(0);
    assert!(ok.stdout.starts_with("OK: "), "{}", ok.stdout);
    let wrong = env.run(["audit-verify", "m.jsonl", "--public-key", &other]);
    wrong.expect_code(1);
    assert!(wrong.stdout.contains("signed with another key"), "{}", wrong.stdout);
    // One byte changed anywhere before the signature.
    std::fs::write(env.path("m.jsonl"), text.replacen("\"flags\":\"S\"", "\"flags\":\"F\"", 1)).unwrap();
    let tampered = env.run(["audit-verify", "m.jsonl", "--public-key", &public]);
    tampered.expect_code(1);
    assert!(tampered.stdout.contains("the signed bytes changed"), "{}", tampered.stdout);
    // Cut short (the signature gone).
    let cut: String = text.lines().take(recs.len() - 1).map(|l| format!("{l}\n")).collect();
    std::fs::write(env.path("m.jsonl"), cut).unwrap();
    assert!(env.run(["audit-verify", "m.jsonl", "--public-key", &public]).stdout.contains("not a signature record"));

    // A private key others may read is refused before anything is done.
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loose = env.run(["sync", "maildir:src", "out2", "--manifest", "n.jsonl", "--sign-key", &private]);
    loose.expect_code(2);
    assert!(
        loose.stderr.contains("chmod 600") && !env.path("out2").exists() && !env.path("n.jsonl").exists(),
        "{}",
        loose.stderr
    );
}

/// The audit log's runs are signed too: each ends with a signature over its lines, checked
/// with the public key alone; the HMAC chain stays for those who check with the key.
#[test]
fn audit_log_runs_are_signed() {
    let env = TestEnv::new();
    let hmac = audited_source(&env);
    let (private, public) = ed25519_keys(&env, 9);
    let audit = ["--audit-log", "audit.jsonl", "--audit-key-file", &hmac];
    for _ in 0..2 {
        let mut args = vec!["sync", "maildir:src", "out", "--sign-key", &private];
        args.extend_from_slice(&audit);
        env.run(args).expect_code(0);
    }
    let signed = env.run(["audit-verify", "audit.jsonl", "--public-key", &public]);
    signed.expect_code(0);
    assert!(signed.stdout.contains("of 2 run(s), each run signed by"), "{}", signed.stdout);
    env.run(["audit-verify", "audit.jsonl", "--audit-key-file", &hmac]).expect_code(0);
    let text = std::fs::read_to_string(env.path("audit.jsonl")).unwrap();
    assert_eq!(text.lines().filter(|l| l.contains("\"type\":\"signature\"")).count(), 2);

    // One byte changed in the first run.
    std::fs::write(env.path("audit.jsonl"), text.replacen("maildir:src", "maildir:srC", 1)).unwrap();
    let tampered = env.run(["audit-verify", "audit.jsonl", "--public-key", &public]);
    tampered.expect_code(1);
    assert!(tampered.stdout.contains("the signed bytes changed"), "{}", tampered.stdout);
    // A run without the key appended: not signed, and said.
    std::fs::write(env.path("audit.jsonl"), &text).unwrap();
    let mut args = vec!["sync", "maildir:src", "out"];
    args.extend_from_slice(&audit);
    env.run(args).expect_code(0);
    let unsigned = env.run(["audit-verify", "audit.jsonl", "--public-key", &public]);
    unsigned.expect_code(1);
    assert!(unsigned.stdout.contains("has no signature"), "{}", unsigned.stdout);
    // --sign-key with nothing to sign is a usage error.
    let alone = env.run(["sync", "maildir:src", "out", "--sign-key", &private]);
    alone.expect_code(2);
    assert!(alone.stderr.contains("--sign-key signs a --manifest or an --audit-log"), "{}", alone.stderr);
}
