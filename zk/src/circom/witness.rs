//! circom's witness generator (`<circuit>_js/<circuit>.wasm`), run in wasmi.
//!
//! The module's interface is circom 2's: inputs are set one field element at a
//! time through a shared buffer of 32-bit words (least significant first), each
//! signal named by the 64-bit FNV-1a hash of its name; the generator runs as the
//! last input arrives; then the witness is read back one element at a time.
//! The module is untrusted (a client uploaded it), so every run has a fuel bound
//! (instructions) and a memory bound, and any trap becomes an error naming it.

use ark_bn254::Fr;
use ark_ff::{BigInt, PrimeField};
use num_bigint::BigUint;
use serde_json::Value;

use super::{
    binfile::le_bigint,
    native_ops::{self, Op},
    CircomError,
};

/// The most instructions any witness computation may run (about a minute of
/// interpretation); a circuit's own bound is far lower ([`Limits::for_size`]).
pub const FUEL: u64 = 20_000_000_000;
/// The most memory any witness computation may use.
pub const MEMORY_BYTES: usize = 2 << 30;

/// What the error of a run stopped by its fuel bound says.
pub(crate) const OUT_OF_FUEL: &str = "ran out of fuel";

/// A calibrated fuel bound is this many times the sample's...
const CALIBRATION_FACTOR: u64 = 4;
/// ...plus this.
const CALIBRATION_MARGIN: u64 = 1_000_000;

/// What one witness computation may spend. The module is untrusted, so its
/// bounds come from the circuit's size ([`Limits::for_size`]) and, once a sample
/// statement has run, from what that run needed ([`Limits::calibrated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// wasm instructions (wasmi fuel).
    pub fuel: u64,
    /// Bytes of linear memory.
    pub memory: usize,
}

/// What a witness computation spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub fuel: u64,
    pub memory: usize,
}

impl Limits {
    /// The ceiling: what no circuit may exceed.
    pub const CEILING: Limits = Limits {
        fuel: FUEL,
        memory: MEMORY_BYTES,
    };

    /// Bounds for a circuit of this size before anything has run: generous for a
    /// real circom generator (its work grows with the constraints and signals),
    /// tiny for a small circuit, so a 32-byte module that loops forever is stopped
    /// after a fraction of a second, not a minute.
    pub fn for_size(constraints: usize, wires: usize) -> Limits {
        let n = (constraints + wires) as u64;
        Limits {
            fuel: (20_000_000 + 20_000 * n).min(FUEL),
            memory: (16usize << 20)
                .saturating_add(1024usize.saturating_mul(constraints + wires))
                .min(MEMORY_BYTES),
        }
    }

    /// The fuel a statement is expected to take under bounds from
    /// [`Self::calibrated`]: the sample's, which they are four times (plus a
    /// margin). An estimate, low where the bound was capped.
    pub fn expected_fuel(&self) -> u64 {
        (self.fuel.saturating_sub(CALIBRATION_MARGIN) / CALIBRATION_FACTOR).max(1)
    }

    /// Bounds for every further statement, from a sample run's usage: a few times
    /// what it needed (circom's generators do the same work for every input),
    /// never above `self`.
    pub fn calibrated(&self, sample: Usage) -> Limits {
        Limits {
            fuel: sample
                .fuel
                .saturating_mul(CALIBRATION_FACTOR)
                .saturating_add(CALIBRATION_MARGIN)
                .min(self.fuel),
            memory: sample
                .memory
                .saturating_mul(2)
                .saturating_add(1 << 20)
                .min(self.memory),
        }
    }
}

/// Which engine runs a generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// wasmi, an interpreter: what the pool runs client modules in. Its fuel
    /// is deterministic and is what a circuit's stored bounds and the pool's
    /// witness budget per job are counted in.
    Interpreter,
    /// wasmtime (Cranelift), compiled to machine code: what a rig runs, where
    /// the witness competes with the proof for the CPU. Six to nine times
    /// faster than the interpreter on the Poseidon chains BENCHMARKS.md uses.
    /// Its fuel counts differently (one per wasm operator): a rig bounds it
    /// by the circuit's size ([`Limits::for_size`]), not by the pool's
    /// calibration. It costs memory: the compiler's while it compiles, about
    /// 70 MiB for a 2 MB module, and about 20 MiB more while proving
    /// (BENCHMARKS.md).
    #[default]
    Compiled,
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "compiled" => Ok(Engine::Compiled),
            "interpreted" => Ok(Engine::Interpreter),
            other => Err(format!(
                "unknown witness engine {other:?}: use `compiled` (the fastest witness) or `interpreted` (the least memory)"
            )),
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Compiled => "compiled",
            Engine::Interpreter => "interpreted",
        })
    }
}

