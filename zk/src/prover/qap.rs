//! The witness maps: from the R1CS matrices and a full assignment to the
//! values the H query is paired with.
//!
//! The matrices are borrowed, never copied: `ark-groth16`'s
//! `create_proof_with_reduction_and_matrices` takes `&[Matrix]`, an array of
//! owned matrices, which made the circom prover clone A and B (about 40 MB at
//! 2^16 constraints) for every proof.

use ark_bn254::Fr;
use ark_ff::{FftField, One, Zero};
use ark_groth16::r1cs_to_qap::{LibsnarkReduction, R1CSToQAP};
use ark_poly::{EvaluationDomain, GeneralEvaluationDomain, Radix2EvaluationDomain};
use ark_relations::gr1cs::Matrix;
use rayon::prelude::*;

/// Rows per parallel task of a matrix-vector product.
const ROWS: usize = 2048;

/// `out[i] = row_i · w` for the first `out.len()` rows.
fn mat_vec(m: &Matrix<Fr>, w: &[Fr], out: &mut [Fr]) {
    out.par_chunks_mut(ROWS)
        .zip(m.par_chunks(ROWS))
        .for_each(|(out, rows)| {
            for (o, row) in out.iter_mut().zip(rows) {
                let mut acc = Fr::zero();
                for (c, i) in row {
                    if c.is_one() {
                        acc += w[*i];
                    } else {
                        acc += w[*i] * c;
                    }
                }
                *o = acc;
            }
        });
}

/// snarkjs's witness map (see [`crate::circom::qap`]): `A·B − C` on the odd
/// points of the domain of twice the size, where `C = A∘B` on the domain (the
/// witness satisfies the constraints) and the public signals are extra rows of A.
pub(crate) fn circom(
    a_m: &Matrix<Fr>,
    b_m: &Matrix<Fr>,
    num_inputs: usize,
    num_constraints: usize,
    w: &[Fr],
) -> Option<Vec<Fr>> {
    let domain = Radix2EvaluationDomain::<Fr>::new(num_constraints + num_inputs)?;
    let n = domain.size();
    let mut a = vec![Fr::zero(); n];
    let mut b = vec![Fr::zero(); n];
    rayon::join(
        || mat_vec(a_m, w, &mut a[..num_constraints]),
        || mat_vec(b_m, w, &mut b[..num_constraints]),
    );
    a[num_constraints..num_constraints + num_inputs].copy_from_slice(&w[..num_inputs]);
    let mut c: Vec<Fr> = a.par_iter().zip(&b).map(|(x, y)| *x * y).collect();

    let omega_2n = Fr::get_root_of_unity(2 * n as u64)?;
    let odd = domain.get_coset(omega_2n)?;
    [&mut a, &mut b, &mut c].into_par_iter().for_each(|v| {
        domain.ifft_in_place(v);
        odd.fft_in_place(v);
    });
    Some(
        a.par_iter()
            .zip(&b)
            .zip(&c)
            .map(|((a, b), c)| *a * b - c)
            .collect(),
    )
}

/// arkworks' default (libsnark) witness map, for the built-in circuits' keys.
pub(crate) fn libsnark(
    matrices: &[Matrix<Fr>],
    num_inputs: usize,
    num_constraints: usize,
    w: &[Fr],
) -> Option<Vec<Fr>> {
    LibsnarkReduction::witness_map_from_matrices::<Fr, GeneralEvaluationDomain<Fr>>(
        matrices,
        num_inputs,
        num_constraints,
        w,
    )
    .ok()
}
