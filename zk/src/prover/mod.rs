//! zkpool's own Groth16 prover for BN254, behind [`CircuitKeys::prove`].
//!
//! What a mining rig has that a general prover does not: the same proving key
//! serves thousands of proofs. So this prover
//! - sums the key's A, B1, B2, L and H bases with fixed-base MSMs over
//!   precomputed window tables ([`Tables`], built once per key within a memory
//!   budget the rig sets, and cached on disk by the caller);
//! - fills buckets with batch-affine additions (one inversion per batch,
//!   Montgomery's trick) and signed-digit windows, in the variable-base MSMs too;
//! - borrows the constraint matrices instead of copying them per proof, and
//!   computes the H values on one thread while the other MSMs run on the rest.
//!
//! A key proves with arkworks (`ark-groth16`, exactly as before this prover
//! existed) until [`CircuitKeys::use_engine`] switches it over. Every proof this
//! prover makes is verified before it is returned; one that fails is made again
//! with arkworks, counted ([`CircuitKeys::engine_failures`]), and the key goes
//! back to arkworks for good: a wrong table would otherwise make every proof
//! invalid and get the rig banned.

mod batch_affine;
pub mod cpu;
mod glv;
mod msm;
mod qap;
mod tables;
#[cfg(test)]
mod tests;

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, OnceLock, RwLock,
};

use ark_bn254::{g1, g2, Fr, G1Projective, G2Projective};
use ark_ec::{short_weierstrass::Affine, CurveGroup};
use ark_ff::PrimeField;
use ark_groth16::{Groth16, Proof, ProvingKey};
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystem, Matrix, OptimizationGoal, SynthesisMode,
    R1CS_PREDICATE_LABEL,
};
use ark_std::UniformRand;
use rayon::prelude::*;

pub use tables::{BaseList, TablePlan, TableSpec, Tables, TablesError};

use crate::{circuits::CircuitSpec, proof::ProofBytes, Bn254, CircuitKeys, KeyError, Statement};
use msm::{Digits, Layout, Scalar};

/// The constraint matrices a proof is for (borrowed) and the reduction its
/// key was made for.
pub(crate) enum Matrices<'a> {
    /// A circom circuit with a snarkjs zkey: A and B, snarkjs's reduction.
    Circom {
        a: &'a Matrix<Fr>,
        b: &'a Matrix<Fr>,
    },
    /// A built-in circuit: A, B and C, arkworks' default (libsnark) reduction.
    Libsnark { matrices: &'a [Matrix<Fr>] },
}

/// The constraint system a proof is for.
pub(crate) struct Relation<'a> {
    pub matrices: Matrices<'a>,
    /// Instance variables, the constant 1 included.
    pub num_inputs: usize,
    pub num_constraints: usize,
}

/// Digits of one scalar list, cut once per window width and layout and shared
/// by the MSMs that use them (A, B1, B2 and L all take the assignment).
struct DigitCache<'a> {
    scalars: &'a [Scalar],
    cut: Vec<Digits>,
}

impl<'a> DigitCache<'a> {
    fn new(scalars: &'a [Scalar]) -> Self {
        DigitCache {
            scalars,
            cut: vec![],
        }
    }

    fn get(&mut self, c: u32, layout: Layout, glv: bool) -> &Digits {
        if let Some(i) = self
            .cut
            .iter()
            .position(|d| d.c == c && d.layout == layout && d.glv == glv)
        {
            return &self.cut[i];
        }
        self.cut.push(if glv {
            Digits::new_glv(self.scalars, c)
        } else {
            Digits::new(self.scalars, c, layout)
        });
        self.cut.last().expect("just pushed")
    }
}

/// `sum_{i >= first} s_i * bases[i - first]` with the table when there is one.
fn msm_list<P: ark_ec::short_weierstrass::SWCurveConfig>(
    bases: &[Affine<P>],
    table: Option<(&TableSpec, &[Affine<P>])>,
    digits: &mut DigitCache<'_>,
    first: usize,
) -> ark_ec::short_weierstrass::Projective<P> {
    let n = digits.scalars.len().saturating_sub(first).min(bases.len());
    match table {
        Some((spec, t)) if spec.points == bases.len() && !spec.glv => {
            let d = digits.get(spec.c, Layout::PointMajor, false);
            msm::msm_fixed(t, d, first, n)
        }
        _ => {
            let c = msm::variable_window(n);
            let d = digits.get(c, Layout::WindowMajor, false);
            msm::msm_variable(bases, d, first, n)
        }
    }
}