/// A compiled witness generator, checked to be for BN254's scalar field.
pub struct WitnessGenerator {
    module: Module,
    /// 32-bit words per field element.
    n32: usize,
    witness_size: usize,
    /// Field operations the module imports from the host ([`super::native_ops`]).
    native: Vec<Op>,
    limits: Limits,
}

enum Module {
    Interpreter(interp::Compiled),
    Compiled(jit::Compiled),
}

/// A running instance of a generator, whichever the engine: the calls
/// circom 2's interface needs.
trait Run {
    fn call0(&mut self, name: &'static str) -> Result<i32, CircomError>;
    fn raw_prime(&mut self) -> Result<(), CircomError>;
    fn read_shared(&mut self, j: i32) -> Result<i32, CircomError>;
    fn init(&mut self) -> Result<(), CircomError>;
    fn input_size(&mut self, msb: i32, lsb: i32) -> Result<i32, CircomError>;
    fn write_shared(&mut self, j: i32, word: i32) -> Result<(), CircomError>;
    fn set_input(&mut self, msb: i32, lsb: i32, i: i32, name: &str) -> Result<(), CircomError>;
    /// Witness value `i`'s 32 bytes, when the module exports its memory and
    /// the shared buffer's start (circom 2 does): `None` otherwise.
    fn witness_direct(&mut self, i: i32) -> Result<Option<[u8; 32]>, CircomError>;
    fn get_witness(&mut self, i: i32) -> Result<(), CircomError>;
    fn fuel_left(&self) -> u64;
    fn memory_size(&mut self) -> usize;
}

/// Why the generator stopped: circom's exception codes.
fn exception(code: i32) -> &'static str {
    match code {
        1 => "signal not found",
        2 => "too many signals set",
        3 => "signal already set",
        4 => "assert failed",
        5 => "not enough memory",
        6 => "input signal array access exceeds the size",
        7 => "out of bounds array access",
        _ => "unknown error",
    }
}

