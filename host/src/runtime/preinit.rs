//! Build-time pre-initialization: run the plugin's init function over a
//! script under Wizer and snapshot the initialized heap into a new module.
//!
//! The run is deterministic (fixed clocks, seeded randomness), so the same
//! script always gives byte-identical output, and bounded (fuel and memory),
//! so a top-level infinite loop or memory bomb fails the build instead of
//! hanging it.

use super::error::CallError;
use super::imports;
use super::state::CallState;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::time::Duration;
use wasmtime::{Config, Engine, Linker, Store, Trap};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// How much a script's top level may use at build time (`madrpc build
/// --fuel --memory`).
#[derive(Debug, Clone, Copy)]
pub struct BuildLimits {
    /// CPU budget, in Wasm instructions (Wasmtime fuel), so that a build
    /// fails or succeeds the same way on every machine, unlike calls, whose
    /// fuel is CPU time. Default 50,000,000,000 (a few seconds): far more
    /// than building lookup tables takes, far less than forever.
    pub fuel: u64,
    /// Memory cap. Default 1 GiB, the most a build should snapshot.
    pub memory_bytes: usize,
}

impl Default for BuildLimits {
    fn default() -> Self {
        Self {
            fuel: 50_000_000_000,
            memory_bytes: 1 << 30,
        }
    }
}
/// Cap on what the init function may print (manifest, error, console).
const OUTPUT_LIMIT: usize = 4 << 20;
/// The wall clock a script's top level sees: 2025-01-01T00:00:00Z.
const BUILD_TIME: Duration = Duration::from_secs(1_735_689_600);

/// A pre-initialized module with what the init function printed.
pub struct Preinitialized {
    /// The snapshotted module.
    pub wasm: Vec<u8>,
    /// What the init function wrote to stdout (the method list as JSON).
    pub stdout: Vec<u8>,
    /// The console output of the script's top level.
    pub console: super::ConsoleOutput,
}

/// Why pre-initialization failed.
#[derive(Debug, thiserror::Error)]
pub enum PreinitError {
    /// The init function reported an error (its JSON error object).
    #[error("the script failed to initialize")]
    Guest {
        /// The guest's JSON error object from stderr.
        report: Vec<u8>,
        /// Console output before the failure.
        console: super::ConsoleOutput,
    },
    /// The top level hit a resource limit.
    #[error("{}", limit_message(.0))]
    Limit(CallError),
    /// Wasmtime or Wizer failed.
    #[error("pre-initialization failed: {0}")]
    Internal(String),
}

/// What to tell the user about a build-time limit, and which flag raises it.
fn limit_message(error: &CallError) -> String {
    match error {
        CallError::FuelExhausted { limit } => format!(
            "its top level used up the build's fuel ({limit} units); look for an endless loop, do less work at the top level, or raise it with `madrpc build --fuel UNITS`"
        ),
        CallError::MemoryExceeded { limit } => format!(
            "its top level exceeded the build's memory limit of {limit} bytes; allocate less at the top level, or raise it with `madrpc build --memory SIZE`"
        ),
        other => format!("its top level stopped: {other}"),
    }
}

/// Runs `plugin`'s `madrpc_init` over `source` and snapshots the result.
///
/// It runs on a thread of its own, so it may be called from anywhere,
/// including from inside an async runtime.
pub fn preinitialize(
    plugin: &[u8],
    script_name: &str,
    source: &str,
    limits: &BuildLimits,
) -> Result<Preinitialized, PreinitError> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("madrpc-build".into())
            .stack_size(super::stack::CALL_THREAD_STACK_BYTES)
            .spawn_scoped(scope, || run_init(plugin, script_name, source, limits))
            .map_err(|e| PreinitError::Internal(format!("cannot start the build thread: {e}")))?
            .join()
            .map_err(|_| PreinitError::Internal("the build thread panicked".into()))?
    })
}

