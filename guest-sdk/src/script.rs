//! Loads the user's script into the guest runtime.
//!
//! The script is compiled in a scratch QuickJS runtime that is then dropped,
//! and its bytecode is read into the real runtime and run there. Parsing a
//! large script leaves a trail of freed temporaries between the objects it
//! keeps; reading finished bytecode allocates only what stays, packed
//! together. The snapshot is then dense, so a call of a large script
//! touches few more pages than one of a small script, and resetting the
//! sandbox's memory after the call costs about the same.

use crate::error::GuestError;
use javy_plugin_api::javy::quickjs::{Context, Ctx, Error as JsError, Runtime, qjs};
use std::ffi::CString;

/// Compiles `source` as a classic (non-module) script and returns its
/// bytecode; syntax errors come back with the script's file:line:column.
pub fn compile(
    source: &str,
    file_name: &str,
    max_stack_size: usize,
) -> Result<Vec<u8>, GuestError> {
    let runtime =
        Runtime::new().map_err(|e| GuestError::internal(format!("starting QuickJS: {e}")))?;
    runtime.set_max_stack_size(max_stack_size);
    let context = Context::full(&runtime)
        .map_err(|e| GuestError::internal(format!("starting QuickJS: {e}")))?;
    context.with(|ctx| {
        let raw = ctx.as_raw().as_ptr();
        // JS_Eval wants the source followed by a NUL byte.
        let mut input = Vec::with_capacity(source.len() + 1);
        input.extend_from_slice(source.as_bytes());
        input.push(0);
        let file_name = CString::new(file_name.replace('\0', ""))
            .map_err(|e| GuestError::internal(e.to_string()))?;
        let flags = (qjs::JS_EVAL_TYPE_GLOBAL | qjs::JS_EVAL_FLAG_COMPILE_ONLY) as i32;
        // SAFETY: `raw` is the live context of this closure; `input` is
        // NUL-terminated and `source.len()` long before the NUL.
        let function = unsafe {
            qjs::JS_Eval(
                raw,
                input.as_ptr().cast(),
                source.len() as _,
                file_name.as_ptr(),
                flags,
            )
        };
        if unsafe { qjs::JS_IsException(function) } {
            return Err(GuestError::from_js(&ctx, JsError::Exception));
        }
        let mut len = 0;
        // SAFETY: `function` is a live value of this context, freed once
        // written; the buffer is copied before it is freed.
        unsafe {
            let buffer =
                qjs::JS_WriteObject(raw, &mut len, function, qjs::JS_WRITE_OBJ_BYTECODE as i32);
            qjs::JS_FreeValue(raw, function);
            if buffer.is_null() {
                return Err(GuestError::from_js(&ctx, JsError::Exception));
            }
            let bytecode = std::slice::from_raw_parts(buffer, len as usize).to_vec();
            qjs::js_free(raw, buffer.cast());
            Ok(bytecode)
        }
    })
}

/// Runs the bytecode from [`compile`] at the top level of `ctx`.
pub fn run(ctx: &Ctx<'_>, bytecode: &[u8]) -> Result<(), GuestError> {
    let raw = ctx.as_raw().as_ptr();
    reserve_atoms(ctx, atom_count(bytecode));
    // SAFETY: `raw` is the live context `ctx`; JS_EvalFunction takes
    // ownership of the function object and the result is freed here.
    unsafe {
        let function = qjs::JS_ReadObject(
            raw,
            bytecode.as_ptr(),
            bytecode.len() as _,
            qjs::JS_READ_OBJ_BYTECODE as i32,
        );
        if qjs::JS_IsException(function) {
            return Err(GuestError::from_js(ctx, JsError::Exception));
        }
        let result = qjs::JS_EvalFunction(raw, function);
        if qjs::JS_IsException(result) {
            return Err(GuestError::from_js(ctx, JsError::Exception));
        }
        qjs::JS_FreeValue(raw, result);
    }
    Ok(())
}

/// The number of atoms (interned names) that the bytecode declares: a
/// LEB128 number after the version byte and the 32-bit checksum.
fn atom_count(bytecode: &[u8]) -> usize {
    let mut count = 0usize;
    for (i, byte) in bytecode.iter().skip(5).take(5).enumerate() {
        count |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            break;
        }
    }
    count
}

/// Grows QuickJS's atom table to hold `count` more atoms now, while the
/// heap is still small. Otherwise the table is reallocated again and again
/// while the bytecode's atoms are read and ends up among them; calls read
/// the table's first entries (the built-in names), so it belongs with the
/// rest of what they touch.
fn reserve_atoms(ctx: &Ctx<'_>, count: usize) {
    let raw = ctx.as_raw().as_ptr();
    let atoms: Vec<_> = (0..count)
        .map(|i| {
            let name = format!("\u{1}madrpc.reserved.{i}");
            // SAFETY: `raw` is the live context `ctx`; `name` is `len` bytes.
            unsafe { qjs::JS_NewAtomLen(raw, name.as_ptr().cast(), name.len() as _) }
        })
        .collect();
    for atom in atoms {
        // SAFETY: each atom was created above and is freed once.
        unsafe { qjs::JS_FreeAtom(raw, atom) };
    }
}