/// The glue between circom's runtime and one engine, written once for both:
/// wasmi's API follows wasmtime's, so the same text compiles against either.
/// `$vm` is the engine's crate, `$shim` a module with the few calls that
/// differ (making an engine, errors and the out-of-fuel trap, instantiating).
macro_rules! engine_glue {
    ($name:ident, $vm:ident, $shim:ident) => {
        mod $name {
            use super::{
                exception, native_ops, native_ops::Op, CircomError, Limits, Run, OUT_OF_FUEL, $shim as shim,
            };
            use $vm::{Caller, Extern, Linker, Store, StoreLimits, StoreLimitsBuilder, TypedFunc};

            pub struct Compiled {
                engine: $vm::Engine,
                module: $vm::Module,
            }

            struct Host {
                limits: StoreLimits,
                /// The fuel this run was given (for the message when it runs out).
                fuel: u64,
                /// Messages the module printed before trapping (circom's `log` and asserts).
                errors: String,
                /// The module's memory, found on the first native field operation.
                memory: Option<$vm::Memory>,
            }

            /// A field operation of a patched module, on its memory, charged the
            /// fuel circom's own function would have spent in the interpreter
            /// ([`Op::fuel`]).
            fn field_op(
                caller: &mut Caller<'_, Host>,
                op: Op,
                x: i32,
                y: i32,
                r: i32,
            ) -> Result<(), $vm::Error> {
                let left = caller.get_fuel()?;
                if left < op.fuel() {
                    caller.set_fuel(0)?;
                    return Err(shim::out_of_fuel());
                }
                caller.set_fuel(left - op.fuel())?;
                let memory = match caller.data().memory {
                    Some(m) => m,
                    None => {
                        let Some(Extern::Memory(m)) = caller.get_export("memory") else {
                            return Err(shim::error("the module exports no memory".into()));
                        };
                        caller.data_mut().memory = Some(m);
                        m
                    }
                };
                native_ops::run(op, memory.data_mut(caller), x, y, r).ok_or_else(|| {
                    shim::error("a field operation's operand is out of bounds".into())
                })
            }

            /// Reads circom's message buffer through `getMessageChar`.
            fn message(caller: &mut Caller<'_, Host>) -> String {
                let Some(Extern::Func(f)) = caller.get_export("getMessageChar") else {
                    return String::new();
                };
                let Ok(f) = f.typed::<(), i32>(&caller) else {
                    return String::new();
                };
                let mut out = String::new();
                while out.len() < 4096 {
                    match f.call(&mut *caller, ()) {
                        Ok(0) | Err(_) => break,
                        Ok(c) => out.push(char::from_u32(c as u32).unwrap_or('?')),
                    }
                }
                out
            }

            fn trap(what: &str, e: $vm::Error, store: &Store<Host>) -> CircomError {
                let printed = store.data().errors.trim();
                let mut msg = format!("{what}: {e}");
                if shim::is_out_of_fuel(&e) {
                    msg = format!(
                        "{what}: {OUT_OF_FUEL} after {} instructions, the bound for this circuit (an endless loop, or far more work than its size needs)",
                        store.data().fuel
                    );
                }
                if !printed.is_empty() {
                    msg.push_str(&format!(" (the circuit printed: {printed})"));
                }
                CircomError::Wasm(msg)
            }

            impl Compiled {
                pub fn new(wasm: &[u8]) -> Result<Self, CircomError> {
                    let engine = shim::engine().map_err(CircomError::Wasm)?;
                    let module = $vm::Module::new(&engine, wasm).map_err(|e| {
                        CircomError::Wasm(format!(
                            "not a valid WebAssembly module ({e}); upload the .wasm from circom's <circuit>_js directory, whole"
                        ))
                    })?;
                    Ok(Compiled { engine, module })
                }

                pub fn instantiate(
                    &self,
                    limits: Limits,
                    native: &[Op],
                ) -> Result<Box<dyn Run>, CircomError> {
                    let mut store = Store::new(
                        &self.engine,
                        Host {
                            limits: StoreLimitsBuilder::new().memory_size(limits.memory).build(),
                            fuel: limits.fuel,
                            errors: String::new(),
                            memory: None,
                        },
                    );
                    store.limiter(|h| &mut h.limits);
                    store
                        .set_fuel(limits.fuel)
                        .expect("fuel is enabled in the engine config");
                    let mut linker = Linker::<Host>::new(&self.engine);
                    let wrap =
                        |e: &dyn std::fmt::Display| CircomError::Wasm(format!("linking the runtime: {e}"));
                    linker
                        .func_wrap(
                            "runtime",
                            "exceptionHandler",
                            |caller: Caller<'_, Host>, code: i32| -> Result<(), $vm::Error> {
                                let printed = caller.data().errors.trim().to_owned();
                                let mut msg = exception(code).to_owned();
                                if !printed.is_empty() {
                                    msg.push_str(&format!(": {printed}"));
                                }
                                Err(shim::error(msg))
                            },
                        )
                        .map_err(|e| wrap(&e))?;
                    linker
                        .func_wrap("runtime", "printErrorMessage", |mut caller: Caller<'_, Host>| {
                            let m = message(&mut caller);
                            let errors = &mut caller.data_mut().errors;
                            if errors.len() < 4096 {
                                errors.push_str(&m);
                                errors.push(' ');
                            }
                        })
                        .map_err(|e| wrap(&e))?;
                    // circom's `log()` output: read and dropped (the JS runtime prints it).
                    linker
                        .func_wrap("runtime", "writeBufferMessage", |mut caller: Caller<'_, Host>| {
                            message(&mut caller);
                        })
                        .map_err(|e| wrap(&e))?;
                    linker
                        .func_wrap("runtime", "showSharedRWMemory", |_: Caller<'_, Host>| {})
                        .map_err(|e| wrap(&e))?;
                    for &op in native {
                        let linked = if op == Op::Square {
                            linker
                                .func_wrap(
                                    native_ops::HOST_MODULE,
                                    op.import_name(),
                                    move |mut c: Caller<'_, Host>, x: i32, r: i32| {
                                        field_op(&mut c, op, x, x, r)
                                    },
                                )
                                .map(|_| ())
                        } else {
                            linker
                                .func_wrap(
                                    native_ops::HOST_MODULE,
                                    op.import_name(),
                                    move |mut c: Caller<'_, Host>, x: i32, y: i32, r: i32| {
                                        field_op(&mut c, op, x, y, r)
                                    },
                                )
                                .map(|_| ())
                        };
                        linked.map_err(|e| wrap(&e))?;
                    }
                    let instance = match shim::instantiate(&linker, &mut store, &self.module) {
                        Ok(i) => i,
                        // The start function ran out of fuel (it loops).
                        Err(e) if shim::is_out_of_fuel(&e) => {
                            return Err(trap("starting the module", e, &store))
                        }
                        Err(e) => {
                            return Err(CircomError::Wasm(format!(
                                "cannot instantiate ({e}); the module must import only circom 2's runtime functions"
                            )))
                        }
                    };
                    Ok(Box::new(Instance {
                        store,
                        instance,
                        hot: None,
                    }))
                }
            }

            struct Instance {
                store: Store<Host>,
                instance: $vm::Instance,
                /// The functions called once per value, looked up once.
                hot: Option<Hot>,
            }

            struct Hot {
                write: TypedFunc<(i32, i32), ()>,
                set: TypedFunc<(i32, i32, i32), ()>,
                get: TypedFunc<i32, ()>,
                /// The module's memory and its shared buffer's start.
                direct: Option<($vm::Memory, usize)>,
            }

            impl Instance {
                fn func<P: $vm::WasmParams, R: $vm::WasmResults>(
                    &mut self,
                    name: &str,
                ) -> Result<TypedFunc<P, R>, CircomError> {
                    self.instance
                        .get_typed_func::<P, R>(&mut self.store, name)
                        .map_err(|e| {
                            CircomError::Wasm(format!(
                                "export `{name}` is missing or has the wrong type ({e}); is this a witness generator from circom 2 (--wasm)?"
                            ))
                        })
                }

                /// Calls export `name`; a trap is named after it.
                fn call<P: $vm::WasmParams, R: $vm::WasmResults>(
                    &mut self,
                    name: &'static str,
                    args: P,
                ) -> Result<R, CircomError> {
                    let f = self.func::<P, R>(name)?;
                    f.call(&mut self.store, args)
                        .map_err(|e| trap(name, e, &self.store))
                }

                fn hot(&mut self) -> Result<&Hot, CircomError> {
                    if self.hot.is_none() {
                        let write = self.func("writeSharedRWMemory")?;
                        let set = self.func("setInputSignal")?;
                        let get = self.func("getWitness")?;
                        // circom 2 exports its memory and where the shared buffer
                        // starts: each witness value is read as 32 bytes at once
                        // instead of through eight calls.
                        let memory = self.instance.get_memory(&mut self.store, "memory");
                        let start = self
                            .instance
                            .get_typed_func::<(), i32>(&mut self.store, "getSharedRWMemoryStart");
                        let direct = match (memory, start) {
                            (Some(memory), Ok(start)) => {
                                let at = start
                                    .call(&mut self.store, ())
                                    .map_err(|e| trap("getSharedRWMemoryStart", e, &self.store))?;
                                Some((memory, at as u32 as usize))
                            }
                            _ => None,
                        };
                        self.hot = Some(Hot {
                            write,
                            set,
                            get,
                            direct,
                        });
                    }
                    Ok(self.hot.as_ref().expect("just set"))
                }
            }

            impl Run for Instance {
                fn call0(&mut self, name: &'static str) -> Result<i32, CircomError> {
                    self.call(name, ())
                }

                fn raw_prime(&mut self) -> Result<(), CircomError> {
                    self.call("getRawPrime", ())
                }

                fn read_shared(&mut self, j: i32) -> Result<i32, CircomError> {
                    self.call("readSharedRWMemory", j)
                }

                fn init(&mut self) -> Result<(), CircomError> {
                    self.call("init", 1)
                }

                fn input_size(&mut self, msb: i32, lsb: i32) -> Result<i32, CircomError> {
                    self.call("getInputSignalSize", (msb, lsb))
                }

                fn write_shared(&mut self, j: i32, word: i32) -> Result<(), CircomError> {
                    let f = self.hot()?.write.clone();
                    f.call(&mut self.store, (j, word))
                        .map_err(|e| trap("writeSharedRWMemory", e, &self.store))
                }

                fn set_input(
                    &mut self,
                    msb: i32,
                    lsb: i32,
                    i: i32,
                    name: &str,
                ) -> Result<(), CircomError> {
                    let f = self.hot()?.set.clone();
                    f.call(&mut self.store, (msb, lsb, i)).map_err(|e| {
                        trap(
                            &format!("computing the witness after `{name}`[{i}]"),
                            e,
                            &self.store,
                        )
                    })
                }

                fn get_witness(&mut self, i: i32) -> Result<(), CircomError> {
                    let f = self.hot()?.get.clone();
                    f.call(&mut self.store, i)
                        .map_err(|e| trap("getWitness", e, &self.store))
                }

                fn witness_direct(&mut self, i: i32) -> Result<Option<[u8; 32]>, CircomError> {
                    let Some((memory, at)) = self.hot()?.direct else {
                        return Ok(None);
                    };
                    self.get_witness(i)?;
                    let mut bytes = [0u8; 32];
                    memory.read(&self.store, at, &mut bytes).map_err(|e| {
                        CircomError::Wasm(format!("reading witness value {i}: {e}"))
                    })?;
                    Ok(Some(bytes))
                }

                fn fuel_left(&self) -> u64 {
                    self.store.get_fuel().unwrap_or(0)
                }

                fn memory_size(&mut self) -> usize {
                    match self.instance.get_export(&mut self.store, "memory") {
                        Some(Extern::Memory(m)) => m.data_size(&self.store),
                        _ => 0,
                    }
                }
            }
        }
    };
}

