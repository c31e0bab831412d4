//! Ed25519 signatures on what a run leaves as evidence (the manifest, the audit log), so a third
//! party can check them with the public key alone (`audit-verify --public-key`).
//!
//! Keys are the PEM files OpenSSL writes (`openssl genpkey -algorithm ed25519 -out key.pem`,
//! `openssl pkey -in key.pem -pubout -out key.pub`). A signature record signs the SHA-256 of
//! the bytes it covers; it names that digest and the public key, so a check says which key
//! signed and what.

use std::path::Path;

use ed25519_dalek::ed25519::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// Reads a private key (PKCS#8 PEM) from a regular file of the running user (or root) that
/// nobody else may read; anything else is a usage error.
pub fn read_signing_key(path: &Path) -> Result<SigningKey> {
    let raw = crate::audit::read_secret(path, "signing key")?;
    SigningKey::from_pkcs8_pem(&String::from_utf8_lossy(&raw)).map_err(|e| {
        Error::Usage(format!(
            "signing key {}: not an Ed25519 private key in PEM (openssl genpkey -algorithm ed25519): {e}",
            path.display()
        ))
    })
}

/// Reads a public key (SubjectPublicKeyInfo PEM).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey> {
    let usage = |why: String| Error::Usage(format!("public key {}: {why}", path.display()));
    let raw = crate::fsx::read_own_file(path, 64 << 10)
        .map_err(|e| usage(e.problem().reason))?
        .ok_or_else(|| usage("No such file or directory".into()))?;
    VerifyingKey::from_public_key_pem(&String::from_utf8_lossy(&raw))
        .map_err(|e| usage(format!("not an Ed25519 public key in PEM (openssl pkey -pubout): {e}")))
}

/// The record that signs `digest` (the SHA-256 of the bytes it covers) with `key`.
pub fn record(key: &SigningKey, digest: &[u8; 32], covers: &str) -> Value {
    json!({
        "type": "signature",
        "alg": "ed25519",
        "covers": covers,
        "sha256": hex::encode(digest),
        "public_key": hex::encode(key.verifying_key().to_bytes()),
        "signature": hex::encode(key.sign(digest).to_bytes()),
    })
}

/// Checks a signature record against `digest`, the SHA-256 of the bytes it says it covers,
/// with `key`: `Err` says why not.
pub fn check(rec: &Value, digest: &[u8; 32], key: &VerifyingKey) -> std::result::Result<(), String> {
    let field = |k: &str| rec.get(k).and_then(Value::as_str).ok_or_else(|| format!("signature record without {k}"));
    if field("alg")? != "ed25519" {
        return Err("not an Ed25519 signature".into());
    }
    if field("public_key")? != hex::encode(key.to_bytes()) {
        return Err("signed with another key".into());
    }
    if field("sha256")? != hex::encode(digest) {
        return Err("the signed bytes changed (their SHA-256 differs)".into());
    }
    let sig = hex::decode(field("signature")?).map_err(|_| "the signature is not hex".to_string())?;
    let sig = Signature::from_slice(&sig).map_err(|_| "the signature has the wrong length".to_string())?;
    key.verify(digest, &sig).map_err(|_| "the signature does not verify".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_checks_and_nothing_else_does() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let d = [1u8; 32];
        let rec = record(&key, &d, "x");
        assert_eq!(check(&rec, &d, &key.verifying_key()), Ok(()));
        assert!(check(&rec, &[2; 32], &key.verifying_key()).unwrap_err().contains("changed"));
        assert!(check(&rec, &d, &other.verifying_key()).unwrap_err().contains("another key"));
        let mut forged = rec.clone();
        forged["signature"] = json!(hex::encode(other.sign(&d).to_bytes()));
        assert!(check(&forged, &d, &key.verifying_key()).unwrap_err().contains("does not verify"));
    }
}
