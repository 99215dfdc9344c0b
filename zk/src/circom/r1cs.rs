//! circom's `.r1cs` file: the header (wire and signal counts) and the constraints.
//!
//! Wire order is circom's: the constant 1, public outputs, public inputs, private
//! inputs, then internal signals, which is also the order of the witness the
//! `.wasm` generator computes and of the signals in a snarkjs zkey.

use ark_bn254::Fr;
use ark_relations::gr1cs::Matrix;

use super::{
    binfile::{modulus_le, name_prime, Reader, Sections},
    CircomError,
};

const FILE: &str = "r1cs";

/// A parsed `.r1cs` file over BN254's scalar field.
#[derive(Debug, Clone)]
pub struct R1cs {
    /// Wires, the constant 1 included.
    pub wires: usize,
    pub public_outputs: usize,
    pub public_inputs: usize,
    pub private_inputs: usize,
    /// The constraint matrices `A` and `B`, then `C`, one row per constraint,
    /// each row a list of (coefficient, wire). A and B sit side by side because
    /// that is how ark-groth16 takes them (`&[Matrix]`): proving borrows them.
    pub ab: [Matrix<Fr>; 2],
    /// `None` on a rig ([`super::CircomCircuit::for_proving`]): proving needs A
    /// and B only (snarkjs's reduction), which the zkey holds, and C is most of
    /// a Poseidon circuit's terms. Without it witnesses are not checked against
    /// the constraints here; each proof is checked instead.
    pub c: Option<Matrix<Fr>>,
}

/// The counts in an r1cs header.
pub(crate) struct Header {
    pub wires: usize,
    pub public_outputs: usize,
    pub public_inputs: usize,
    pub private_inputs: usize,
    pub constraints: usize,
}

impl R1cs {
    pub fn parse(bytes: &[u8]) -> Result<Self, CircomError> {
        let s = Sections::parse(FILE, b"r1cs", bytes)?;
        let Header {
            wires,
            public_outputs,
            public_inputs,
            private_inputs,
            constraints,
        } = Self::header(&s)?;
        let mut r = s.section(2, "constraints")?;
        // Each constraint takes at least 12 bytes (three empty terms lists): bound the
        // allocation by what the file can hold, not by what its header claims.
        if constraints > r.remaining() / 12 {
            return Err(CircomError::format(
                FILE,
                format!("truncated: the header says {constraints} constraints, the constraints section is too short for them"),
            ));
        }
        let mut m = [
            Vec::with_capacity(constraints),
            Vec::with_capacity(constraints),
            Vec::with_capacity(constraints),
        ];
        for i in 0..constraints {
            for (which, matrix) in m.iter_mut().enumerate() {
                let terms = r.u32()? as usize;
                if terms > r.remaining() / 36 {
                    return Err(CircomError::format(
                        FILE,
                        format!("truncated in constraint {i}: {terms} terms do not fit"),
                    ));
                }
                let mut row = Vec::with_capacity(terms);
                for _ in 0..terms {
                    let wire = r.u32()? as usize;
                    if wire >= wires {
                        return Err(CircomError::format(
                            FILE,
                            format!("constraint {i} uses wire {wire}, but there are {wires} wires"),
                        ));
                    }
                    let coef = r.fr(&format!(
                        "constraint {i} {} coefficient",
                        ["A", "B", "C"][which]
                    ))?;
                    row.push((coef, wire));
                }
                matrix.push(row);
            }
        }
        let [a, b, c] = m;
        Ok(R1cs {
            wires,
            public_outputs,
            public_inputs,
            private_inputs,
            ab: [a, b],
            c: Some(c),
        })
    }

    /// An r1cs file's constraints and public signals, from its header alone.
    pub fn counts_from_file(path: &std::path::Path) -> Result<(usize, usize), CircomError> {
        let io = |e: std::io::Error| CircomError::format(FILE, format!("{}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let h = Self::header(&Sections::open(FILE, b"r1cs", file, 0, len)?)?;
        Ok((h.constraints, h.public_outputs + h.public_inputs))
    }

    /// The header's counts, checked against each other.
    pub(crate) fn header(s: &Sections<'_>) -> Result<Header, CircomError> {
        if s.version != 1 {
            return Err(CircomError::format(
                FILE,
                format!(
                    "version {} is not supported (circom 2 writes version 1)",
                    s.version
                ),
            ));
        }
        let body = s.body(1, "header")?;
        let mut h = Reader::new(FILE, &body);
        let n8 = h.u32()? as usize;
        let prime = h.bytes(n8)?;
        if n8 != 32 || prime != modulus_le::<Fr>() {
            return Err(CircomError::Curve {
                file: FILE,
                detail: format!(
                    "its prime is {}; compile with circom's default prime (--prime bn128)",
                    name_prime(prime)
                ),
            });
        }
        let wires = h.u32()? as usize;
        let public_outputs = h.u32()? as usize;
        let public_inputs = h.u32()? as usize;
        let private_inputs = h.u32()? as usize;
        let _labels = h.u64()?;
        let constraints = h.u32()? as usize;
        if 1 + public_outputs + public_inputs + private_inputs > wires {
            return Err(CircomError::format(
                FILE,
                format!(
                    "the header lists {} input and output signals but only {wires} wires",
                    public_outputs + public_inputs + private_inputs
                ),
            ));
        }
        Ok(Header {
            wires,
            public_outputs,
            public_inputs,
            private_inputs,
            constraints,
        })
    }

    pub fn a(&self) -> &Matrix<Fr> {
        &self.ab[0]
    }

    pub fn b(&self) -> &Matrix<Fr> {
        &self.ab[1]
    }

    pub fn constraints(&self) -> usize {
        self.ab[0].len()
    }

    /// Public signals: outputs, then public inputs (what `public.json` lists).
    pub fn public(&self) -> usize {
        self.public_outputs + self.public_inputs
    }

    /// The first constraint `witness` does not satisfy, if any; `None` too
    /// when C is not held (see [`R1cs::c`]).
    pub fn unsatisfied(&self, witness: &[Fr]) -> Option<usize> {
        let c = self.c.as_ref()?;
        let eval = |row: &[(Fr, usize)]| -> Fr { row.iter().map(|(c, w)| *c * witness[*w]).sum() };
        (0..self.constraints()).find(|&i| eval(&self.a()[i]) * eval(&self.b()[i]) != eval(&c[i]))
    }
}