/// wasmi's side of [`engine_glue`].
mod interp_shim {
    pub fn engine() -> Result<wasmi::Engine, String> {
        let mut config = wasmi::Config::default();
        config.consume_fuel(true);
        Ok(wasmi::Engine::new(&config))
    }
    pub fn error(msg: String) -> wasmi::Error {
        wasmi::Error::new(msg)
    }
    pub fn out_of_fuel() -> wasmi::Error {
        wasmi::TrapCode::OutOfFuel.into()
    }
    pub fn is_out_of_fuel(e: &wasmi::Error) -> bool {
        matches!(e.as_trap_code(), Some(wasmi::TrapCode::OutOfFuel))
    }
    pub fn instantiate<T>(
        linker: &wasmi::Linker<T>,
        store: &mut wasmi::Store<T>,
        module: &wasmi::Module,
    ) -> Result<wasmi::Instance, wasmi::Error> {
        linker.instantiate_and_start(store, module)
    }
}

/// wasmtime's side of [`engine_glue`].
mod jit_shim {
    pub fn engine() -> Result<wasmtime::Engine, String> {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true);
        // No map from machine code back to wasm offsets: only backtraces use
        // it, and it is tens of MB for a large circuit's module.
        config.generate_address_map(false);
        // Errors are the trap or the host's message, without a backtrace
        // (which would be of `<unknown>` functions anyway).
        config.wasm_backtrace_max_frames(None);
        wasmtime::Engine::new(&config).map_err(|e| format!("the wasm compiler: {e}"))
    }
    pub fn error(msg: String) -> wasmtime::Error {
        wasmtime::Error::msg(msg)
    }
    pub fn out_of_fuel() -> wasmtime::Error {
        wasmtime::Trap::OutOfFuel.into()
    }
    pub fn is_out_of_fuel(e: &wasmtime::Error) -> bool {
        matches!(e.downcast_ref(), Some(wasmtime::Trap::OutOfFuel))
    }
    pub fn instantiate<T>(
        linker: &wasmtime::Linker<T>,
        store: &mut wasmtime::Store<T>,
        module: &wasmtime::Module,
    ) -> Result<wasmtime::Instance, wasmtime::Error> {
        linker.instantiate(store, module)
    }
}

