//! The web-platform globals every call can use (the WinterTC minimum
//! common API, as far as a function that computes on its arguments needs
//! it): `DOMException`, `Event`, `CustomEvent`, `EventTarget`,
//! `AbortController`, `AbortSignal`, `queueMicrotask`, `performance`,
//! `atob`, `btoa`, `URL`, `URLSearchParams`, `crypto`, `structuredClone`
//! and, with the `intl` feature, `Intl`. (`WeakRef`, `FinalizationRegistry`,
//! `TextEncoder` and `TextDecoder` are QuickJS's and Javy's.)
//!
//! They are installed once, at build time, before the user's script runs,
//! so the snapshot carries them and a call pays nothing to set them up. The
//! JavaScript halves live next to this file; each is a function of the
//! native helpers below, which stay private to them.

mod base64;
mod clock;
mod crypto;
#[cfg(feature = "intl")]
mod intl;
mod url;

pub use clock::start_call;

use crate::error::GuestError;
use javy_plugin_api::javy::quickjs::{
    Ctx, Function, Object, context::EvalOptions, function::Opt, prelude::Func,
};

/// The JavaScript halves, in the order they run: later ones use what
/// earlier ones put on the shared native object (`DOMException`, `now`).
const SOURCES: &[(&str, &str)] = &[
    ("madrpc:web/dom", include_str!("dom.js")),
    ("madrpc:web/performance", include_str!("performance.js")),
    ("madrpc:web/encoding", include_str!("encoding.js")),
    ("madrpc:web/url", include_str!("url.js")),
    ("madrpc:web/crypto", include_str!("crypto.js")),
    ("madrpc:web/clone", include_str!("clone.js")),
    #[cfg(feature = "intl")]
    ("madrpc:web/intl", include_str!("intl.js")),
];

/// Defines the globals in `ctx`. Runs at build time only.
pub fn install(ctx: &Ctx<'_>) -> Result<(), GuestError> {
    let js = |e| GuestError::from_js(ctx, e);
    let native = Object::new(ctx.clone()).map_err(js)?;
    native.set("now", Func::from(clock::now)).map_err(js)?;
    native.set("atob", Func::from(base64::decode)).map_err(js)?;
    native.set("btoa", Func::from(base64::encode)).map_err(js)?;
    native
        .set(
            "urlParse",
            Func::from(|input: String, base: Opt<String>| url::parse(input, base.0)),
        )
        .map_err(js)?;
    native.set("urlSet", Func::from(url::set)).map_err(js)?;
    native
        .set("formParse", Func::from(url::form_parse))
        .map_err(js)?;
    native
        .set("formSerialize", Func::from(url::form_serialize))
        .map_err(js)?;
    native
        .set("randomBytes", Func::from(crypto::random_bytes))
        .map_err(js)?;
    native
        .set("digest", Func::from(crypto::digest))
        .map_err(js)?;
    #[cfg(feature = "intl")]
    add_intl(ctx, &native)?;
    for &(file_name, source) in SOURCES {
        let mut options = EvalOptions::default();
        options.global = true;
        options.strict = true;
        options.backtrace_barrier = true;
        options.promise = false;
        options.filename = Some(file_name.to_owned());
        let setup: Function = ctx.eval_with_options(source, options).map_err(js)?;
        setup.call::<_, ()>((native.clone(),)).map_err(js)?;
    }
    Ok(())
}

/// `Intl`'s natives; its JavaScript half runs after the other globals.
#[cfg(feature = "intl")]
fn add_intl(ctx: &Ctx<'_>, native: &Object<'_>) -> Result<(), GuestError> {
    let js = |e| GuestError::from_js(ctx, e);
    native
        .set("intlLocale", Func::from(intl::canonical_locale))
        .map_err(js)?;
    native
        .set(
            "formatNumber",
            Func::from(
                |ctx, tag, number: Option<f64>, bigint: Option<String>, digits, style| {
                    intl::format_number(ctx, tag, number, bigint, digits, style)
                },
            ),
        )
        .map_err(js)?;
    native
        .set("pluralSelect", Func::from(intl::plural_select))
        .map_err(js)?;
    native
        .set("pluralCategories", Func::from(intl::plural_categories))
        .map_err(js)?;
    native
        .set("compare", Func::from(intl::compare))
        .map_err(js)?;
    native
        .set("formatDate", Func::from(intl::format_date))
        .map_err(js)?;
    Ok(())
}