/// [`msm_list`] for a G1 list, whose table may be over GLV halves.
fn msm_g1(
    bases: &[ark_bn254::G1Affine],
    table: Option<(&TableSpec, &[ark_bn254::G1Affine])>,
    digits: &mut DigitCache<'_>,
    first: usize,
) -> G1Projective {
    match table {
        Some((spec, t)) if spec.points == bases.len() && spec.glv => {
            let n = digits.scalars.len().saturating_sub(first).min(bases.len());
            let d = digits.get(spec.c, Layout::PointMajor, true);
            msm::msm_fixed_glv(t, d, first, n)
        }
        _ => msm_list::<g1::Config>(bases, table, digits, first),
    }
}

fn g1_table(
    tables: Option<&Tables>,
    list: BaseList,
) -> Option<(&TableSpec, &[ark_bn254::G1Affine])> {
    match tables?.get(list)? {
        (s, tables::Table::G1(t)) => Some((s, t.as_slice())),
        _ => None,
    }
}

fn g2_table(tables: Option<&Tables>) -> Option<(&TableSpec, &[ark_bn254::G2Affine])> {
    match tables?.get(BaseList::B2)? {
        (s, tables::Table::G2(t)) => Some((s, t.as_slice())),
        _ => None,
    }
}

/// A Groth16 proof of the full assignment `w` (the constant 1, the public
/// inputs, then the private wires) with randomness `r`, `s`: the same proof
/// arkworks makes with that randomness.
pub(crate) fn prove(
    pk: &ProvingKey<Bn254>,
    tables: Option<&Tables>,
    relation: &Relation<'_>,
    w: &[Fr],
    r: Fr,
    s: Fr,
) -> Result<Proof<Bn254>, String> {
    let (num_inputs, num_constraints) = (relation.num_inputs, relation.num_constraints);
    let vars = pk.a_query.len();
    if w.len() != vars
        || pk.b_g1_query.len() != vars
        || pk.b_g2_query.len() != vars
        || pk.l_query.len() + num_inputs != vars
    {
        return Err(format!(
            "the assignment has {} values; the key has {vars} A points and {} L points for {num_inputs} inputs",
            w.len(),
            pk.l_query.len()
        ));
    }
    let scalars: Vec<Scalar> = w.par_iter().map(|x| x.into_bigint()).collect();

    // H on one side (the witness map's FFTs, then its MSM), the other four MSMs
    // on the other; rayon moves idle threads between them.
    let (h, (a, b1, b2, l)) = rayon::join(
        || -> Result<G1Projective, String> {
            let h = match &relation.matrices {
                Matrices::Circom { a, b } => qap::circom(a, b, num_inputs, num_constraints, w),
                Matrices::Libsnark { matrices } => {
                    qap::libsnark(matrices, num_inputs, num_constraints, w)
                }
            }
            .ok_or("the constraint system is too large for BN254's FFT domains")?;
            let n = h.len().min(pk.h_query.len());
            let h: Vec<Scalar> = h[..n].par_iter().map(|x| x.into_bigint()).collect();
            let mut digits = DigitCache::new(&h);
            Ok(msm_g1(
                &pk.h_query,
                g1_table(tables, BaseList::H),
                &mut digits,
                0,
            ))
        },
        || {
            let mut digits = DigitCache::new(&scalars);
            let a = msm_g1(&pk.a_query, g1_table(tables, BaseList::A), &mut digits, 0);
            let b1 = msm_g1(
                &pk.b_g1_query,
                g1_table(tables, BaseList::B1),
                &mut digits,
                0,
            );
            let b2 = msm_list::<g2::Config>(&pk.b_g2_query, g2_table(tables), &mut digits, 0);
            let l = msm_g1(
                &pk.l_query,
                g1_table(tables, BaseList::L),
                &mut digits,
                num_inputs,
            );
            (a, b1, b2, l)
        },
    );
    let h = h?;

    let g_a = a + pk.vk.alpha_g1 + pk.delta_g1 * r;
    let g_b1 = b1 + pk.beta_g1 + pk.delta_g1 * s;
    let g_b2: G2Projective = b2 + pk.vk.beta_g2 + pk.vk.delta_g2 * s;
    let g_c = g_a * s + g_b1 * r - pk.delta_g1 * (r * s) + l + h;
    Ok(Proof {
        a: g_a.into_affine(),
        b: g_b2.into_affine(),
        c: g_c.into_affine(),
    })
}

