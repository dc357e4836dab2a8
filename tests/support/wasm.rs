//! Hand-made WebAssembly modules, for what no script can make a guest do.

/// A module that passes every check a madrpc module gets (its manifest,
/// its ABI exports) but whose entry point traps: a guest that stops
/// abnormally, which no script is known to cause.
pub fn crashing_module() -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, ExportKind, ExportSection, Function, FunctionSection, MemorySection,
        MemoryType, Module, TypeSection, ValType,
    };
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    types
        .ty()
        .function([ValType::I32, ValType::I32, ValType::I32], [ValType::I32]);
    let mut functions = FunctionSection::new();
    functions.function(0).function(1);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut exports = ExportSection::new();
    exports
        .export("memory", ExportKind::Memory, 0)
        .export("madrpc_alloc", ExportKind::Func, 0)
        .export("madrpc_call", ExportKind::Func, 1);
    let mut code = CodeSection::new();
    let mut alloc = Function::new([]);
    alloc.instructions().i32_const(1024).end();
    let mut call = Function::new([]);
    call.instructions().unreachable().end();
    code.function(&alloc).function(&call);
    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&memories)
        .section(&exports)
        .section(&code);
    let mut wasm = module.finish();
    madrpc::manifest::Manifest {
        abi: madrpc::manifest::ABI_VERSION,
        script: "crash.js".into(),
        methods: vec!["crash".into()],
        cache: Default::default(),
    }
    .append_to(&mut wasm);
    wasm
}