engine_glue!(interp, wasmi, interp_shim);
engine_glue!(jit, wasmtime, jit_shim);

impl Module {
    fn new(engine: Engine, wasm: &[u8]) -> Result<Self, CircomError> {
        Ok(match engine {
            Engine::Interpreter => Module::Interpreter(interp::Compiled::new(wasm)?),
            Engine::Compiled => Module::Compiled(jit::Compiled::new(wasm)?),
        })
    }

    fn engine(&self) -> Engine {
        match self {
            Module::Interpreter(_) => Engine::Interpreter,
            Module::Compiled(_) => Engine::Compiled,
        }
    }
}

impl WitnessGenerator {
    /// Compiles and checks a generator for the interpreter (what the pool
    /// runs): it must be valid WebAssembly with circom 2's exports, for BN254's
    /// scalar field.
    pub fn new(wasm: &[u8]) -> Result<Self, CircomError> {
        Self::build(wasm, true, Engine::Interpreter)
    }

    /// [`Self::new`] for `engine`.
    pub fn with_engine(wasm: &[u8], engine: Engine) -> Result<Self, CircomError> {
        Self::build(wasm, true, engine)
    }

    /// [`Self::new`], with circom's field operations done natively when
    /// `native` and the module has them (see [`super::native_ops`]).
    #[cfg(test)]
    pub(crate) fn with_native_ops(wasm: &[u8], native: bool) -> Result<Self, CircomError> {
        Self::build(wasm, native, Engine::Interpreter)
    }