/// Where a proof's time goes: the phases of [`prove`] one after the other
/// (each on all threads), in seconds. A proof overlaps the H side with the
/// others, so it takes less than their sum.
fn phases(
    pk: &ProvingKey<Bn254>,
    tables: Option<&Tables>,
    relation: &Relation<'_>,
    w: &[Fr],
) -> Result<Vec<(&'static str, f64)>, String> {
    let mut out = vec![];
    let mut time = |what: &'static str, t: std::time::Instant| {
        out.push((what, t.elapsed().as_secs_f64()));
    };
    let t = std::time::Instant::now();
    let scalars: Vec<Scalar> = w.par_iter().map(|x| x.into_bigint()).collect();
    time("assignment out of Montgomery form", t);
    let t = std::time::Instant::now();
    let h = match &relation.matrices {
        Matrices::Circom { a, b } => {
            qap::circom(a, b, relation.num_inputs, relation.num_constraints, w)
        }
        Matrices::Libsnark { matrices } => {
            qap::libsnark(matrices, relation.num_inputs, relation.num_constraints, w)
        }
    }
    .ok_or("the constraint system is too large for BN254's FFT domains")?;
    time("witness map (A·w, B·w, FFTs)", t);
    let t = std::time::Instant::now();
    let n = h.len().min(pk.h_query.len());
    let h: Vec<Scalar> = h[..n].par_iter().map(|x| x.into_bigint()).collect();
    time("H values out of Montgomery form", t);
    let mut digits = DigitCache::new(&scalars);
    let t = std::time::Instant::now();
    let _ = std::hint::black_box(msm_g1(
        &pk.a_query,
        g1_table(tables, BaseList::A),
        &mut digits,
        0,
    ));
    time("MSM A (G1), digits included", t);
    let t = std::time::Instant::now();
    let _ = std::hint::black_box(msm_g1(
        &pk.b_g1_query,
        g1_table(tables, BaseList::B1),
        &mut digits,
        0,
    ));
    time("MSM B1 (G1)", t);
    let t = std::time::Instant::now();
    let _ = std::hint::black_box(msm_list::<g2::Config>(
        &pk.b_g2_query,
        g2_table(tables),
        &mut digits,
        0,
    ));
    time("MSM B2 (G2)", t);
    let t = std::time::Instant::now();
    let _ = std::hint::black_box(msm_g1(
        &pk.l_query,
        g1_table(tables, BaseList::L),
        &mut digits,
        relation.num_inputs,
    ));
    time("MSM L (G1)", t);
    let mut digits = DigitCache::new(&h);
    let t = std::time::Instant::now();
    let _ = std::hint::black_box(msm_g1(
        &pk.h_query,
        g1_table(tables, BaseList::H),
        &mut digits,
        0,
    ));
    time("MSM H (G1), digits included", t);
    Ok(out)
}

/// A built-in circuit's constraint matrices, synthesised once per key.
struct BuiltinR1cs {
    matrices: Vec<Matrix<Fr>>,
    num_inputs: usize,
    num_constraints: usize,
}

fn builtin_r1cs(spec: CircuitSpec) -> Result<BuiltinR1cs, String> {
    let cs = ConstraintSystem::<Fr>::new_ref();
    // The same settings as ark-groth16's key generator, so the matrices are the
    // ones the key was made from.
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    cs.set_mode(SynthesisMode::Setup);
    spec.blank()
        .generate_constraints(cs.clone())
        .map_err(|e| e.to_string())?;
    cs.finalize();
    let mut all = cs.to_matrices().map_err(|e| e.to_string())?;
    let matrices = all
        .remove(R1CS_PREDICATE_LABEL)
        .ok_or("the circuit has no R1CS constraints")?;
    Ok(BuiltinR1cs {
        matrices,
        num_inputs: cs.num_instance_variables(),
        num_constraints: cs.num_constraints(),
    })
}

/// A built-in statement's full assignment, synthesised without building
/// constraints (the matrices are known).
fn builtin_assignment(spec: CircuitSpec, s: &Statement) -> Result<Vec<Fr>, String> {
    let cs = ConstraintSystem::<Fr>::new_ref();
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    cs.set_mode(SynthesisMode::Prove {
        construct_matrices: false,
        generate_lc_assignments: false,
    });
    spec.with_statement(s)
        .generate_constraints(cs.clone())
        .map_err(|e| e.to_string())?;
    cs.finalize();
    let mut w = cs.instance_assignment().map_err(|e| e.to_string())?;
    w.extend(cs.witness_assignment().map_err(|e| e.to_string())?);
    Ok(w)
}

