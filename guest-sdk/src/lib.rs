//! The madrpc guest: a Javy plugin (QuickJS compiled to `wasm32-wasip1`)
//! that speaks the madrpc guest ABI.
//!
//! # Build time
//! `madrpc build` instantiates this plugin under Wizer and calls
//! [`madrpc_init`]. It reads the script from WASI stdin (`name\nsource`),
//! evaluates the prelude and the script once, and prints the registered
//! method names to stdout as `{"methods": [...]}`; on failure it prints a
//! JSON error to stderr and exits with status 1. Wizer then snapshots the
//! initialized heap into a new module, so a call never parses or evaluates
//! the script again.
//!
//! # Call time
//! The host allocates one buffer with [`madrpc_alloc`], writes the method
//! name followed by the params JSON into it, and calls [`madrpc_call`]. The
//! returned pointer addresses three `u32`s: status (0 ok, 1 error), pointer
//! and length of a JSON document (the result, or an error object with
//! `kind`, `name`, `message` and optional `stack` and `methods`).
//!
//! # Sub-calls
//! `madrpc.call` queues a sub-call; when the function has nothing left to
//! do but wait, the queue goes to the host in one `madrpc.subcalls_run`
//! (a JSON array of `{method, params}`), which runs them concurrently and
//! answers with a JSON array of `{ok: result}` or `{error: {code, message,
//! data}}`, fetched with `madrpc.subcalls_take`.
//!
//! Imports: `madrpc.console_write`, `madrpc.subcalls_run`,
//! `madrpc.subcalls_take`, plus WASI preview 1 clocks and `random_get`.
//! Nothing else.

mod call;
mod console;
mod error;
mod heap;
mod host;
mod methods;
mod params;
mod random;
mod script;
mod web;

use crate::console::HostConsole;
use crate::error::GuestError;
use crate::host::ConsoleStream;
use crate::methods::Methods;
use javy_plugin_api::javy::quickjs::{
    Ctx, Function, Object, Persistent, context::EvalOptions, prelude::Func,
};
use javy_plugin_api::javy::{Config, Runtime};
use std::alloc::{Layout, alloc};
use std::cell::{OnceCell, RefCell};
use std::io::{Read, Write};

/// The JS half of the guest API (`madrpc.register`, console aliases).
const PRELUDE: &str = include_str!("prelude.js");

/// The initialized runtime and the user's functions; set once by
/// [`madrpc_init`] and carried into every call by the snapshot.
struct Guest {
    runtime: Runtime,
    methods: Methods,
    flush: Persistent<Function<'static>>,
}

thread_local! {
    static GUEST: OnceCell<Guest> = const { OnceCell::new() };
    static OUTPUT: RefCell<(u32, Vec<u8>)> = const { RefCell::new((0, Vec::new())) };
}

/// QuickJS's stack limit: 512 KiB of the 8 MiB shadow stack (see
/// .cargo/config.toml) stay free for native frames below QuickJS's check.
const MAX_STACK_SIZE: usize = 7680 << 10;

static mut RET_AREA: [u32; 3] = [0; 3];

/// Evaluates the user's script once, under Wizer. See the crate docs.
#[unsafe(export_name = "madrpc_init")]
pub extern "C" fn madrpc_init() {
    match initialize() {
        Ok((methods, cache)) => {
            let manifest = serde_json::json!({ "methods": methods, "cache": cache }).to_string();
            let _ = std::io::stdout().write_all(manifest.as_bytes());
            let _ = std::io::stdout().flush();
            drop((manifest, methods, cache));
            if !heap::seal() {
                let error = GuestError::internal(
                    "the heap could not be sealed: wasi-libc's allocator no longer lays out chunks as guest-sdk/src/heap.rs expects; calls would be slower and modules larger, so fix heap.rs for this toolchain",
                );
                let _ = std::io::stderr().write_all(&error.to_json());
                let _ = std::io::stderr().flush();
                std::process::exit(1);
            }
        }
        Err(error) => {
            let _ = std::io::stderr().write_all(&error.to_json());
            let _ = std::io::stderr().flush();
            std::process::exit(1);
        }
    }
}

/// Allocates `len` bytes for the host to write a call's input into.
#[unsafe(export_name = "madrpc_alloc")]
pub extern "C" fn madrpc_alloc(len: usize) -> *mut u8 {
    match Layout::from_size_align(len.max(1), 1) {
        // SAFETY: the layout has a non-zero size.
        Ok(layout) => unsafe { alloc(layout) },
        Err(_) => std::ptr::null_mut(),
    }
}

