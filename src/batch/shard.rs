//! Which shard a batch row belongs to, and which shard this process runs.
//!
//! Design rationale: shards are chosen by a fixed function of the row's source string, never
//! by its position in the file, so that every host, every version of mailmover and every order
//! of the file agree on where a row goes (issue 8). The function is written down in
//! docs/scale-out.md and must not change: SHA-256 of the source exactly as written in the CSV
//! field (UTF-8, after unquoting and trimming), its first 8 bytes read as a big-endian `u64`,
//! modulo N, plus one. Shards are numbered 1..=N like `--shard {}/N ::: $(seq 1 N)`.
//! Rejected: `std::hash` (not stable across releases), row numbers (a row added on top moves
//! every other row), modulo over a shorter hash (no gain, same cost).

use sha2::{Digest, Sha256};

/// One shard of N, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub k: u64,
    pub n: u64,
}

impl Shard {
    pub const ALL: Shard = Shard { k: 1, n: 1 };

    /// Whether the row with this source belongs to this shard.
    pub fn contains(self, source: &str) -> bool {
        shard_of(source, self.n) == self.k
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// The first 8 bytes of SHA-256(source), big-endian: the row's position on the hash ring.
pub fn source_hash(source: &str) -> u64 {
    let d = Sha256::digest(source.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// The shard (1..=n) of a row with this source; `n` 0 is treated as 1.
pub fn shard_of(source: &str, n: u64) -> u64 {
    source_hash(source) % n.max(1) + 1
}

/// Parses `K/N` with 1 <= K <= N.
pub fn parse(spec: &str) -> Result<Shard, String> {
    let (k, n) = spec.trim().split_once('/').ok_or_else(|| format!("--shard {spec:?}: expected K/N, e.g. 3/8"))?;
    let n = count(n).map_err(|e| format!("--shard {spec:?}: N {e}"))?;
    let k: u64 = k.trim().parse().map_err(|_| format!("--shard {spec:?}: K is not a number"))?;
    if k == 0 || k > n {
        return Err(format!("--shard {spec:?}: K must be between 1 and {n} (shards are numbered from 1)"));
    }
    Ok(Shard { k, n })
}

fn count(n: &str) -> Result<u64, String> {
    match n.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("is not a number".into()),
    }
}

/// Kubernetes Indexed Jobs number pods from 0.
pub const K8S_INDEX: &str = "JOB_COMPLETION_INDEX";
/// Slurm arrays number tasks as `--array` says; mailmover expects `--array=1-N`.
pub const SLURM_INDEX: &str = "SLURM_ARRAY_TASK_ID";

/// The shard this process runs: `--shard K/N`; or `--shards N` with K from the scheduler's
/// environment (`JOB_COMPLETION_INDEX` + 1, else `SLURM_ARRAY_TASK_ID`); or the whole file.
/// An index outside 1..=N is an error rather than a silently empty shard.
pub fn select(shard: Option<&str>, shards: Option<u64>, env: impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
    match (shard, shards) {
        (Some(_), Some(_)) => Err("give either --shard K/N or --shards N, not both".into()),
        (Some(s), None) => parse(s),
        (None, None) => Ok(Shard::ALL),
        (None, Some(0)) => Err("--shards: N must be at least 1".into()),
        (None, Some(n)) => {
            let (k, var) = if let Some(v) = env(K8S_INDEX) {
                let i: u64 =
                    v.trim().parse().map_err(|_| format!("--shards {n}: {K8S_INDEX}={v:?} is not a number"))?;
                (i.checked_add(1).ok_or_else(|| format!("--shards {n}: {K8S_INDEX}={v:?} is too big"))?, K8S_INDEX)
            } else if let Some(v) = env(SLURM_INDEX) {
                (
                    v.trim().parse().map_err(|_| format!("--shards {n}: {SLURM_INDEX}={v:?} is not a number"))?,
                    SLURM_INDEX,
                )
            } else {
                return Err(format!(
                    "--shards {n}: neither {K8S_INDEX} (Kubernetes) nor {SLURM_INDEX} (Slurm) is set; use --shard K/N"
                ));
            };
            if k == 0 || k > n {
                let hint =
                    if var == SLURM_INDEX { " (submit the array as --array=1-N)" } else { " (set completions to N)" };
                return Err(format!("--shards {n}: {var} gives shard {k}, outside 1..={n}{hint}"));
            }
            Ok(Shard { k, n })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn hash_is_the_documented_function() {
        // SHA-256("") = e3b0c44298fc1c14…; these values are frozen: changing them moves rows
        // between shards for everyone mid-migration.
        assert_eq!(source_hash(""), 0xe3b0_c442_98fc_1c14);
        assert_eq!(source_hash("abc"), 0xba78_16bf_8f01_cfea);
        assert_eq!(shard_of("abc", 7), 0xba78_16bf_8f01_cfea % 7 + 1);
        assert_eq!(shard_of("anything", 1), 1);
        assert_eq!(shard_of("anything", 0), 1);
    }

    #[test]
    fn parse_accepts_k_of_n_and_rejects_the_rest() {
        assert_eq!(parse("3/8"), Ok(Shard { k: 3, n: 8 }));
        assert_eq!(parse(" 1 / 1 "), Ok(Shard { k: 1, n: 1 }));
        for bad in ["", "3", "0/4", "5/4", "1/0", "a/4", "1/b", "-1/4", "1/4/2", "1/-4"] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn select_reads_the_scheduler_index() {
        let k8s = |v: &str| (v == K8S_INDEX).then(|| "2".to_string());
        let slurm = |v: &str| (v == SLURM_INDEX).then(|| "2".to_string());
        assert_eq!(select(None, Some(4), k8s), Ok(Shard { k: 3, n: 4 }));
        assert_eq!(select(None, Some(4), slurm), Ok(Shard { k: 2, n: 4 }));
        assert_eq!(select(None, None, k8s), Ok(Shard::ALL));
        assert_eq!(select(Some("1/2"), None, k8s), Ok(Shard { k: 1, n: 2 }));
        assert!(select(Some("1/2"), Some(2), no_env).is_err());
        assert!(select(None, Some(4), no_env).is_err());
        assert!(select(None, Some(0), k8s).is_err());
        assert!(select(None, Some(2), k8s).is_err(), "index 2 is shard 3 of 2");
        let slurm0 = |v: &str| (v == SLURM_INDEX).then(|| "0".to_string());
        assert!(select(None, Some(4), slurm0).is_err());
        let junk = |v: &str| (v == K8S_INDEX).then(|| "x".to_string());
        assert!(select(None, Some(4), junk).is_err());
    }

    #[test]
    fn shards_partition_any_set_of_sources() {
        let sources: Vec<String> = (0..500).map(|i| format!("maildir:/srv/old/user{i}")).collect();
        for n in [1u64, 2, 7, 64] {
            for s in &sources {
                let hits = (1..=n).filter(|&k| Shard { k, n }.contains(s)).count();
                assert_eq!(hits, 1, "{s} is in {hits} of {n} shards");
            }
        }
    }
}
