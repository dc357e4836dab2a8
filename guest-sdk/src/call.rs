//! One call: find the function, decode the params, run it, settle the
//! Promise it may return and encode the result as JSON.

use crate::error::GuestError;
use javy_plugin_api::javy::quickjs::{Ctx, Function, Value, function::Args, promise::PromiseState};

/// Runs `function` with the JSON `params` (empty for none) and returns the
/// JSON-encoded result.
pub fn dispatch<'js>(
    ctx: &Ctx<'js>,
    function: &Function<'js>,
    flush: &Function<'js>,
    params: &[u8],
) -> Result<Vec<u8>, GuestError> {
    let params = decode_params(ctx, params)?;
    // The instance is thrown away after the call: freeing the params (every
    // object of a data-heavy call) and the result would only cost time.
    std::mem::forget(params.clone());
    let returned = invoke(ctx, function, params).map_err(|e| GuestError::from_js(ctx, e))?;
    let value = settle(ctx, flush, returned)?;
    std::mem::forget(value.clone());
    encode(ctx, value)
}

fn decode_params<'js>(ctx: &Ctx<'js>, params: &[u8]) -> Result<Value<'js>, GuestError> {
    if params.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::new_undefined(ctx.clone()));
    }
    match crate::params::parse(ctx, params) {
        Ok(Some(value)) => return Ok(value),
        Ok(None) => {}
        Err(e) => return Err(GuestError::from_js(ctx, e)),
    }
    ctx.json_parse(params.to_vec()).map_err(|e| {
        let detail = GuestError::from_js(ctx, e);
        if detail.is_limit() {
            return detail;
        }
        GuestError::invalid_params(format!("params are not valid JSON: {}", detail.message()))
    })
}

/// Calls the function the way JSON-RPC params map onto JS arguments: an
/// array is spread as positional arguments, anything else is the single
/// argument, and absent params mean no argument.
fn invoke<'js>(
    ctx: &Ctx<'js>,
    function: &Function<'js>,
    params: Value<'js>,
) -> javy_plugin_api::javy::quickjs::Result<Value<'js>> {
    if params.is_undefined() {
        return function.call(());
    }
    match params.as_array() {
        Some(array) => {
            let mut args = Args::new(ctx.clone(), array.len());
            for item in array.iter::<Value<'js>>() {
                args.push_arg(item?)?;
            }
            function.call_arg(args)
        }
        None => function.call((params,)),
    }
}

/// Runs the job queue until a returned Promise settles. When no job is
/// left, the queued sub-calls are flushed to the host; a Promise still
/// pending when neither jobs nor sub-calls are left never will settle.
fn settle<'js>(
    ctx: &Ctx<'js>,
    flush: &Function<'js>,
    value: Value<'js>,
) -> Result<Value<'js>, GuestError> {
    let Some(promise) = value.as_promise().cloned() else {
        return Ok(value);
    };
    loop {
        match promise.state() {
            PromiseState::Pending => {
                if ctx.execute_pending_job() {
                    continue;
                }
                let flushed: bool = flush.call(()).map_err(|e| GuestError::from_js(ctx, e))?;
                if !flushed {
                    return Err(GuestError::never_settled());
                }
            }
            PromiseState::Resolved | PromiseState::Rejected => {
                return match promise.result::<Value<'js>>() {
                    Some(Ok(settled)) => Ok(settled),
                    Some(Err(e)) => Err(GuestError::from_js(ctx, e)),
                    None => Err(GuestError::internal("a settled Promise has no result")),
                };
            }
        }
    }
}

/// The JSON of `null`, `undefined` (as `null`), booleans and integers,
/// written directly: `JSON.stringify` would build a wrapper object and a
/// string buffer for them.
fn encode_simple(value: &Value<'_>) -> Option<Vec<u8>> {
    if value.is_null() || value.is_undefined() {
        return Some(b"null".to_vec());
    }
    if let Some(flag) = value.as_bool() {
        return Some(if flag {
            b"true".to_vec()
        } else {
            b"false".to_vec()
        });
    }
    value.as_int().map(|n| n.to_string().into_bytes())
}

fn encode<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> Result<Vec<u8>, GuestError> {
    if let Some(json) = encode_simple(&value) {
        return Ok(json);
    }
    let type_name = value.type_name();
    let is_undefined = value.is_undefined();
    match ctx.json_stringify(value) {
        Ok(Some(json)) => json
            .to_string()
            .map(String::into_bytes)
            .map_err(|e| GuestError::internal(e.to_string())),
        Ok(None) if is_undefined => Ok(b"null".to_vec()),
        Ok(None) => Err(GuestError::not_serializable(format!(
            "the function returned a {type_name}, which JSON cannot carry; return plain data (objects, arrays, strings, numbers, booleans, null)"
        ))),
        Err(e) => {
            let detail = GuestError::from_js(ctx, e);
            if detail.is_limit() {
                return Err(detail);
            }
            Err(GuestError::not_serializable(format!(
                "the result cannot be encoded as JSON: {}",
                detail.message()
            )))
        }
    }
}
