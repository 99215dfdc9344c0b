//! Makes a snarkjs-format Groth16 `.zkey` (and `verification_key.json`) for a
//! circom `.r1cs` from a seeded arkworks setup with the snarkjs reduction.
//!
//! For benchmarks only: snarkjs needs a prepared powers-of-tau file for a zkey,
//! and `powersoftau prepare phase2` takes about 35 minutes at 2^16 on this
//! machine and far longer at 2^18. This makes an equivalent key in seconds; the
//! seed is the setup's toxic waste, so anyone who knows it can forge proofs.
//! snarkjs, rapidsnark and zkpool all prove with the key it writes, and their
//! proofs verify under the verifying key it writes.
//!
//! ```text
//! cargo run --release -p zkpool-zk --example circom_zkey -- C.r1cs C.zkey vk.json [seed]
//! ```

use std::io::Write;

use ark_bn254::{Bn254, Fq, Fr, G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::{BigInt, PrimeField};
use ark_groth16::{Groth16, ProvingKey};
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystemRef, LinearCombination, SynthesisError, Variable,
};
use ark_std::UniformRand;
use rand::{rngs::StdRng, SeedableRng};
use zk::circom::{qap::CircomReduction, R1cs};

/// The r1cs replayed as arkworks constraints: wire `i` is arkworks variable `i`
/// (the constant, then the public signals as instance variables, then the rest).
struct Replay<'a>(&'a R1cs);

impl ConstraintSynthesizer<Fr> for Replay<'_> {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let r = self.0;
        let mut vars = vec![Variable::One];
        for _ in 0..r.public() {
            vars.push(cs.new_input_variable(|| Ok(Fr::from(0u64)))?);
        }
        for _ in r.public() + 1..r.wires {
            vars.push(cs.new_witness_variable(|| Ok(Fr::from(0u64)))?);
        }
        let lc = |row: &[(Fr, usize)]| {
            LinearCombination(row.iter().map(|(c, w)| (*c, vars[*w])).collect())
        };
        let c = r.c.as_ref().ok_or(SynthesisError::AssignmentMissing)?;
        for ((a, b), c) in r.a().iter().zip(r.b()).zip(c) {
            cs.enforce_r1cs_constraint(|| lc(a), || lc(b), || lc(c))?;
        }
        Ok(())
    }
}

fn le(b: &BigInt<4>, out: &mut Vec<u8>) {
    for l in b.0 {
        out.extend_from_slice(&l.to_le_bytes());
    }
}

/// A base-field element as zkeys store it: its Montgomery form.
fn fq(x: &Fq, out: &mut Vec<u8>) {
    le(&x.0, out);
}

fn g1(p: &G1Affine, out: &mut Vec<u8>) {
    match p.xy() {
        Some((x, y)) => {
            fq(&x, out);
            fq(&y, out);
        }
        None => out.extend_from_slice(&[0u8; 64]),
    }
}

fn g2(p: &G2Affine, out: &mut Vec<u8>) {
    match p.xy() {
        Some((x, y)) => {
            for c in [x.c0, x.c1, y.c0, y.c1] {
                fq(&c, out);
            }
        }
        None => out.extend_from_slice(&[0u8; 128]),
    }
}