/// Runs one call. See the crate docs for the layout of input and output.
///
/// # Safety
/// `input` must point to `name_len + params_len` readable bytes.
#[unsafe(export_name = "madrpc_call")]
pub unsafe extern "C" fn madrpc_call(
    input: *const u8,
    name_len: usize,
    params_len: usize,
) -> *const u32 {
    // SAFETY: guaranteed by the caller (the host wrote these bytes).
    let input = unsafe { std::slice::from_raw_parts(input, name_len + params_len) };
    let (name, params) = input.split_at(name_len);
    let outcome = run_call(&String::from_utf8_lossy(name), params);
    OUTPUT.with(|output| {
        let mut output = output.borrow_mut();
        *output = match outcome {
            Ok(json) => (0, json),
            Err(error) => (1, error.to_json()),
        };
        // SAFETY: single-threaded guest; the host reads RET_AREA right after
        // this call returns, and OUTPUT lives until the instance is dropped.
        unsafe {
            RET_AREA = [output.0, output.1.as_ptr() as u32, output.1.len() as u32];
            std::ptr::addr_of!(RET_AREA).cast()
        }
    })
}

fn run_call(method: &str, params: &[u8]) -> Result<Vec<u8>, GuestError> {
    random::reset();
    web::start_call();
    GUEST.with(|guest| {
        let guest = guest.get().ok_or_else(|| {
            GuestError::internal("the module was not initialized by `madrpc build`")
        })?;
        guest.runtime.context().with(|ctx| {
            let function = guest.methods.get(&ctx, method)?;
            let flush = guest
                .flush
                .clone()
                .restore(&ctx)
                .map_err(|e| GuestError::from_js(&ctx, e))?;
            call::dispatch(&ctx, &function, &flush, params)
        })
    })
}

/// Runs the script; the registered names and the cacheable functions'
/// time to live in milliseconds.
fn initialize() -> Result<(Vec<String>, std::collections::BTreeMap<String, u64>), GuestError> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| GuestError::internal(format!("reading the script: {e}")))?;
    let (file_name, source) = input.split_once('\n').unwrap_or((input.as_str(), ""));

    let mut config = Config::default();
    config
        .text_encoding(true)
        .weak_ref(true)
        .max_stack_size(MAX_STACK_SIZE)
        .log_stream(Box::new(HostConsole(ConsoleStream::Log)))
        .err_stream(Box::new(HostConsole(ConsoleStream::Error)));
    let mut methods = Methods::reserve();
    let bytecode = script::compile(source, file_name, MAX_STACK_SIZE)?;
    let runtime =
        Runtime::new(config).map_err(|e| GuestError::internal(format!("starting QuickJS: {e}")))?;

    let (flush, cache) = runtime.context().with(|ctx| {
        install_random(&ctx)?;
        web::install(&ctx)?;
        ctx.globals()
            .set("__madrpc_run_subcalls", Func::from(host::run_subcalls))
            .map_err(|e| GuestError::from_js(&ctx, e))?;
        let api: Object = eval_prelude(&ctx)?;
        let registry: Object = api
            .get("registry")
            .map_err(|e| GuestError::from_js(&ctx, e))?;
        let flush: Function = api.get("flush").map_err(|e| GuestError::from_js(&ctx, e))?;
        script::run(&ctx, &bytecode)?;
        while ctx.execute_pending_job() {}
        methods.fill(&ctx, &registry)?;
        let cache_ttls: Object = api
            .get("cacheTtls")
            .map_err(|e| GuestError::from_js(&ctx, e))?;
        let cache = methods::cache_ttls(&ctx, &cache_ttls)?;
        Ok::<_, GuestError>((Persistent::save(&ctx, flush), cache))
    })?;
    if methods.is_empty() {
        return Err(GuestError::no_methods());
    }

    // No collection here: whatever it freed would only be sealed away with
    // the heap's other gaps (see `heap`). Let the collector run only once a
    // call has allocated a fair amount beyond the snapshot.
    let quickjs = runtime.context().runtime();
    let heap = usize::try_from(quickjs.memory_usage().malloc_size).unwrap_or(0);
    quickjs.set_gc_threshold(heap + heap / 2 + (8 << 20));
    random::reset();

    let names = methods.names();
    GUEST.with(|guest| {
        guest
            .set(Guest {
                runtime,
                methods,
                flush,
            })
            .map_err(|_| GuestError::internal("madrpc_init ran twice"))
    })?;
    Ok((names, cache))
}

fn install_random(ctx: &Ctx<'_>) -> Result<(), GuestError> {
    let math: Object = ctx
        .globals()
        .get("Math")
        .map_err(|e| GuestError::from_js(ctx, e))?;
    math.set("random", Func::from(random::next_f64))
        .map_err(|e| GuestError::from_js(ctx, e))
}

/// Evaluates [`PRELUDE`], whose value is the object holding the registry
/// and the sub-call flush.
fn eval_prelude<'js>(ctx: &Ctx<'js>) -> Result<Object<'js>, GuestError> {
    let mut options = EvalOptions::default();
    options.global = true;
    options.strict = true;
    options.backtrace_barrier = true;
    options.promise = false;
    options.filename = Some("madrpc:prelude".to_owned());
    ctx.eval_with_options(PRELUDE, options)
        .map_err(|e| GuestError::from_js(ctx, e))
}
