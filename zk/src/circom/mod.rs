//! circom circuits with snarkjs Groth16 keys, proven with ark-groth16.
//!
//! A client registers three files, which [`CircomCircuit::load`] checks belong
//! together:
//! - the `.r1cs` ([`r1cs`]): the constraints, whose count is the work per proof;
//! - the `.wasm` ([`witness`]): circom's witness generator, run in wasmi with a
//!   fuel and a memory bound;
//! - the `.zkey` ([`zkey`]): snarkjs's proving key, which holds the verifying key.
//!
//! Proving uses ark-groth16 with the witness map snarkjs keys need ([`qap`]), so
//! the proofs verify under the zkey's verifying key, in zkpool and in snarkjs.

mod binfile;
mod native_ops;
pub mod qap;
pub mod r1cs;
pub mod witness;
pub mod wtns;
pub mod zkey;

use ark_bn254::{Bn254, Fr};
use ark_groth16::{Groth16, ProvingKey};
use ark_std::UniformRand;
use serde_json::Value;

use crate::proof::ProofBytes;
pub use r1cs::R1cs;
pub use witness::WitnessGenerator;
pub use zkey::Zkey;

/// What is wrong with a circom circuit's files, a statement's input, or a proof run.
/// Each message names the file or input and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CircomError {
    #[error("{file}: {detail}")]
    Format { file: &'static str, detail: String },
    #[error("{file} is for another curve: {detail}. zkpool proves on BN254 (circom's default prime, snarkjs's bn128)")]
    Curve { file: &'static str, detail: String },
    #[error("the r1cs does not match the zkey: {0}. Make the zkey from this r1cs (snarkjs groth16 setup) and upload both again")]
    Mismatch(String),
    #[error("wasm: {0}")]
    Wasm(String),
    #[error("circom input: {0}")]
    Input(String),
    #[error("the witness does not satisfy constraint {0} of the r1cs: the inputs are not a valid statement for this circuit")]
    Unsatisfied(usize),
    #[error("proving failed: {0}")]
    Prove(String),
    /// The zkey's keys cannot be trusted: a degenerate verifying key, or a proving
    /// key that does not belong to it (its proofs would not verify, and every rig
    /// that proved this circuit would be blamed).
    #[error("the zkey's keys are refused: {0}. Upload a zkey made by snarkjs groth16 setup and at least one zkey contribute")]
    Key(String),
}

impl CircomError {
    /// Whether a witness computation was stopped by its fuel bound.
    pub fn ran_out_of_fuel(&self) -> bool {
        matches!(self, CircomError::Wasm(m) if m.contains(witness::OUT_OF_FUEL))
    }

    pub(crate) fn format(file: &'static str, detail: impl Into<String>) -> Self {
        CircomError::Format {
            file,
            detail: detail.into(),
        }
    }
}

/// A circom circuit ready to compute witnesses and, with its proving key, prove.
/// The pool keeps only this (not the proving key) to evaluate statements.
pub struct CircomCircuit {
    pub r1cs: R1cs,
    pub generator: WitnessGenerator,
}

impl CircomCircuit {
    /// Parses and cross-checks the three files; returns the circuit and the zkey's
    /// proving key (which holds the verifying key).
    pub fn load(
        r1cs: &[u8],
        wasm: &[u8],
        zkey: &[u8],
    ) -> Result<(Self, ProvingKey<Bn254>), CircomError> {
        let r1cs = R1cs::parse(r1cs)?;
        let zkey = Zkey::parse(zkey)?;
        let generator = WitnessGenerator::new(wasm)?;
        check_match(&r1cs, &zkey)?;
        if generator.witness_size() != r1cs.wires {
            return Err(CircomError::Wasm(format!(
                "it computes {} signals, the r1cs has {} wires: upload the .wasm compiled together with this .r1cs",
                generator.witness_size(),
                r1cs.wires
            )));
        }
        let mut generator = generator;
        generator.set_limits(witness::Limits::for_size(r1cs.constraints(), r1cs.wires));
        Ok((CircomCircuit { r1cs, generator }, zkey.pk))
    }

    /// What a rig proves with, read from a [`Bundle`] file section by section
    /// (the rig's loading peak is the proving key plus one section, not the
    /// files): the r1cs's header (not its constraints), the witness generator
    /// in `engine`, and the zkey's proving key with A and B rebuilt from its
    /// coefficients.
    /// The bundle is trusted as far as its hash (the pool checked the zkey
    /// against the r1cs when the circuit was registered); everything read is
    /// still bounds-checked, and the counts must agree.
    pub fn for_proving(
        path: &std::path::Path,
        engine: witness::Engine,
    ) -> Result<(Self, ProvingKey<Bn254>), CircomError> {
        use std::io::{Read, Seek, SeekFrom};
        const FILE: &str = "circuit bundle";
        let io = |e: std::io::Error| CircomError::format(FILE, format!("{}: {e}", path.display()));
        let mut file = std::fs::File::open(path).map_err(io)?;
        let total = file.metadata().map_err(io)?.len();
        let mut head = [0u8; 16];
        file.read_exact(&mut head)
            .map_err(|_| CircomError::format(FILE, "truncated: no bundle header"))?;
        let mut r = binfile::Reader::new(FILE, &head);
        if r.bytes(4)? != b"zkpc" || r.u32()? != 1 {
            return Err(CircomError::format(
                FILE,
                "not a zkpool circom bundle (version 1)",
            ));
        }
        let part = |at: u64, len: u64| -> Result<(u64, u64), CircomError> {
            match at.checked_add(len) {
                Some(end) if end <= total => Ok((at, len)),
                _ => Err(CircomError::format(
                    FILE,
                    format!(
                        "truncated: a part of {len} bytes at byte {at} runs past its {total} bytes"
                    ),
                )),
            }
        };
        let mut len_at = |at: u64| -> Result<u64, CircomError> {
            let mut b = [0u8; 8];
            file.seek(SeekFrom::Start(at)).map_err(io)?;
            file.read_exact(&mut b)
                .map_err(|_| CircomError::format(FILE, "truncated: a part's length is missing"))?;
            Ok(u64::from_le_bytes(b))
        };
        let r1cs_part = part(16, r.u64()?)?;
        let wasm_at = r1cs_part.0 + r1cs_part.1;
        let wasm_part = part(wasm_at + 8, len_at(wasm_at)?)?;
        let zkey_at = wasm_part.0 + wasm_part.1;
        let zkey_part = part(zkey_at + 8, len_at(zkey_at)?)?;
        if zkey_part.0 + zkey_part.1 != total {
            return Err(CircomError::format(
                FILE,
                "it has bytes after its three parts",
            ));
        }
        let wasm = {
            file.seek(SeekFrom::Start(wasm_part.0)).map_err(io)?;
            let mut w = Vec::new();
            (&mut file)
                .take(wasm_part.1)
                .read_to_end(&mut w)
                .map_err(io)?;
            w
        };
        let clone = || file.try_clone().map_err(io);
        let header = {
            let s = binfile::Sections::open("r1cs", b"r1cs", clone()?, r1cs_part.0, r1cs_part.1)?;
            R1cs::header(&s)?
        };
        // The witness generator is compiled before the key is read: the
        // compiler's working memory is then free again (and reused) when the
        // key's points are allocated, instead of adding to them at the peak.
        let mut generator = WitnessGenerator::with_engine(&wasm, engine)?;
        drop(wasm);
        if generator.witness_size() != header.wires {
            return Err(CircomError::Wasm(format!(
                "it computes {} signals, the r1cs has {} wires: upload the .wasm compiled together with this .r1cs",
                generator.witness_size(),
                header.wires
            )));
        }
        generator.set_limits(witness::Limits::for_size(header.constraints, header.wires));
        let s = binfile::Sections::open("zkey", b"zkey", clone()?, zkey_part.0, zkey_part.1)?;
        let (counts, pk, ab) = zkey::read_for_proving(&s, header.constraints)?;
        drop(s);
        let public = header.public_outputs + header.public_inputs;
        if counts.vars != header.wires || counts.public != public {
            return Err(CircomError::Mismatch(format!(
                "the zkey has {} signals ({} public), the r1cs {} wires ({public} public)",
                counts.vars, counts.public, header.wires
            )));
        }
        let r1cs = R1cs {
            wires: header.wires,
            public_outputs: header.public_outputs,
            public_inputs: header.public_inputs,
            private_inputs: header.private_inputs,
            ab,
            c: None,
        };
        Ok((CircomCircuit { r1cs, generator }, pk))
    }

    /// Checks a zkey's proving key against its own verifying key, as far as that
    /// can be done without the setup's trapdoor, with the caller's randomness:
    /// the verifying key is not degenerate ([`crate::keys::check_vk`]); beta and
    /// delta in G1 are the verifying key's; every `B` point in G1 is the same
    /// scalar as its `B` point in G2 (one random linear combination, one pairing
    /// each side); no `H` point is the identity. The pool runs this (and
    /// [`Self::self_test`]) when a client registers a circuit; rigs trust the
    /// bundle's hash instead.
    pub fn check_proving_key(pk: &ProvingKey<Bn254>) -> Result<(), CircomError> {
        use ark_ec::{pairing::Pairing, AffineRepr, CurveGroup, VariableBaseMSM};
        let key = |why: String| CircomError::Key(why);
        crate::keys::check_vk(&pk.vk).map_err(|e| key(e.to_string()))?;
        let (g1, g2) = (
            ark_bn254::G1Affine::generator(),
            ark_bn254::G2Affine::generator(),
        );
        for (name, a, b) in [
            ("beta", pk.beta_g1, pk.vk.beta_g2),
            ("delta", pk.delta_g1, pk.vk.delta_g2),
        ] {
            if a.is_zero() || Bn254::pairing(a, g2) != Bn254::pairing(g1, b) {
                return Err(key(format!(
                    "its proving key's {name} is not its verifying key's"
                )));
            }
        }
        if pk.b_g1_query.len() != pk.b_g2_query.len() {
            return Err(key(format!(
                "it has {} B points in G1 and {} in G2",
                pk.b_g1_query.len(),
                pk.b_g2_query.len()
            )));
        }
        for (i, (b1, b2)) in pk.b_g1_query.iter().zip(&pk.b_g2_query).enumerate() {
            if b1.is_zero() != b2.is_zero() {
                return Err(key(format!("its B point {i} is zero in one group only")));
            }
        }
        let mut rng = rand::rngs::OsRng;
        let rho: Vec<Fr> = (0..pk.b_g1_query.len())
            .map(|_| Fr::rand(&mut rng))
            .collect();
        let left = ark_bn254::G1Projective::msm(&pk.b_g1_query, &rho)
            .map_err(|_| key("B points in G1 and scalars differ in number".into()))?;
        let right = ark_bn254::G2Projective::msm(&pk.b_g2_query, &rho)
            .map_err(|_| key("B points in G2 and scalars differ in number".into()))?;
        if Bn254::pairing(left.into_affine(), g2) != Bn254::pairing(g1, right.into_affine()) {
            return Err(key(
                "its B points in G1 and G2 are not the same scalars".into()
            ));
        }
        if let Some(i) = pk.h_query.iter().position(|p| p.is_zero()) {
            return Err(key(format!("its H point {i} is the identity")));
        }
        Ok(())
    }

    /// Proves a sample statement with `pk` (fresh randomness) and checks the proof
    /// under `pk`'s verifying key: the proving key's points that statement uses
    /// belong to the key. Returns what computing the sample's witness spent, from
    /// which the bounds for every further statement are set ([`witness::Limits::calibrated`]).
    pub fn self_test(
        &self,
        pk: &ProvingKey<Bn254>,
        sample: &Value,
    ) -> Result<witness::Usage, CircomError> {
        let (w, usage) = self
            .generator
            .calculate_metered(sample)
            .map_err(|e| match e {
                CircomError::Input(why) => CircomError::Input(format!("sample: {why}")),
                other => other,
            })?;
        if let Some(i) = self.r1cs.unsatisfied(&w) {
            return Err(CircomError::Unsatisfied(i));
        }
        let proof = self.prove(pk, &w)?;
        let vk =
            crate::VerifierKey::new(pk.vk.clone()).map_err(|e| CircomError::Key(e.to_string()))?;
        vk.verify(&self.public_signals(&w), &proof).map_err(|e| {
            CircomError::Key(format!(
                "a proof of the sample statement made with its proving key does not verify under its verifying key ({e})"
            ))
        })?;
        Ok(usage)
    }

    /// Sets the witness bounds for every statement from a sample's usage.
    pub fn calibrate(&mut self, sample: witness::Usage) {
        let limits = self.generator.limits().calibrated(sample);
        self.generator.set_limits(limits);
    }

    /// Loads a [`bundle`] of the three files.
    pub fn from_bundle(bytes: &[u8]) -> Result<(Self, ProvingKey<Bn254>), CircomError> {
        let b = Bundle::decode(bytes)?;
        Self::load(b.r1cs, b.wasm, b.zkey)
    }

    /// Constraints: the work credited per proof.
    pub fn constraints(&self) -> u64 {
        self.r1cs.constraints() as u64
    }

    /// Public signals per proof (outputs, then public inputs).
    pub fn public_inputs(&self) -> usize {
        self.r1cs.public()
    }

    /// The full witness for a circom input object, checked against every
    /// constraint where C is held (in the pool; a rig checks each proof instead).
    pub fn witness(&self, input: &Value) -> Result<Vec<Fr>, CircomError> {
        self.witness_metered(input).map(|(w, _)| w)
    }

    /// [`Self::witness`], and what computing it spent.
    pub fn witness_metered(&self, input: &Value) -> Result<(Vec<Fr>, witness::Usage), CircomError> {
        self.witness_within(input, u64::MAX)
    }

    /// [`Self::witness_metered`] with at most `fuel` ([`WitnessGenerator::calculate_within`]).
    pub fn witness_within(
        &self,
        input: &Value,
        fuel: u64,
    ) -> Result<(Vec<Fr>, witness::Usage), CircomError> {
        let (w, usage) = self.generator.calculate_within(input, fuel)?;
        if let Some(i) = self.r1cs.unsatisfied(&w) {
            return Err(CircomError::Unsatisfied(i));
        }
        Ok((w, usage))
    }

    /// The public signals of a witness, as `public.json` lists them.
    pub fn public_signals(&self, witness: &[Fr]) -> Vec<Fr> {
        witness[1..=self.public_inputs()].to_vec()
    }

    /// Proves a witness from [`Self::witness`] with the zkey's proving key, with
    /// randomness from the OS CSPRNG.
    pub fn prove(&self, pk: &ProvingKey<Bn254>, witness: &[Fr]) -> Result<ProofBytes, CircomError> {
        let mut rng = rand::rngs::OsRng;
        self.prove_with(pk, witness, Fr::rand(&mut rng), Fr::rand(&mut rng))
    }

    /// [`Self::prove`] with the randomness given: ark-groth16 with snarkjs's
    /// reduction, the matrices borrowed (not copied per proof).
    pub(crate) fn prove_with(
        &self,
        pk: &ProvingKey<Bn254>,
        witness: &[Fr],
        r: Fr,
        s: Fr,
    ) -> Result<ProofBytes, CircomError> {
        if witness.len() != self.r1cs.wires {
            return Err(CircomError::Prove(format!(
                "the witness has {} values, the circuit {} wires",
                witness.len(),
                self.r1cs.wires
            )));
        }
        let proof =
            Groth16::<Bn254, qap::CircomReduction>::create_proof_with_reduction_and_matrices(
                pk,
                r,
                s,
                &self.r1cs.ab,
                self.public_inputs() + 1,
                self.r1cs.constraints(),
                witness,
            )
            .map_err(|e| CircomError::Prove(e.to_string()))?;
        Ok(ProofBytes::encode(&proof))
    }
}

/// The three files of a circom circuit in one blob, as the pool stores and serves
/// them to miners (addressed by the blob's SHA-256): `zkpc`, a `u32` version (1),
/// then the r1cs, wasm and zkey, each as a `u64` length and the bytes (little-endian).
pub struct Bundle<'a> {
    pub r1cs: &'a [u8],
    pub wasm: &'a [u8],
    pub zkey: &'a [u8],
}