fn run_init(
    plugin: &[u8],
    script_name: &str,
    source: &str,
    build_limits: &BuildLimits,
) -> Result<Preinitialized, PreinitError> {
    let internal = |e: wasmtime::Error| PreinitError::Internal(format!("{e:#}"));
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .max_wasm_stack(super::stack::WASM_STACK_BYTES)
        .async_stack_size(super::stack::CALL_THREAD_STACK_BYTES);
    let engine = Engine::new(&config).map_err(internal)?;

    let stdout = MemoryOutputPipe::new(OUTPUT_LIMIT);
    let stderr = MemoryOutputPipe::new(OUTPUT_LIMIT);
    let limits = super::Limits {
        memory_bytes: build_limits.memory_bytes,
        max_console_bytes: OUTPUT_LIMIT,
        ..super::Limits::default()
    };
    let mut state = CallState::new(
        &limits,
        super::CallContext::top_level(),
        std::time::Instant::now() + Duration::from_secs(3600),
    );
    state.wasi = WasiCtxBuilder::new()
        .stdin(MemoryInputPipe::new(format!("{script_name}\n{source}")))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .wall_clock(FixedClock)
        .monotonic_clock(FixedClock)
        .secure_random(StdRng::seed_from_u64(0))
        .insecure_random(StdRng::seed_from_u64(1))
        .insecure_random_seed(0)
        .build_p1();
    let mut store = Store::new(&engine, state);
    store.limiter(|state| &mut state.limiter);
    store.set_fuel(build_limits.fuel).map_err(internal)?;

    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut CallState| &mut state.wasi)
        .map_err(internal)?;
    imports::link_host_functions(&mut linker).map_err(internal)?;

    let executor = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| PreinitError::Internal(e.to_string()))?;
    let mut wizer = wasmtime_wizer::Wizer::new();
    wizer.init_func(INIT_FUNC);
    let (instrumented, module) = instrumented_plugin(&wizer, &engine, plugin).map_err(internal)?;
    let outcome = executor.block_on(async {
        let instance = linker.instantiate_async(&mut store, &module).await?;
        for name in ["_initialize", INIT_FUNC] {
            let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, name) else {
                if name == INIT_FUNC {
                    wasmtime::bail!("the plugin does not export `{INIT_FUNC}`");
                }
                continue;
            };
            init.call_async(&mut store, ()).await?;
        }
        let mut state = wasmtime_wizer::WasmtimeWizer {
            store: &mut store,
            instance,
        };
        wizer.snapshot(&instrumented, &mut state).await
    });

    let limit_hit = store.data().limiter.hit;
    let console = store.into_data().console.finish();
    match outcome {
        Ok(wasm) => Ok(Preinitialized {
            wasm,
            stdout: stdout.contents().to_vec(),
            console,
        }),
        Err(error) => {
            let report = stderr.contents().to_vec();
            match error.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => {
                    return Err(PreinitError::Limit(CallError::FuelExhausted {
                        limit: build_limits.fuel,
                    }));
                }
                Some(Trap::StackOverflow) => {
                    return Err(PreinitError::Limit(CallError::StackOverflow));
                }
                _ => {}
            }
            if limit_hit {
                return Err(PreinitError::Limit(CallError::MemoryExceeded {
                    limit: build_limits.memory_bytes,
                }));
            }
            if !report.is_empty() {
                return Err(PreinitError::Guest { report, console });
            }
            Err(internal(error))
        }
    }
}

/// The plugin's export that evaluates the script.
const INIT_FUNC: &str = "madrpc_init";

/// Wizer's instrumented copy of `plugin`, compiled. The compiled form comes
/// from the module cache when it holds one: compiling the plugin is most of
/// what a build of a small script would otherwise cost, and the plugin is
/// the same for every build.
fn instrumented_plugin<'a>(
    wizer: &wasmtime_wizer::Wizer,
    engine: &Engine,
    plugin: &'a [u8],
) -> wasmtime::Result<(wasmtime_wizer::ModuleContext<'a>, wasmtime::Module)> {
    let (context, instrumented) = wizer.instrument(plugin)?;
    let module = match super::ModuleCache::default_location() {
        Some(dir) => {
            super::ModuleCache::new(dir)
                .load_or_compile(engine, &instrumented)?
                .0
        }
        None => wasmtime::Module::new(engine, &instrumented)?,
    };
    super::image::prepare(&module)?;
    Ok((context, module))
}

/// A clock that always reads [`BUILD_TIME`], so builds are reproducible.
struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        BUILD_TIME
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}
