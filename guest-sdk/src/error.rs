//! Errors a call or the build-time initialization reports to the host.
//!
//! They cross the ABI as JSON objects; `kind` tells the host which of its
//! typed errors to raise, the other fields carry what the user needs to fix
//! the problem.

use javy_plugin_api::javy::quickjs::{Ctx, Error as JsError, Object, Value};
use serde_json::{Value as Json, json};

/// A failure inside the guest, before it is serialized for the host.
pub struct GuestError {
    kind: &'static str,
    name: String,
    message: String,
    stack: Option<String>,
    methods: Option<Vec<String>>,
    cause: Option<Json>,
}

impl GuestError {
    fn new(kind: &'static str, name: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.to_owned(),
            message: message.into(),
            stack: None,
            methods: None,
            cause: None,
        }
    }

    /// No function is registered under the requested name.
    pub fn method_not_found(method: &str, methods: Vec<String>) -> Self {
        let mut error = Self::new(
            "method_not_found",
            "MethodNotFound",
            format!("no function is registered as '{method}'"),
        );
        error.methods = Some(methods);
        error
    }

    /// The params are not a JSON document.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new("invalid_params", "InvalidParams", message)
    }

    /// The function's result has no JSON form.
    pub fn not_serializable(message: impl Into<String>) -> Self {
        Self::new("not_serializable", "NotSerializable", message)
    }

    /// The function returned a Promise that nothing can settle any more.
    pub fn never_settled() -> Self {
        Self::new(
            "never_settled",
            "NeverSettled",
            "the function returned a Promise that can never settle: nothing is left to run that could resolve or reject it",
        )
    }

    /// The script registered no function at build time.
    pub fn no_methods() -> Self {
        Self::new(
            "no_methods",
            "NoMethods",
            "the script registers no function: call madrpc.register(name, fn) at its top level",
        )
    }

    /// A failure of the plugin itself, not of the user's code.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("internal", "InternalError", message)
    }

    /// Converts an error raised while running JS into a `GuestError`, taking
    /// the pending exception from the context when there is one.
    pub fn from_js(ctx: &Ctx<'_>, error: JsError) -> Self {
        match error {
            JsError::Exception => Self::from_thrown(ctx.catch()),
            other => Self::internal(other.to_string()),
        }
    }

    /// Describes a thrown JS value: an `Error` keeps its name, message and
    /// stack; any other value is described by its string form.
    pub fn from_thrown(value: Value<'_>) -> Self {
        let (name, message, stack) = match value.as_object() {
            Some(object) if object.contains_key("message").unwrap_or(false) => (
                object
                    .get::<_, Option<String>>("name")
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "Error".to_owned()),
                object
                    .get::<_, Option<String>>("message")
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
                object.get::<_, Option<String>>("stack").ok().flatten(),
            ),
            _ => ("Error".to_owned(), describe(&value), None),
        };
        let kind = if message.contains("out of memory") {
            "out_of_memory"
        } else if message.contains("stack overflow")
            || message.contains("Maximum call stack size exceeded")
        {
            "stack_overflow"
        } else {
            "threw"
        };
        let mut error = Self::new(kind, &name, message);
        error.stack = stack.filter(|s| !s.is_empty());
        if name == "RpcError" {
            error.cause = rpc_cause(&value);
        }
        error
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether this error is a resource limit (memory, stack) that must be
    /// reported as such rather than folded into another error.
    pub fn is_limit(&self) -> bool {
        matches!(self.kind, "out_of_memory" | "stack_overflow")
    }

    /// The JSON object the host decodes.
    pub fn to_json(&self) -> Vec<u8> {
        let mut object = json!({
            "kind": self.kind,
            "name": self.name,
            "message": self.message,
        });
        if let Some(stack) = &self.stack {
            object["stack"] = Json::from(stack.as_str());
        }
        if let Some(methods) = &self.methods {
            object["methods"] = Json::from(methods.clone());
        }
        if let Some(cause) = &self.cause {
            object["cause"] = cause.clone();
        }
        object.to_string().into_bytes()
    }
}

/// The `code` and the plain fields of `data` (its `kind`, limits, name and
/// message; not its stack) of a failed sub-call's `RpcError`, so the host
/// can tell which error the function let escape.
fn rpc_cause(value: &Value<'_>) -> Option<Json> {
    let object = value.as_object()?;
    let code = object.get::<_, Value>("code").ok()?.as_number()?;
    let mut cause = json!({});
    if let Ok(data) = object.get::<_, Object>("data") {
        for (key, field) in data.props::<String, Value>().flatten() {
            let plain = if let Some(text) = field.as_string() {
                text.to_string().ok().map(Json::from)
            } else if let Some(number) = field.as_int() {
                Some(Json::from(number))
            } else {
                // Limits above 2^31 (fuel) arrive as doubles; keep them whole.
                field.as_number().map(|n| {
                    if n.fract() == 0.0 && n.abs() < 9.0e15 {
                        Json::from(n as i64)
                    } else {
                        Json::from(n)
                    }
                })
            };
            if let Some(plain) = plain.filter(|_| key != "stack") {
                cause[key] = plain;
            }
        }
    }
    cause["code"] = Json::from(code as i64);
    Some(cause)
}

/// The string form of a thrown non-`Error` value, as `String(value)` gives it.
fn describe(value: &Value<'_>) -> String {
    if let Some(s) = value.as_string() {
        return s.to_string().unwrap_or_default();
    }
    value
        .ctx()
        .json_stringify(value.clone())
        .ok()
        .flatten()
        .and_then(|s| s.to_string().ok())
        .unwrap_or_else(|| format!("a thrown {}", value.type_name()))
}