impl<'a> Bundle<'a> {
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(8 + 24 + self.r1cs.len() + self.wasm.len() + self.zkey.len());
        out.extend_from_slice(b"zkpc");
        out.extend_from_slice(&1u32.to_le_bytes());
        for part in [self.r1cs, self.wasm, self.zkey] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    pub fn decode(bytes: &'a [u8]) -> Result<Self, CircomError> {
        let mut r = binfile::Reader::new("circuit bundle", bytes);
        if r.bytes(4)? != b"zkpc" || r.u32()? != 1 {
            return Err(CircomError::format(
                "circuit bundle",
                "not a zkpool circom bundle (version 1)",
            ));
        }
        let mut part = || -> Result<&'a [u8], CircomError> {
            let n = r.u64()?;
            r.bytes(usize::try_from(n).unwrap_or(usize::MAX))
        };
        let (r1cs, wasm, zkey) = (part()?, part()?, part()?);
        Ok(Bundle { r1cs, wasm, zkey })
    }
}

/// The zkey must have been made from this r1cs: same signals, same public count,
/// same domain, and exactly the r1cs's A and B coefficients (plus the rows snarkjs
/// adds for the public signals).
fn check_match(r1cs: &R1cs, zkey: &Zkey) -> Result<(), CircomError> {
    if zkey.vars != r1cs.wires {
        return Err(CircomError::Mismatch(format!(
            "the zkey has {} signals, the r1cs {} wires",
            zkey.vars, r1cs.wires
        )));
    }
    if zkey.public != r1cs.public() {
        return Err(CircomError::Mismatch(format!(
            "the zkey has {} public signals, the r1cs {}",
            zkey.public,
            r1cs.public()
        )));
    }
    let domain = (r1cs.constraints() + r1cs.public() + 1).next_power_of_two();
    if zkey.domain_size != domain {
        return Err(CircomError::Mismatch(format!(
            "the zkey's domain has {} points, the r1cs's {} constraints need {domain}",
            zkey.domain_size,
            r1cs.constraints()
        )));
    }
    let mut expected = Vec::with_capacity(zkey.coefs.len());
    for (m, matrix) in r1cs.ab.iter().enumerate() {
        for (i, row) in matrix.iter().enumerate() {
            for (c, w) in row {
                expected.push(zkey::Coef {
                    matrix: m as u32,
                    constraint: i as u32,
                    signal: *w as u32,
                    value: ark_ff::PrimeField::into_bigint(*c).0,
                });
            }
        }
    }
    for s in 0..=r1cs.public() {
        expected.push(zkey::Coef {
            matrix: 0,
            constraint: (r1cs.constraints() + s) as u32,
            signal: s as u32,
            value: ark_ff::PrimeField::into_bigint(Fr::from(1u64)).0,
        });
    }
    let mut got = zkey.coefs.clone();
    expected.sort_unstable();
    got.sort_unstable();
    if expected.len() != got.len() {
        return Err(CircomError::Mismatch(format!(
            "the zkey has {} A/B coefficients, the r1cs {}",
            got.len(),
            expected.len()
        )));
    }
    if let Some((e, g)) = expected.iter().zip(&got).find(|(e, g)| e != g) {
        let which = |c: &zkey::Coef| {
            format!(
                "{} of constraint {} signal {}",
                ["A", "B"].get(c.matrix as usize).unwrap_or(&"?"),
                c.constraint,
                c.signal
            )
        };
        return Err(CircomError::Mismatch(format!(
            "the coefficients differ ({} in the r1cs, {} in the zkey)",
            which(e),
            which(g)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snarkjs;

    const R1CS: &[u8] = include_bytes!("../../tests/fixtures/circom/mul.r1cs");
    const WASM: &[u8] = include_bytes!("../../tests/fixtures/circom/mul.wasm");
    const ZKEY: &[u8] = include_bytes!("../../tests/fixtures/circom/mul.zkey");

    fn fixture_json(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/circom/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn circuit() -> (CircomCircuit, ProvingKey<Bn254>) {
        let bundle = Bundle {
            r1cs: R1CS,
            wasm: WASM,
            zkey: ZKEY,
        }
        .encode();
        CircomCircuit::from_bundle(&bundle).unwrap()
    }

    /// A rig reads its bundle from disk section by section: the same A and B
    /// as the r1cs's (rebuilt from the zkey), the same key, no C; its proofs
    /// verify; a damaged bundle is refused with the problem named.
    #[test]
    fn a_rig_proves_from_the_bundle_file_without_the_r1cs_constraints() {
        let (full, pk) = circuit();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pk");
        let bundle = Bundle {
            r1cs: R1CS,
            wasm: WASM,
            zkey: ZKEY,
        }
        .encode();
        std::fs::write(&path, &bundle).unwrap();
        let (rig, rig_pk) = CircomCircuit::for_proving(&path, witness::Engine::Compiled).unwrap();
        assert_eq!(rig.r1cs.ab, full.r1cs.ab);
        assert!(rig.r1cs.c.is_none() && full.r1cs.c.is_some());
        assert_eq!(rig_pk, pk);
        assert_eq!(rig.constraints(), full.constraints());
        assert_eq!(rig.public_inputs(), full.public_inputs());
        let w = rig.witness(&fixture_json("mul.input.json")).unwrap();
        assert_eq!(w, full.witness(&fixture_json("mul.input.json")).unwrap());
        let proof = rig.prove(&rig_pk, &w).unwrap();
        crate::VerifierKey::new(pk.vk.clone())
            .unwrap()
            .verify(&rig.public_signals(&w), &proof)
            .unwrap();
        assert_eq!(
            R1cs::counts_from_file(&{
                let p = dir.path().join("c.r1cs");
                std::fs::write(&p, R1CS).unwrap();
                p
            })
            .unwrap(),
            (5, 2)
        );

        let refused = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            CircomCircuit::for_proving(&path, witness::Engine::Compiled)
                .err()
                .unwrap()
                .to_string()
        };
        let e = refused(&bundle[..bundle.len() - 1]);
        assert!(e.contains("truncated"), "{e}");
        let e = refused(&[&bundle[..], b"x"].concat());
        assert!(e.contains("bytes after its three parts"), "{e}");
        let e = refused(b"zkpc\x02\0\0\0");
        assert!(e.contains("truncated: no bundle header"), "{e}");
        // A coefficient naming a signal past the key's: refused, not a panic
        // while proving. The zkey's coefficients section: a count, then
        // entries of matrix, constraint, signal (u32 each) and a value.
        let zkey_at = bundle.len() - ZKEY.len();
        let s = binfile::Sections::parse("zkey", b"zkey", ZKEY).unwrap();
        let section = s.body(4, "coefficients").unwrap();
        let at = zkey_at + (section.as_ptr() as usize - ZKEY.as_ptr() as usize);
        let mut bent = bundle.clone();
        bent[at + 4 + 8..at + 4 + 12].copy_from_slice(&1000u32.to_le_bytes());
        let e = refused(&bent);
        assert!(e.contains("signal 1000 is out of range"), "{e}");
        // A header claiming a domain of 2^30 points: refused by the H section's
        // size before a row is allocated for it.
        let header = s.body(2, "Groth16 header").unwrap();
        let at =
            zkey_at + (header.as_ptr() as usize - ZKEY.as_ptr() as usize) + 4 + 32 + 4 + 32 + 8;
        let mut bent = bundle.clone();
        bent[at..at + 4].copy_from_slice(&(1u32 << 30).to_le_bytes());
        let e = refused(&bent);
        assert!(e.contains("section H holds"), "{e}");
    }

    #[test]
    fn the_witness_is_snarkjs_witness_and_the_proof_verifies_under_the_zkeys_key() {
        let (c, pk) = circuit();
        // out = a^5 * b: four multiplications for the powers, one for out.
        assert_eq!(c.constraints(), 5);
        assert_eq!(c.public_inputs(), 2);
        let w = c.witness(&fixture_json("mul.input.json")).unwrap();
        let snarkjs_w = wtns::read(include_bytes!("../../tests/fixtures/circom/mul.wtns")).unwrap();
        assert_eq!(w, snarkjs_w, "wasmi and snarkjs compute the same witness");
        assert_eq!(wtns::read(&wtns::write(&w)).unwrap(), w);
        let public = c.public_signals(&w);
        assert_eq!(
            public,
            snarkjs::public_from_json(&fixture_json("mul.public.json")).unwrap()
        );
        assert_eq!(public, vec![Fr::from(3u64.pow(5) * 11), Fr::from(11u64)]);

        let proof = c.prove(&pk, &w).unwrap();
        crate::VerifierKey::new(pk.vk.clone())
            .unwrap()
            .verify(&public, &proof)
            .unwrap();
        // The verifying key snarkjs exported is the zkey's.
        let vk = snarkjs::vk_from_json(&fixture_json("mul.vk.json")).unwrap();
        assert_eq!(vk.vk, pk.vk);
        vk.verify(&public, &proof).unwrap();
        // And snarkjs's own proof verifies here; with another statement, neither does.
        let theirs = snarkjs::proof_from_json(&fixture_json("mul.proof.json")).unwrap();
        vk.verify(&public, &theirs).unwrap();
        let other = [public[0] + Fr::from(1u64), public[1]];
        assert!(vk.verify(&other, &proof).is_err());
        assert!(vk.verify(&other, &theirs).is_err());
    }

    /// circom's field arithmetic done natively gives the interpreter's witness.
    #[test]
    fn native_field_operations_compute_the_same_witness() {
        let native = WitnessGenerator::with_native_ops(WASM, true).unwrap();
        let interpreted = WitnessGenerator::with_native_ops(WASM, false).unwrap();
        assert!(native.native_field_ops() && !interpreted.native_field_ops());
        for (a, b) in [
            ("3", "11"),
            ("0", "5"),
            ("123456789", "987654321"),
            ("-1", "-7"),
        ] {
            let input = serde_json::json!({"a": a, "b": b});
            assert_eq!(
                native.calculate(&input).unwrap(),
                interpreted.calculate(&input).unwrap(),
                "a = {a}, b = {b}"
            );
        }
    }

    /// The rewritten module spends about the fuel the interpreter does (each
    /// native operation is charged what circom's function costs there), uses
    /// the same memory, and is held to the same bounds.
    #[test]
    fn native_field_operations_are_held_to_the_witness_limits() {
        // Large values: circom multiplies small ones without its Montgomery code.
        let input = serde_json::json!({"a": "-1", "b": "123456789123456789123456789"});
        let mut native = WitnessGenerator::with_native_ops(WASM, true).unwrap();
        let mut interpreted = WitnessGenerator::with_native_ops(WASM, false).unwrap();
        // The first run also pays for translating the functions it calls (wasmi
        // translates lazily, for fuel), which the rewrite makes smaller: compare
        // the second.
        for g in [&native, &interpreted] {
            g.calculate(&input).unwrap();
        }
        let (w, n) = native.calculate_metered(&input).unwrap();
        let (w2, i) = interpreted.calculate_metered(&input).unwrap();
        assert_eq!(w, w2);
        assert!(n.fuel <= i.fuel && n.fuel * 10 >= i.fuel * 9, "{n:?} {i:?}");
        assert_eq!(n.memory, i.memory);
        for g in [&mut native, &mut interpreted] {
            // A calibrated bound is enough...
            let limits = g.limits();
            // (What a job's statements are expected to spend, from the bound
            // alone, is the sample's: what the pool charges a job up front.)
            assert_eq!(limits.calibrated(i).expected_fuel(), i.fuel);
            g.set_limits(limits.calibrated(i));
            g.calculate(&input).unwrap();
            // ...and any below what the run needs stops it, as running out of
            // fuel, wherever that happens (in a native operation too).
            assert_stopped_below(g, &input, n, 1..32);
        }
    }

    /// `g` on `input` is stopped, as running out of fuel, by each fraction
    /// `k`/32 of the fuel the run `needs`, and by half its memory.
    fn assert_stopped_below(
        g: &mut WitnessGenerator,
        input: &serde_json::Value,
        needs: witness::Usage,
        fractions: impl IntoIterator<Item = u64>,
    ) {
        for k in fractions {
            g.set_limits(witness::Limits {
                fuel: needs.fuel * k / 32,
                memory: needs.memory,
            });
            let e = g.calculate(input).unwrap_err().to_string();
            assert!(e.contains("ran out of fuel"), "{}, {k}/32: {e}", g.engine());
        }
        g.set_limits(witness::Limits {
            fuel: needs.fuel * 2,
            memory: needs.memory / 2,
        });
        assert!(
            g.calculate(input).is_err(),
            "{}: half the memory",
            g.engine()
        );
    }

    /// The compiled engine (a rig's) computes the interpreter's witness, is
    /// held to its fuel and memory bounds, and names bad inputs and failed
    /// asserts as the interpreter does.
    #[test]
    fn the_compiled_engine_computes_the_same_witness_within_its_bounds() {
        use witness::Engine;
        let interpreted = WitnessGenerator::with_engine(WASM, Engine::Interpreter).unwrap();
        let mut compiled = WitnessGenerator::with_engine(WASM, Engine::Compiled).unwrap();
        assert_eq!(compiled.engine(), Engine::Compiled);
        assert!(compiled.native_field_ops());
        assert_eq!(compiled.witness_size(), interpreted.witness_size());
        let snarkjs_w = wtns::read(include_bytes!("../../tests/fixtures/circom/mul.wtns")).unwrap();
        assert_eq!(
            compiled.calculate(&fixture_json("mul.input.json")).unwrap(),
            snarkjs_w
        );
        for (a, b) in [("0", "5"), ("-1", "123456789123456789123456789")] {
            let input = serde_json::json!({"a": a, "b": b});
            assert_eq!(
                compiled.calculate(&input).unwrap(),
                interpreted.calculate(&input).unwrap(),
                "a = {a}, b = {b}"
            );
        }
        let e = compiled
            .calculate(&serde_json::json!({"a": "3", "b": "1", "c": "2"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no input signal `c`"), "{e}");
        let e = compiled
            .calculate(&serde_json::json!({"a": "3"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("only 1 of the circuit's 2 input values"), "{e}");

        // Bounds: what a run needs passes; less fuel or memory stops it.
        let input = serde_json::json!({"a": "-1", "b": "7"});
        let (_, used) = compiled.calculate_metered(&input).unwrap();
        assert!(used.fuel > 0 && used.memory > 0, "{used:?}");
        compiled.set_limits(witness::Limits {
            fuel: used.fuel,
            memory: used.memory,
        });
        compiled.calculate(&input).unwrap();
        assert_stopped_below(&mut compiled, &input, used, [1, 8, 16, 31]);
    }

    /// A module that loops forever is stopped by its fuel, and one that
    /// recurses forever by the engine's stack bound, in both engines (a trap,
    /// not a crash): neither a client nor a pool can take a machine's CPU or
    /// abort its process with a module.
    #[test]
    fn endless_modules_are_stopped_in_both_engines() {
        let looping = include_bytes!("../../tests/fixtures/circom/loop.wasm");
        let recursing = include_bytes!("../../tests/fixtures/circom/recurse.wasm");
        for engine in [witness::Engine::Interpreter, witness::Engine::Compiled] {
            let t = std::time::Instant::now();
            let e = WitnessGenerator::with_engine(looping, engine)
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("fuel"), "{engine}: {e}");
            // Its bound before the circuit's size is known is small.
            assert!(
                t.elapsed() < std::time::Duration::from_secs(10),
                "{engine}: {:?}",
                t.elapsed()
            );
            let e = WitnessGenerator::with_engine(recursing, engine)
                .err()
                .unwrap()
                .to_string();
            assert!(e.starts_with("wasm: "), "{engine}: {e}");
        }
    }

    #[test]
    fn bad_inputs_are_named() {
        let (c, _) = circuit();
        let err = |v: Value| c.witness(&v).unwrap_err().to_string();
        assert!(
            err(serde_json::json!({"a": "3"})).contains("only 1 of the circuit's 2 input values"),
            "{}",
            err(serde_json::json!({"a": "3"}))
        );
        let e = err(serde_json::json!({"a": "3", "b": "1", "c": "2"}));
        assert!(e.contains("no input signal `c`"), "{e}");
        let e = err(serde_json::json!({"a": ["3", "4"], "b": "1"}));
        assert!(e.contains("input `a` takes 1 value(s), 2 given"), "{e}");
        let e = err(serde_json::json!({"a": "x", "b": "1"}));
        assert!(e.contains("input `a`: \"x\" is not a decimal"), "{e}");
        let e = err(serde_json::json!(["3", "11"]));
        assert!(e.contains("must be a JSON object"), "{e}");
    }

    #[test]
    fn bad_uploads_are_refused_with_the_problem_named() {
        let load =
            |r: &[u8], w: &[u8], z: &[u8]| CircomCircuit::load(r, w, z).err().unwrap().to_string();
        let other = include_bytes!("../../tests/fixtures/circom/other.r1cs");
        let e = load(other, WASM, ZKEY);
        assert!(e.starts_with("the r1cs does not match the zkey"), "{e}");
        let e = load(R1CS, &WASM[..WASM.len() / 2], ZKEY);
        assert!(e.contains("wasm: not a valid WebAssembly module"), "{e}");
        let bls = include_bytes!("../../tests/fixtures/circom/bls12381.zkey");
        let e = load(R1CS, WASM, bls);
        assert!(
            e.starts_with("zkey is for another curve: its base field is BLS12-381 base field"),
            "{e}"
        );
        let e = load(R1CS, WASM, WASM);
        assert!(e.contains("zkey: not a zkey file"), "{e}");
        let e = load(R1CS, WASM, &ZKEY[..ZKEY.len() - 10]);
        assert!(e.contains("zkey: truncated"), "{e}");
        let e = load(&R1CS[..100], WASM, ZKEY);
        assert!(e.contains("r1cs: truncated"), "{e}");
        let e = load(ZKEY, WASM, ZKEY);
        assert!(e.contains("r1cs: not a r1cs file"), "{e}");
        // A key whose B2 point is off the curve.
        let mut bent = ZKEY.to_vec();
        let n = bent.len();
        bent[n / 2] ^= 1;
        assert!(CircomCircuit::load(R1CS, WASM, &bent).is_err());
    }

    /// Keys made here with the snarkjs reduction (our `h_query_scalars`) prove and
    /// verify: the reduction is a whole Groth16, not only a reader of snarkjs keys.
    #[test]
    fn the_circom_reduction_is_a_complete_groth16() {
        use crate::CircuitSpec;
        use ark_snark::SNARK;
        let spec = CircuitSpec::Preimage;
        let mut rng = rand::rngs::OsRng;
        let (pk, vk) =
            Groth16::<Bn254, qap::CircomReduction>::circuit_specific_setup(spec.blank(), &mut rng)
                .unwrap();
        let s = CircuitSpec::preimage_statement(Fr::from(9u64));
        let proof =
            Groth16::<Bn254, qap::CircomReduction>::prove(&pk, spec.with_statement(&s), &mut rng)
                .unwrap();
        crate::VerifierKey::new(vk)
            .unwrap()
            .verify(&s.public, &ProofBytes::encode(&proof))
            .unwrap();
    }
}
