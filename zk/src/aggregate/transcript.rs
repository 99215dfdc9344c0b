//! The Fiat-Shamir transcript: SHA-256 over an injective framing of everything
//! absorbed, challenges by wide reduction.
//!
//! Every absorb is framed as `0x01 || len(label) || label || len(data) || data`
//! (lengths as u64 little-endian) and every challenge request as
//! `0x02 || len(label) || label`, so no two different sequences of operations hash
//! the same bytes. A challenge is 64 bytes (two SHA-256 outputs of the state so far
//! with counters 0 and 1) reduced mod r: the bias is about 2^-258. A zero challenge
//! is refused and the next counter pair tried. The challenge is absorbed back, so
//! everything after depends on it.

use ark_bn254::{Fr, G1Affine, G2Affine};
use ark_ff::{PrimeField, Zero};
use ark_serialize::CanonicalSerialize;
use sha2::{Digest, Sha256};

use super::gt;

pub(crate) struct Transcript {
    hasher: Sha256,
}

impl Transcript {
    /// A transcript that starts with the protocol tag.
    pub fn new(protocol: &[u8]) -> Self {
        let mut t = Transcript {
            hasher: Sha256::new(),
        };
        t.absorb(b"protocol", protocol);
        t
    }

    pub fn absorb(&mut self, label: &[u8], data: &[u8]) {
        self.hasher.update([0x01]);
        self.hasher.update((label.len() as u64).to_le_bytes());
        self.hasher.update(label);
        self.hasher.update((data.len() as u64).to_le_bytes());
        self.hasher.update(data);
    }

    pub fn absorb_u64(&mut self, label: &[u8], x: u64) {
        self.absorb(label, &x.to_le_bytes());
    }

    pub fn absorb_fr(&mut self, label: &[u8], x: &Fr) {
        let mut bytes = Vec::with_capacity(32);
        x.serialize_compressed(&mut bytes)
            .expect("serialising into a Vec cannot fail");
        self.absorb(label, &bytes);
    }

    pub fn absorb_g1(&mut self, label: &[u8], p: &G1Affine) {
        let mut bytes = Vec::with_capacity(32);
        p.serialize_compressed(&mut bytes)
            .expect("serialising into a Vec cannot fail");
        self.absorb(label, &bytes);
    }

    pub fn absorb_g2(&mut self, label: &[u8], p: &G2Affine) {
        let mut bytes = Vec::with_capacity(64);
        p.serialize_compressed(&mut bytes)
            .expect("serialising into a Vec cannot fail");
        self.absorb(label, &bytes);
    }

    /// Absorbs a GT element in its canonical encoding (the one the proof carries).
    pub fn absorb_gt(&mut self, label: &[u8], g: &ark_bn254::Fq12) {
        self.absorb(label, &gt::encode(g));
    }

    /// A non-zero challenge that depends on everything absorbed so far.
    pub fn challenge(&mut self, label: &[u8]) -> Fr {
        let mut base = self.hasher.clone();
        base.update([0x02]);
        base.update((label.len() as u64).to_le_bytes());
        base.update(label);
        for counter in (0u32..).step_by(2) {
            let mut wide = [0u8; 64];
            for (k, half) in wide.chunks_exact_mut(32).enumerate() {
                let digest = base
                    .clone()
                    .chain_update((counter + k as u32).to_le_bytes())
                    .finalize();
                half.copy_from_slice(&digest);
            }
            let x = Fr::from_le_bytes_mod_order(&wide);
            if !x.is_zero() {
                self.absorb_fr(label, &x);
                return x;
            }
        }
        unreachable!("SHA-256 does not return zero mod r for every counter")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_depend_on_every_absorb_and_its_framing() {
        let run = |ops: &[(&[u8], &[u8])]| {
            let mut t = Transcript::new(b"test");
            for (label, data) in ops {
                t.absorb(label, data);
            }
            t.challenge(b"x")
        };
        let base = run(&[(b"a", b"12"), (b"b", b"3")]);
        assert_eq!(base, run(&[(b"a", b"12"), (b"b", b"3")]));
        // The same bytes cut differently, another label, another order.
        assert_ne!(base, run(&[(b"a", b"1"), (b"b", b"23")]));
        assert_ne!(base, run(&[(b"a", b"12"), (b"c", b"3")]));
        assert_ne!(base, run(&[(b"b", b"3"), (b"a", b"12")]));
        assert_ne!(base, run(&[(b"a1", b"2"), (b"b", b"3")]));
        // A challenge feeds the next one.
        let mut t = Transcript::new(b"test");
        let x1 = t.challenge(b"x");
        let x2 = t.challenge(b"x");
        assert_ne!(x1, x2);
        assert!(!x1.is_zero() && !x2.is_zero());
        let mut other = Transcript::new(b"other protocol");
        assert_ne!(other.challenge(b"x"), x1);
    }
}