    fn build(wasm: &[u8], native: bool, engine: Engine) -> Result<Self, CircomError> {
        let patched = native.then(|| native_ops::patch(wasm)).flatten();
        let (module, native) = match (engine, patched) {
            // A rig compiles the patched module alone (each compilation costs
            // time and memory); the original only if that fails.
            (Engine::Compiled, Some((patched, ops))) => match Module::new(engine, &patched[..]) {
                Ok(m) => (m, ops),
                Err(_) => (Module::new(engine, wasm)?, vec![]),
            },
            // The pool checks the original first, so an upload is refused for
            // what it is; the patched one replaces it only if it compiles too.
            (_, patched) => {
                let module = Module::new(engine, wasm)?;
                match patched {
                    Some((patched, ops)) => match Module::new(engine, &patched[..]) {
                        Ok(m) => (m, ops),
                        Err(_) => (module, vec![]),
                    },
                    None => (module, vec![]),
                }
            }
        };
        let mut gen = WitnessGenerator {
            module,
            n32: 0,
            witness_size: 0,
            native,
            // Only the module's start and a few getters run before the circuit's
            // size is known: a small fuel bound; memory as the module declares it.
            limits: Limits {
                fuel: Limits::for_size(0, 0).fuel,
                memory: MEMORY_BYTES,
            },
        };
        let mut inst = gen.instantiate(gen.limits)?;
        let n32 = inst.call0("getFieldNumLen32")?;
        if !(1..=8).contains(&n32) {
            return Err(CircomError::Wasm(format!(
                "field elements of {n32} words are not supported"
            )));
        }
        gen.n32 = n32 as usize;
        inst.raw_prime()?;
        let prime = read_shared(&mut *inst, gen.n32)?;
        if n32 != 8 || prime != Fr::MODULUS {
            return Err(CircomError::Curve {
                file: "wasm",
                detail: format!(
                    "its prime is {prime}; compile with circom's default prime (--prime bn128)"
                ),
            });
        }
        gen.witness_size = inst.call0("getWitnessSize")? as usize;
        Ok(gen)
    }

    /// Signals in the witness, the constant 1 included.
    pub fn witness_size(&self) -> usize {
        self.witness_size
    }

    /// Whether circom's field arithmetic runs natively instead of in wasm.
    pub fn native_field_ops(&self) -> bool {
        !self.native.is_empty()
    }

    /// The engine this generator runs in.
    pub fn engine(&self) -> Engine {
        self.module.engine()
    }