/// How one key's proofs are made (kept in [`CircuitKeys`]).
#[derive(Default)]
pub(crate) struct EngineState {
    /// `None`: arkworks. `Some(tables)`: this prover, with tables if any.
    mode: RwLock<Option<Option<Arc<Tables>>>>,
    failures: AtomicU64,
    builtin: OnceLock<Result<BuiltinR1cs, String>>,
}

/// A statement's assignment, computed ahead of its proof (see
/// [`CircuitKeys::witness`]).
pub struct Witness {
    public: Vec<Fr>,
    /// The constant 1, the public inputs, then the private wires.
    full: Option<Vec<Fr>>,
    /// A built-in circuit's statement: arkworks synthesises it again.
    statement: Option<Statement>,
}

impl Witness {
    /// The statement's public inputs.
    pub fn public(&self) -> &[Fr] {
        &self.public
    }
}

impl CircuitKeys {
    /// Proves with this crate's prover from now on, with `tables` if given (they
    /// must be for this key: [`Tables::build`] or [`Tables::read`] with its `pk`).
    pub fn use_engine(&self, tables: Option<Arc<Tables>>) {
        *self
            .engine
            .mode
            .write()
            .expect("the engine lock is never poisoned") = Some(tables);
    }

    /// Proves with arkworks from now on (the default).
    pub fn use_arkworks(&self) {
        *self
            .engine
            .mode
            .write()
            .expect("the engine lock is never poisoned") = None;
    }

    /// Whether this crate's prover is in use, and with how many table bytes.
    pub fn engine(&self) -> Option<u64> {
        self.engine
            .mode
            .read()
            .expect("the engine lock is never poisoned")
            .as_ref()
            .map(|t| t.as_ref().map_or(0, |t| t.bytes()))
    }

    /// Proofs of this crate's prover that did not verify (each was made again
    /// with arkworks, and the key went back to arkworks).
    pub fn engine_failures(&self) -> u64 {
        self.engine.failures.load(Ordering::Relaxed)
    }

    /// The tables this key would get within `budget` bytes.
    pub fn table_plan(&self, budget: u64) -> TablePlan {
        TablePlan::new(&self.pk, budget)
    }

    /// A statement's full assignment: circom's witness generator (checked
    /// against every constraint and the announced public signals), or the
    /// built-in circuit synthesised. A rig computes the next statement's
    /// witness while the current proof runs.
    pub fn witness(&self, s: &Statement) -> Result<Witness, KeyError> {
        if self.circom.is_some() {
            return Ok(Witness {
                public: s.public.clone(),
                full: Some(self.circom_witness(s)?),
                statement: None,
            });
        }
        // arkworks synthesises the statement itself; this prover needs the
        // assignment.
        let full = match self.engine() {
            Some(_) => Some(builtin_assignment(self.spec, s).map_err(KeyError::Synthesis)?),
            None => None,
        };
        Ok(Witness {
            public: s.public.clone(),
            full,
            statement: Some(s.clone()),
        })
    }

    /// Proves a witness from [`CircuitKeys::witness`], with randomness from
    /// the OS CSPRNG.
    pub fn prove_witness(&self, w: &Witness) -> Result<ProofBytes, KeyError> {
        let mode = self
            .engine
            .mode
            .read()
            .expect("the engine lock is never poisoned")
            .clone();
        let mut rng = rand::rngs::OsRng;
        let (r, s) = (Fr::rand(&mut rng), Fr::rand(&mut rng));
        let Some(tables) = mode else {
            return self.prove_arkworks(w, r, s);
        };
        let full = self.assignment(w)?;
        let proof = self.prove_engine(&full, tables.as_deref(), r, s)?;
        if self.verifier.verify_decoded(&w.public, &proof).is_ok() {
            return Ok(ProofBytes::encode(&proof));
        }
        // Ours does not verify. An unsatisfied witness makes no valid proof with
        // any prover (the doc of `CircuitKeys::prove`); otherwise it is ours.
        match self.satisfied(&full) {
            Some(false) => Ok(ProofBytes::encode(&proof)),
            Some(true) => {
                self.engine_failed();
                self.prove_arkworks(w, r, s)
            }
            // A rig's circom circuit without C: arkworks decides. Its proof
            // verifying means the witness is good and ours was wrong.
            None => {
                let theirs = self.prove_arkworks(w, r, s)?;
                if self.verifier.verify(&w.public, &theirs).is_ok() {
                    self.engine_failed();
                }
                Ok(theirs)
            }
        }
    }

    fn engine_failed(&self) {
        self.engine.failures.fetch_add(1, Ordering::Relaxed);
        self.use_arkworks();
    }

