//! circom's field arithmetic, moved out of the interpreter.
//!
//! A circom witness generator does its BN254 arithmetic in WebAssembly: the
//! runtime circom links into every `.wasm` (wasmcurves' `F1m`) multiplies
//! Montgomery-form elements with 32-bit limbs, about two thousand instructions
//! per product, which wasmi interprets one by one. Profiled on a chain of 300
//! Poseidon hashes, that multiplication is most of the 0.6 s a witness took.
//!
//! [`patch`] rewrites the module so the bodies of `Fr_F1m_mul`,
//! `Fr_F1m_square`, `Fr_F1m_add` and `Fr_F1m_sub` call host functions
//! (`zkpool.fr_mul`, ...) that do the same operation natively on the same
//! memory: each takes pointers to 32-byte little-endian Montgomery values
//! (R = 2^256, the same representation arkworks keeps) and writes the canonical
//! result. Nothing else changes. The functions are found by the names in the
//! module's name section and their exact signatures; a module without them is
//! left as it is. A wrong patch could only change the witness, and every
//! witness is checked against every constraint of the r1cs before it is used.

use std::collections::HashMap;

use ark_bn254::Fr;
use ark_ff::{BigInt, Field, PrimeField};
use wasm_encoder::reencode::{self, Reencode};
use wasmparser::{Name, Parser, Payload, TypeRef, ValType};

/// The host module the patched functions import from.
pub(crate) const HOST_MODULE: &str = "zkpool";

/// A field operation the host does instead of the module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Mul,
    Square,
    Add,
    Sub,
}

impl Op {
    const ALL: [(&'static str, Op); 4] = [
        ("Fr_F1m_mul", Op::Mul),
        ("Fr_F1m_square", Op::Square),
        ("Fr_F1m_add", Op::Add),
        ("Fr_F1m_sub", Op::Sub),
    ];

    /// The host function's name in [`HOST_MODULE`].
    pub fn import_name(self) -> &'static str {
        match self {
            Op::Mul => "fr_mul",
            Op::Square => "fr_square",
            Op::Add => "fr_add",
            Op::Sub => "fr_sub",
        }
    }

    /// The fuel the host charges for the operation: a little under what wasmi 2
    /// spends interpreting circom's own function (measured on the runtime in
    /// circom 2's output, once translated: 2,009 for a product, 2,125 for a
    /// square, 126-127 for a sum or difference, up to about 290 when it must
    /// reduce). So a rewritten module spends about the fuel the original would,
    /// and the witness bounds ([`super::witness::Limits`]: a circuit's
    /// size-based bound, its calibration, the pool's fuel budget per job) mean
    /// the same with or without the rewrite; and a module cannot buy more CPU
    /// per unit of fuel by calling these in a loop (natively they take tens of
    /// nanoseconds, far less than the instructions they stand for).
    pub fn fuel(self) -> u64 {
        match self {
            Op::Mul | Op::Square => 2_000,
            Op::Add | Op::Sub => 120,
        }
    }

    /// Pointer parameters: the operands, then the result.
    fn params(self) -> usize {
        match self {
            Op::Square => 2,
            _ => 3,
        }
    }

    /// The operation on Montgomery representations.
    fn apply(self, a: Fr, b: Fr) -> Fr {
        match self {
            Op::Mul => a * b,
            Op::Square => a.square(),
            Op::Add => a + b,
            Op::Sub => a - b,
        }
    }
}

/// Reads the element whose Montgomery representation is at `at`, reducing a
/// value at or above the modulus (wasmcurves keeps them reduced; this keeps the
/// host total).
fn load(memory: &[u8], at: i32) -> Option<Fr> {
    let at = at as u32 as usize;
    let bytes = memory.get(at..at.checked_add(32)?)?;
    let mut limbs = [0u64; 4];
    for (i, l) in limbs.iter_mut().enumerate() {
        *l = u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().ok()?);
    }
    let mut raw = BigInt::new(limbs);
    while raw >= Fr::MODULUS {
        ark_ff::BigInteger::sub_with_borrow(&mut raw, &Fr::MODULUS);
    }
    Some(Fr::new_unchecked(raw))
}

fn store(memory: &mut [u8], at: i32, value: Fr) -> Option<()> {
    let at = at as u32 as usize;
    let out = memory.get_mut(at..at.checked_add(32)?)?;
    for (i, l) in value.0 .0.iter().enumerate() {
        out[8 * i..8 * i + 8].copy_from_slice(&l.to_le_bytes());
    }
    Some(())
}

