//! The R1CS-to-QAP reduction snarkjs keys are made for.
//!
//! ark-groth16's default (libsnark) reduction divides `A·B − C` by the vanishing
//! polynomial on a coset and pairs the quotient's coefficients with powers of tau.
//! snarkjs instead evaluates `A·B − C` on the odd points of the domain of twice the
//! size (the coset `ω₂ₙ·H`) and pairs those values with the Lagrange basis of that
//! larger domain at the odd points: no division is needed, because `A·B − C`
//! vanishes on the even points (the constraint domain `H`), so summing over the odd
//! ones interpolates `h(τ)·Z(τ)` exactly. Proving with a zkey needs this witness
//! map; ZK-NOTES trap 3 is what happens without it.

use ark_ff::PrimeField;
use ark_groth16::r1cs_to_qap::{evaluate_constraint, LibsnarkReduction, R1CSToQAP};
use ark_poly::EvaluationDomain;
use ark_relations::gr1cs::{ConstraintSystemRef, Matrix, Result as R1CSResult, SynthesisError};

/// The reduction matching snarkjs's `.zkey` H query.
pub struct CircomReduction;

impl R1CSToQAP for CircomReduction {
    /// The QAP instance is the same polynomials as libsnark's (public inputs as
    /// extra rows of A); only the H query and the witness map differ.
    #[allow(clippy::type_complexity)]
    fn instance_map_with_evaluation<F: PrimeField, D: EvaluationDomain<F>>(
        cs: ConstraintSystemRef<F>,
        t: &F,
    ) -> Result<(Vec<F>, Vec<F>, Vec<F>, F, usize, usize), SynthesisError> {
        LibsnarkReduction::instance_map_with_evaluation::<F, D>(cs, t)
    }

    fn witness_map_from_matrices<F: PrimeField, D: EvaluationDomain<F>>(
        matrices: &[Matrix<F>],
        num_inputs: usize,
        num_constraints: usize,
        full_assignment: &[F],
    ) -> R1CSResult<Vec<F>> {
        let domain =
            D::new(num_constraints + num_inputs).ok_or(SynthesisError::PolynomialDegreeTooLarge)?;
        let n = domain.size();
        let mut a = vec![F::zero(); n];
        let mut b = vec![F::zero(); n];
        for (i, (a_row, b_row)) in matrices[0]
            .iter()
            .zip(&matrices[1])
            .enumerate()
            .take(num_constraints)
        {
            a[i] = evaluate_constraint(a_row, full_assignment);
            b[i] = evaluate_constraint(b_row, full_assignment);
        }
        // The public inputs (and the constant 1) as extra rows of A, as in the key.
        a[num_constraints..num_constraints + num_inputs]
            .copy_from_slice(&full_assignment[..num_inputs]);
        // On the constraint domain C equals A∘B wherever the witness satisfies the
        // constraints, and the key was made from A and B only.
        let mut c: Vec<F> = a.iter().zip(&b).map(|(x, y)| *x * y).collect();

        let omega_2n =
            F::get_root_of_unity(2 * n as u64).ok_or(SynthesisError::PolynomialDegreeTooLarge)?;
        let odd = domain
            .get_coset(omega_2n)
            .ok_or(SynthesisError::PolynomialDegreeTooLarge)?;
        for v in [&mut a, &mut b, &mut c] {
            domain.ifft_in_place(v);
            odd.fft_in_place(v);
        }
        Ok(a.iter()
            .zip(&b)
            .zip(&c)
            .map(|((a, b), c)| *a * b - c)
            .collect())
    }

    /// `L_{2j+1}(t) / δ` for the domain of size `2n`, `j < n`: the points snarkjs
    /// puts in a zkey's section 9. With these, keys made here prove and verify
    /// exactly as snarkjs's do (a unit test makes one).
    fn h_query_scalars<F: PrimeField, D: EvaluationDomain<F>>(
        max_power: usize,
        t: F,
        _zt: F,
        delta_inverse: F,
    ) -> Result<Vec<F>, SynthesisError> {
        // ark-groth16 passes the domain size minus one.
        let n = max_power + 1;
        let big = D::new(2 * n).ok_or(SynthesisError::PolynomialDegreeTooLarge)?;
        Ok(big
            .evaluate_all_lagrange_coefficients(t)
            .into_iter()
            .skip(1)
            .step_by(2)
            .map(|l| l * delta_inverse)
            .collect())
    }
}