    /// The witness's full assignment, synthesising a built-in statement when
    /// the witness was computed for arkworks.
    fn assignment<'w>(&self, w: &'w Witness) -> Result<std::borrow::Cow<'w, [Fr]>, KeyError> {
        match (&w.full, &w.statement) {
            (Some(f), _) => Ok(f.as_slice().into()),
            (None, Some(st)) => Ok(builtin_assignment(self.spec, st)
                .map_err(KeyError::Synthesis)?
                .into()),
            (None, None) => Err(KeyError::Synthesis(
                "a witness with neither assignment nor statement".into(),
            )),
        }
    }

    /// Whether `full` satisfies every constraint; `None` when that cannot be
    /// told here (a rig's circom circuit, which does not hold C).
    fn satisfied(&self, full: &[Fr]) -> Option<bool> {
        if let Some(c) = &self.circom {
            c.r1cs.c.as_ref()?;
            return Some(full.len() == c.r1cs.wires && c.r1cs.unsatisfied(full).is_none());
        }
        let Some(Ok(r1cs)) = self.engine.builtin.get() else {
            return Some(false);
        };
        let eval = |row: &[(Fr, usize)]| -> Option<Fr> {
            row.iter()
                .map(|(c, i)| full.get(*i).map(|x| *c * x))
                .sum::<Option<Fr>>()
        };
        let [a, b, c] = &r1cs.matrices[..] else {
            return Some(false);
        };
        Some(a.iter().zip(b).zip(c).all(|((a, b), c)| {
            matches!((eval(a), eval(b), eval(c)), (Some(a), Some(b), Some(c)) if a * b == c)
        }))
    }

    /// Where this prover's time goes for `w`, phase by phase (see the
    /// benchmarks): each phase alone on all threads, in seconds.
    pub fn prove_phases(&self, w: &Witness) -> Result<Vec<(&'static str, f64)>, KeyError> {
        let tables = self
            .engine
            .mode
            .read()
            .expect("the engine lock is never poisoned")
            .clone()
            .flatten();
        let full = self.assignment(w)?;
        self.with_relation(|relation| phases(&self.pk, tables.as_deref(), relation, &full))
    }

    /// Runs `f` with this key's relation (circom's matrices, or the built-in
    /// circuit's, synthesised once).
    fn with_relation<T>(
        &self,
        f: impl FnOnce(&Relation<'_>) -> Result<T, String>,
    ) -> Result<T, KeyError> {
        let synth = |e: String| KeyError::Synthesis(e);
        if let Some(c) = &self.circom {
            return f(&Relation {
                matrices: Matrices::Circom {
                    a: &c.r1cs.ab[0],
                    b: &c.r1cs.ab[1],
                },
                num_inputs: c.public_inputs() + 1,
                num_constraints: c.r1cs.constraints(),
            })
            .map_err(synth);
        }
        let r1cs = self
            .engine
            .builtin
            .get_or_init(|| builtin_r1cs(self.spec))
            .as_ref()
            .map_err(|e| synth(e.clone()))?;
        f(&Relation {
            matrices: Matrices::Libsnark {
                matrices: &r1cs.matrices,
            },
            num_inputs: r1cs.num_inputs,
            num_constraints: r1cs.num_constraints,
        })
        .map_err(synth)
    }

    fn prove_engine(
        &self,
        full: &[Fr],
        tables: Option<&Tables>,
        r: Fr,
        s: Fr,
    ) -> Result<Proof<Bn254>, KeyError> {
        self.with_relation(|relation| prove(&self.pk, tables, relation, full, r, s))
    }

    /// The arkworks prover (ark-groth16), as every proof was made before this
    /// module: circom circuits from the witness and the r1cs's matrices, the
    /// built-in circuits by synthesis.
    fn prove_arkworks(&self, w: &Witness, r: Fr, s: Fr) -> Result<ProofBytes, KeyError> {
        let proof = match (&self.circom, &w.full, &w.statement) {
            (Some(c), Some(full), _) => return Ok(c.prove_with(&self.pk, full, r, s)?),
            (None, _, Some(st)) => Groth16::<Bn254>::create_proof_with_reduction(
                self.spec.with_statement(st),
                &self.pk,
                r,
                s,
            )
            .map_err(|e| KeyError::Synthesis(e.to_string()))?,
            _ => {
                return Err(KeyError::Synthesis(
                    "the witness is not for this key's kind of circuit".into(),
                ))
            }
        };
        Ok(ProofBytes::encode(&proof))
    }
}