    /// The bounds each computation runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Sets the bounds each computation runs under (at most [`Limits::CEILING`]).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = Limits {
            fuel: limits.fuel.min(FUEL),
            memory: limits.memory.min(MEMORY_BYTES),
        };
    }

    fn instantiate(&self, limits: Limits) -> Result<Box<dyn Run>, CircomError> {
        match &self.module {
            Module::Interpreter(m) => m.instantiate(limits, &self.native),
            Module::Compiled(m) => m.instantiate(limits, &self.native),
        }
    }

    /// Computes the witness for a circom input JSON object (`{"a": "3", "b": ["1", "2"]}`).
    /// Values are decimal strings (a leading `-` counts from the modulus), `0x` hex
    /// strings or JSON integers; arrays are flattened; nested objects name
    /// `outer.inner` signals.
    pub fn calculate(&self, input: &Value) -> Result<Vec<Fr>, CircomError> {
        self.calculate_metered(input).map(|(w, _)| w)
    }

    /// [`Self::calculate`], and what the run spent.
    pub fn calculate_metered(&self, input: &Value) -> Result<(Vec<Fr>, Usage), CircomError> {
        self.calculate_within(input, self.limits.fuel)
    }

    /// [`Self::calculate_metered`] with at most `fuel` of its fuel bound: for a
    /// caller with a budget of its own. Running out of it is an error for which
    /// [`CircomError::ran_out_of_fuel`] holds.
    pub fn calculate_within(
        &self,
        input: &Value,
        fuel: u64,
    ) -> Result<(Vec<Fr>, Usage), CircomError> {
        let limits = Limits {
            fuel: fuel.min(self.limits.fuel),
            memory: self.limits.memory,
        };
        let Value::Object(_) = input else {
            return Err(CircomError::Input(
                "must be a JSON object of signal names to values, as for snarkjs wtns calculate"
                    .into(),
            ));
        };
        let mut signals = Vec::new();
        qualify("", input, &mut signals)?;
        let mut inst = self.instantiate(limits)?;
        inst.init()?;
        let mut count = 0usize;
        for (name, value) in &signals {
            let h = fnv1a(name);
            let (msb, lsb) = ((h >> 32) as u32 as i32, h as u32 as i32);
            let mut values = Vec::new();
            flatten(name, value, &mut values)?;
            let size = inst.input_size(msb, lsb)?;
            // circom 2.1 answers 0 (older versions -1) for a name it does not know.
            if size <= 0 {
                return Err(CircomError::Input(format!(
                    "the circuit has no input signal `{name}`"
                )));
            }
            if values.len() != size as usize {
                return Err(CircomError::Input(format!(
                    "input `{name}` takes {size} value(s), {} given",
                    values.len()
                )));
            }
            for (i, v) in values.iter().enumerate() {
                let limbs = v.into_bigint().0;
                for j in 0..self.n32 {
                    let word = (limbs[j / 2] >> (32 * (j % 2))) as u32;
                    inst.write_shared(j as i32, word as i32)?;
                }
                inst.set_input(msb, lsb, i as i32, name)?;
                count += 1;
            }
        }
        let needed = inst.call0("getInputSize")? as usize;
        if count < needed {
            return Err(CircomError::Input(format!(
                "only {count} of the circuit's {needed} input values are given"
            )));
        }
        let mut witness = Vec::with_capacity(self.witness_size);
        for i in 0..self.witness_size {
            let b = match inst.witness_direct(i as i32)? {
                Some(bytes) => le_bigint(&bytes),
                None => {
                    inst.get_witness(i as i32)?;
                    read_shared(&mut *inst, self.n32)?
                }
            };
            witness.push(Fr::from_bigint(b).ok_or_else(|| {
                CircomError::Wasm(format!("witness value {i} is not below the field modulus"))
            })?);
        }
        if witness.first() != Some(&Fr::from(1u64)) {
            return Err(CircomError::Wasm(
                "witness signal 0 is not the constant 1".into(),
            ));
        }
        let fuel = limits.fuel.saturating_sub(inst.fuel_left());
        let memory = inst.memory_size();
        Ok((witness, Usage { fuel, memory }))
    }
}