fn zkey(r1cs: &R1cs, pk: &ProvingKey<Bn254>) -> Vec<u8> {
    let public = r1cs.public();
    let domain = (r1cs.constraints() + public + 1).next_power_of_two();
    let mut sections: Vec<(u32, Vec<u8>)> = vec![];
    sections.push((1, 1u32.to_le_bytes().to_vec()));

    let mut h = vec![];
    h.extend_from_slice(&32u32.to_le_bytes());
    le(&Fq::MODULUS, &mut h);
    h.extend_from_slice(&32u32.to_le_bytes());
    le(&Fr::MODULUS, &mut h);
    for n in [r1cs.wires, public, domain] {
        h.extend_from_slice(&(n as u32).to_le_bytes());
    }
    g1(&pk.vk.alpha_g1, &mut h);
    g1(&pk.beta_g1, &mut h);
    g2(&pk.vk.beta_g2, &mut h);
    g2(&pk.vk.gamma_g2, &mut h);
    g1(&pk.delta_g1, &mut h);
    g2(&pk.vk.delta_g2, &mut h);
    sections.push((2, h));

    let points = |ps: &[G1Affine]| {
        let mut out = Vec::with_capacity(64 * ps.len());
        ps.iter().for_each(|p| g1(p, &mut out));
        out
    };
    sections.push((3, points(&pk.vk.gamma_abc_g1)));

    // Coefficients are stored as c * R^2 mod r: the Montgomery form of c * R.
    let r = Fr::from_bigint(Fr::R).expect("R mod r is below r");
    let mut coefs = vec![];
    let mut count = 0u32;
    let mut coef = |m: u32, i: usize, w: usize, c: Fr| {
        coefs.extend_from_slice(&m.to_le_bytes());
        coefs.extend_from_slice(&(i as u32).to_le_bytes());
        coefs.extend_from_slice(&(w as u32).to_le_bytes());
        le(&(c * r).0, &mut coefs);
        count += 1;
    };
    for (m, matrix) in r1cs.ab.iter().enumerate() {
        for (i, row) in matrix.iter().enumerate() {
            for (c, w) in row {
                coef(m as u32, i, *w, *c);
            }
        }
    }
    for s in 0..=public {
        coef(0, r1cs.constraints() + s, s, Fr::from(1u64));
    }
    let mut c4 = count.to_le_bytes().to_vec();
    c4.extend_from_slice(&coefs);
    sections.push((4, c4));

    sections.push((5, points(&pk.a_query)));
    sections.push((6, points(&pk.b_g1_query)));
    let mut b2 = Vec::with_capacity(128 * pk.b_g2_query.len());
    pk.b_g2_query.iter().for_each(|p| g2(p, &mut b2));
    sections.push((7, b2));
    sections.push((8, points(&pk.l_query)));
    sections.push((9, points(&pk.h_query)));
    // Section 10 (the ceremony's contributions): none.
    let mut c10 = vec![0u8; 64];
    c10.extend_from_slice(&0u32.to_le_bytes());
    sections.push((10, c10));

    let mut out = b"zkey".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for (kind, body) in sections {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: circom_zkey C.r1cs OUT.zkey verification_key.json [seed]".into());
    }
    let seed: u64 = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let r1cs = R1cs::parse(&std::fs::read(&args[1])?)?;
    let t = std::time::Instant::now();
    // arkworks' own setup draws random generators; a zkey's points are over
    // the standard ones (snarkjs, rapidsnark and the pool's key check assume
    // them: with random ones the pool refuses the key, its beta in G1 not
    // being its beta in G2).
    let mut rng = StdRng::seed_from_u64(seed);
    let mut scalar = || Fr::rand(&mut rng);
    let (alpha, beta, gamma, delta) = (scalar(), scalar(), scalar(), scalar());
    let pk = Groth16::<Bn254, CircomReduction>::generate_parameters_with_qap(
        Replay(&r1cs),
        alpha,
        beta,
        gamma,
        delta,
        G1Affine::generator().into_group(),
        G2Affine::generator().into_group(),
        &mut StdRng::seed_from_u64(seed.wrapping_add(1)),
    )?;
    let vk = pk.vk.clone();
    eprintln!(
        "setup: {} constraints, {} wires, {:.1} s",
        r1cs.constraints(),
        r1cs.wires,
        t.elapsed().as_secs_f64()
    );
    std::fs::File::create(&args[2])?.write_all(&zkey(&r1cs, &pk))?;
    let vk = zk::VerifierKey::new(vk)?;
    std::fs::write(
        &args[3],
        serde_json::to_vec_pretty(&zk::snarkjs::vk_json(&vk))?,
    )?;
    Ok(())
}