/// Runs `op` on the module's memory: operands at `x` (and `y`), result at `r`.
/// `None` when a pointer is out of bounds (the caller traps).
pub(crate) fn run(op: Op, memory: &mut [u8], x: i32, y: i32, r: i32) -> Option<()> {
    let a = load(memory, x)?;
    let b = if op == Op::Square {
        a
    } else {
        load(memory, y)?
    };
    store(memory, r, op.apply(a, b))
}

/// The rewrite: host imports appended after the module's own, every defined
/// function's index moved up by their number, and the targets' bodies replaced.
struct Patcher {
    imported: u32,
    /// Host imports to add: (op, type index).
    added: Vec<(Op, u32)>,
    /// Defined function index (in the original numbering) to host import index.
    targets: HashMap<u32, (Op, u32)>,
    /// Function bodies seen so far.
    bodies: u32,
}

impl Reencode for Patcher {
    type Error = std::convert::Infallible;

    fn function_index(&mut self, func: u32) -> u32 {
        if func < self.imported {
            func
        } else {
            func + self.added.len() as u32
        }
    }

    fn parse_import_section(
        &mut self,
        imports: &mut wasm_encoder::ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_import_section(self, imports, section)?;
        for (op, ty) in &self.added {
            imports.import(
                HOST_MODULE,
                op.import_name(),
                wasm_encoder::EntityType::Function(*ty),
            );
        }
        Ok(())
    }

    fn parse_function_body(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        func: wasmparser::FunctionBody<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        let index = self.imported + self.bodies;
        self.bodies += 1;
        let Some(&(op, import)) = self.targets.get(&index) else {
            return reencode::utils::parse_function_body(self, code, func);
        };
        let mut f = wasm_encoder::Function::new([]);
        for p in 0..op.params() as u32 {
            f.instruction(&wasm_encoder::Instruction::LocalGet(p));
        }
        f.instruction(&wasm_encoder::Instruction::Call(import));
        f.instruction(&wasm_encoder::Instruction::End);
        code.function(&f);
        Ok(())
    }

    fn parse_custom_section(
        &mut self,
        module: &mut wasm_encoder::Module,
        section: wasmparser::CustomSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        // Function names are keyed by index, which moved: drop them.
        if section.name() == "name" {
            return Ok(());
        }
        reencode::utils::parse_custom_section(self, module, section)
    }
}

/// The module with circom's field operations moved to host functions, and the
/// operations it imports (in [`HOST_MODULE`]); `None` when the module does not
/// have them (not circom's runtime), or does not parse.
pub(crate) fn patch(wasm: &[u8]) -> Option<(Vec<u8>, Vec<Op>)> {
    let mut types: Vec<(usize, bool)> = vec![]; // (params, all i32 and no results)
    let mut imported = 0u32;
    let mut has_imports = false;
    let mut func_types: Vec<u32> = vec![];
    let mut names: HashMap<String, u32> = HashMap::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.ok()? {
            Payload::TypeSection(r) => {
                for ty in r.into_iter_err_on_gc_types() {
                    let ty = ty.ok()?;
                    let ok =
                        ty.results().is_empty() && ty.params().iter().all(|p| *p == ValType::I32);
                    types.push((ty.params().len(), ok));
                }
            }
            Payload::ImportSection(r) => {
                has_imports = true;
                for import in r {
                    let import = import.ok()?;
                    if import.module == HOST_MODULE {
                        return None;
                    }
                    if let TypeRef::Func(_) = import.ty {
                        imported += 1;
                    }
                }
            }
            Payload::FunctionSection(r) => {
                for t in r {
                    func_types.push(t.ok()?);
                }
            }
            Payload::CustomSection(c) if c.name() == "name" => {
                if let wasmparser::KnownCustom::Name(r) = c.as_known() {
                    for n in r {
                        if let Ok(Name::Function(map)) = n {
                            for naming in map {
                                let naming = naming.ok()?;
                                names.insert(naming.name.to_owned(), naming.index);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if !has_imports {
        return None;
    }
    let mut added = vec![];
    let mut targets = HashMap::new();
    for (name, op) in Op::ALL {
        let Some(&index) = names.get(name) else {
            continue;
        };
        let ty = *func_types.get(index.checked_sub(imported)? as usize)?;
        let (params, ok) = *types.get(ty as usize)?;
        if !ok || params != op.params() {
            continue;
        }
        targets.insert(index, (op, imported + added.len() as u32));
        added.push((op, ty));
    }
    if added.is_empty() {
        return None;
    }
    let ops = added.iter().map(|(op, _)| *op).collect();
    let mut patcher = Patcher {
        imported,
        added,
        targets,
        bodies: 0,
    };
    let mut module = wasm_encoder::Module::new();
    patcher
        .parse_core_module(&mut module, Parser::new(0), wasm)
        .ok()?;
    Some((module.finish(), ops))
}