/// The shared buffer's value, read a 32-bit word at a time.
fn read_shared(inst: &mut dyn Run, n32: usize) -> Result<BigInt<4>, CircomError> {
    let mut bytes = [0u8; 32];
    for j in 0..n32.min(8) {
        let w = inst.read_shared(j as i32)?;
        bytes[4 * j..4 * j + 4].copy_from_slice(&(w as u32).to_le_bytes());
    }
    Ok(le_bigint(&bytes))
}

/// 64-bit FNV-1a, how circom names signals to its generator.
fn fnv1a(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Nested objects name `outer.inner` signals (circom 2.1 buses); everything else
/// is a signal's value or array of values.
fn qualify(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) -> Result<(), CircomError> {
    let Value::Object(map) = v else {
        unreachable!("called on objects only")
    };
    for (k, v) in map {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Object(_) => qualify(&name, v, out)?,
            _ => out.push((name, v.clone())),
        }
    }
    Ok(())
}

fn flatten(name: &str, v: &Value, out: &mut Vec<Fr>) -> Result<(), CircomError> {
    match v {
        Value::Array(items) => {
            for item in items {
                flatten(name, item, out)?;
            }
            Ok(())
        }
        other => {
            out.push(
                parse_value(other)
                    .map_err(|why| CircomError::Input(format!("input `{name}`: {why}")))?,
            );
            Ok(())
        }
    }
}

/// One input value as a field element. Values at or over the modulus are refused,
/// not reduced: two different inputs must never name the same statement.
pub fn parse_value(v: &Value) -> Result<Fr, String> {
    let (negative, magnitude) = match v {
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => (false, BigUint::from(u)),
            (None, Some(i)) => (true, BigUint::from(i.unsigned_abs())),
            _ => {
                return Err(format!(
                    "{n} is not an integer; give large values as decimal strings"
                ))
            }
        },
        Value::String(s) => {
            let (neg, body) = match s.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, s.as_str()),
            };
            let parsed = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
                Some(hex) => BigUint::parse_bytes(hex.as_bytes(), 16),
                None if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) => {
                    BigUint::parse_bytes(body.as_bytes(), 10)
                }
                None => None,
            };
            (
                neg,
                parsed.ok_or_else(|| format!("{s:?} is not a decimal or 0x-hex integer"))?,
            )
        }
        Value::Bool(b) => (false, BigUint::from(*b as u8)),
        other => return Err(format!("{other} is not a number")),
    };
    let modulus: BigUint = Fr::MODULUS.into();
    if magnitude >= modulus {
        return Err(format!(
            "{}{magnitude} is not below the field modulus {modulus}",
            if negative { "-" } else { "" }
        ));
    }
    let value = Fr::from(magnitude);
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_circom_for_a_known_name() {
        // FNV-1a 64 of "a": the published test value for the algorithm.
        assert_eq!(fnv1a("a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(""), 0xcbf29ce484222325);
    }

    #[test]
    fn values_parse_like_snarkjs_inputs_and_refuse_what_would_wrap() {
        assert_eq!(
            parse_value(&serde_json::json!("11")).unwrap(),
            Fr::from(11u64)
        );
        assert_eq!(
            parse_value(&serde_json::json!(11)).unwrap(),
            Fr::from(11u64)
        );
        assert_eq!(
            parse_value(&serde_json::json!("0x0b")).unwrap(),
            Fr::from(11u64)
        );
        assert_eq!(
            parse_value(&serde_json::json!("-1")).unwrap(),
            -Fr::from(1u64)
        );
        assert_eq!(
            parse_value(&serde_json::json!(-2)).unwrap(),
            -Fr::from(2u64)
        );
        let r: BigUint = Fr::MODULUS.into();
        let e = parse_value(&serde_json::json!(r.to_string())).unwrap_err();
        assert!(e.contains("not below the field modulus"), "{e}");
        assert!(parse_value(&serde_json::json!("1.5"))
            .unwrap_err()
            .contains("not a decimal"));
        assert!(parse_value(&serde_json::json!(1.5))
            .unwrap_err()
            .contains("not an integer"));
        assert!(parse_value(&serde_json::json!(null))
            .unwrap_err()
            .contains("not a number"));
    }
}
