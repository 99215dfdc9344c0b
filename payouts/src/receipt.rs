//! Signed share receipts and the per-job Merkle root of credits.
//!
//! Every accepted share is answered with a [`Receipt`]: the credit's fields signed
//! by the pool's ed25519 key. When a job is settled the pool publishes the job's
//! credit list and its Merkle root; a miner holding receipts can check that each
//! of its credits is in the list, at the position the receipt names, unchanged,
//! and that its settlement is its work's share of the reward.
//!
//! Bytes signed and hashed: `zkpool-receipt/1\n` followed by the JSON of
//! [`ReceiptBody`] with its fields in declaration order (serde_json writes struct
//! fields in order, so the encoding is canonical for a given body).
//! Leaf = SHA-256(0x00 || bytes); node = SHA-256(0x01 || left || right); a level
//! with an odd count carries its last node up unchanged; the root of an empty list
//! is SHA-256 of nothing.

use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ShareCredit;

/// What a receipt attests: one verified share, as credited, and its position in
/// the job's credit list. On the wire the credit's fields come first, then
/// `position` (see PROTOCOL.md); the credit's fields read through (`body.work`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    #[serde(flatten)]
    pub credit: ShareCredit,
    /// The credit's position in the job's credit list (0-based, in order of credit).
    pub position: u64,
}

impl std::ops::Deref for ReceiptBody {
    type Target = ShareCredit;
    fn deref(&self) -> &ShareCredit {
        &self.credit
    }
}

impl ReceiptBody {
    /// The canonical bytes that are signed and hashed.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = b"zkpool-receipt/1\n".to_vec();
        serde_json::to_writer(&mut b, self).expect("receipt bodies serialise");
        b
    }

    /// This credit's leaf in the job's Merkle tree.
    pub fn leaf(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(self.bytes());
        h.finalize().into()
    }
}

/// A receipt: the body and the pool's signature over it (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    #[serde(flatten)]
    pub body: ReceiptBody,
    /// ed25519 signature of `body.bytes()`, hex.
    pub signature: String,
}

/// Why a receipt does not check out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("the pool key {0:?} is not a 32-byte hex ed25519 public key")]
    BadKey(String),
    #[error("the receipt's signature is not 64 bytes of hex")]
    BadSignature,
    #[error("the signature does not match the receipt's contents: it was altered, or signed by another key")]
    Forged,
}

/// The pool's receipt key.
pub struct Signer {
    key: SigningKey,
}

impl Signer {
    /// A signer from a 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Signer {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// A new random key, with the seed to store.
    pub fn generate() -> (Self, [u8; 32]) {
        let seed: [u8; 32] = rand::random();
        (Self::from_seed(seed), seed)
    }

    /// The public key miners check receipts with, hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    pub fn sign(&self, body: ReceiptBody) -> Receipt {
        let signature = hex::encode(self.key.sign(&body.bytes()).to_bytes());
        Receipt { body, signature }
    }
}

impl Receipt {
    /// Checks the signature against the pool's public key (hex).
    pub fn verify(&self, public_hex: &str) -> Result<(), ReceiptError> {
        let key: [u8; 32] = hex::decode(public_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ReceiptError::BadKey(public_hex.to_owned()))?;
        let key =
            VerifyingKey::from_bytes(&key).map_err(|_| ReceiptError::BadKey(public_hex.into()))?;
        let sig: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(ReceiptError::BadSignature)?;
        key.verify(
            &self.body.bytes(),
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .map_err(|_| ReceiptError::Forged)
    }
}

fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// One level up: pairs hashed, an odd last node carried up unchanged.
fn next_level(level: &[[u8; 32]]) -> Vec<[u8; 32]> {
    level
        .chunks(2)
        .map(|c| {
            if c.len() == 2 {
                node(&c[0], &c[1])
            } else {
                c[0]
            }
        })
        .collect()
}

/// The Merkle root over leaves in order.
pub fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    if leaves.is_empty() {
        return Sha256::digest([]).into();
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

/// The sibling path from leaf `index` to the root: (sibling, sibling is on the left).
pub fn merkle_path(leaves: &[[u8; 32]], mut index: usize) -> Option<Vec<([u8; 32], bool)>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = vec![];
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        let sib = index ^ 1;
        if sib < level.len() {
            path.push((level[sib], sib < index));
        }
        level = next_level(&level);
        index /= 2;
    }
    Some(path)
}

/// Whether `leaf` with `path` hashes up to `root`.
pub fn merkle_verify(leaf: [u8; 32], path: &[([u8; 32], bool)], root: [u8; 32]) -> bool {
    let mut acc = leaf;
    for (sib, left) in path {
        acc = if *left {
            node(sib, &acc)
        } else {
            node(&acc, sib)
        };
    }
    acc == root
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body(position: u64) -> ReceiptBody {
        ReceiptBody {
            credit: ShareCredit {
                worker: "alice.rig1".into(),
                job: "j1".into(),
                task: format!("t{position}"),
                first_statement: position * 4,
                proofs: 4,
                work: 4 * 3_000,
                at_ms: 1_700_000_000_000 + position,
                escrow_only: false,
            },
            position,
        }
    }

    /// The signed bytes are the specification's (PROTOCOL.md): fields in order, no spaces.
    #[test]
    fn the_signed_bytes_are_canonical() {
        assert_eq!(
            String::from_utf8(body(3).bytes()).unwrap(),
            "zkpool-receipt/1\n{\"worker\":\"alice.rig1\",\"job\":\"j1\",\"task\":\"t3\",\"first_statement\":12,\"proofs\":4,\"work\":12000,\"at_ms\":1700000000003,\"position\":3}"
        );
    }

    #[test]
    fn a_receipt_verifies_and_any_change_breaks_it() {
        let (signer, _) = Signer::generate();
        let r = signer.sign(body(3));
        r.verify(&signer.public_hex()).unwrap();
        let mut tampered = r.clone();
        tampered.body.credit.work += 1;
        assert_eq!(
            tampered.verify(&signer.public_hex()),
            Err(ReceiptError::Forged)
        );
        let (other, _) = Signer::generate();
        assert_eq!(r.verify(&other.public_hex()), Err(ReceiptError::Forged));
        assert!(matches!(r.verify("zz"), Err(ReceiptError::BadKey(_))));
        // The JSON form round-trips with the body's fields at the top level.
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["position"], 3);
        let back: Receipt = serde_json::from_value(json).unwrap();
        back.verify(&signer.public_hex()).unwrap();
    }

    proptest! {
        /// The fuzz body run in CI (`fuzz/` target `receipt_parse` runs it longer):
        /// arbitrary bytes as a stored receipt never panic parsing or checking.
        #[test]
        fn arbitrary_bytes_never_panic_receipt_checks(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(r) = serde_json::from_slice::<Receipt>(&bytes) {
                prop_assert!(r.verify(&"00".repeat(32)).is_err());
            }
        }

        /// Every leaf's path proves it against the root, and no other leaf's does.
        #[test]
        fn merkle_paths_prove_membership(n in 1usize..40, pick in 0usize..40) {
            let leaves: Vec<[u8; 32]> = (0..n as u64).map(|i| body(i).leaf()).collect();
            let root = merkle_root(&leaves);
            let i = pick % n;
            let path = merkle_path(&leaves, i).unwrap();
            prop_assert!(merkle_verify(leaves[i], &path, root));
            let other = body(n as u64 + 1).leaf();
            prop_assert!(!merkle_verify(other, &path, root));
        }
    }
}
