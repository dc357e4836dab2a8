//! A call's params, turned into JS values straight from the JSON bytes.
//!
//! QuickJS's `JSON.parse` was most of a data-heavy call: 125 KB of params
//! took about 3 ms to parse, against 0.2 ms for the function that used them.
//! Here `serde_json` reads the bytes and each value is built with QuickJS's
//! C API: properties are defined directly (objects with the same keys share
//! their shapes, as with `JSON.parse`), an array is made with all its
//! elements at once, and a key that repeats at the same place from object
//! to object is looked up in QuickJS's atom table once.
//!
//! The result is what `JSON.parse` gives: own data properties in document
//! order, the last of duplicate keys winning in the place of the first,
//! `__proto__` as an ordinary key, integers as small integers. A document
//! `serde_json` refuses (a lone surrogate escape, nesting deeper than 128,
//! malformed JSON) goes to `JSON.parse` instead, which decides and words
//! the error.

use javy_plugin_api::javy::quickjs::{Ctx, Error as JsError, Value, qjs};
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Parses `json` into a JS value. `Ok(None)` when `serde_json` refuses the
/// document (the caller falls back to `JSON.parse`); `Err` when QuickJS
/// failed (out of memory), with the exception pending in `ctx`.
pub fn parse<'js>(ctx: &Ctx<'js>, json: &[u8]) -> Result<Option<Value<'js>>, JsError> {
    let mut builder = Builder {
        ctx: ctx.as_raw().as_ptr(),
        atoms: Vec::new(),
        recent: Vec::new(),
        values: Vec::new(),
        failed: false,
    };
    // One check of the whole document spares serde_json a check per string.
    let Ok(json) = std::str::from_utf8(json) else {
        return Ok(None);
    };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let built = Seed(&mut builder)
        .deserialize(&mut deserializer)
        .and_then(|value| {
            deserializer.end().inspect_err(|_| {
                // SAFETY: `value` is owned and not used again.
                unsafe { qjs::JS_FreeValue(builder.ctx, value) }
            })?;
            Ok(value)
        });
    let failed = builder.failed;
    drop(builder);
    match built {
        // SAFETY: `value` is an owned value of this context.
        Ok(value) => Ok(Some(unsafe { Value::from_raw(ctx.clone(), value) })),
        Err(_) if failed => Err(JsError::Exception),
        Err(_) => Ok(None),
    }
}

/// What one parse keeps: the context, the atoms made for keys, and the
/// elements of the arrays being built.
struct Builder {
    ctx: *mut qjs::JSContext,
    /// The atoms this parse holds a reference to, released at its end.
    atoms: Vec<qjs::JSAtom>,
    /// The key last seen at each position of an object, with its atom:
    /// objects in an array mostly repeat their keys in order, and a match
    /// here costs a comparison instead of a lookup in QuickJS's atom table.
    recent: Vec<(Box<[u8]>, qjs::JSAtom)>,
    /// The elements of the arrays being built.
    values: Vec<qjs::JSValue>,
    /// QuickJS raised an exception (the error is not the document's).
    failed: bool,
}

impl Builder {
    fn atom(&mut self, position: usize, key: &[u8]) -> Option<qjs::JSAtom> {
        if let Some((recent, atom)) = self.recent.get(position)
            && **recent == *key
        {
            return Some(*atom);
        }
        // SAFETY: `key` is valid UTF-8 of the given length.
        let atom = unsafe { qjs::JS_NewAtomLen(self.ctx, key.as_ptr().cast(), key.len() as _) };
        if atom == qjs::JS_ATOM_NULL {
            self.failed = true;
            return None;
        }
        self.atoms.push(atom);
        if position < self.recent.len() {
            self.recent[position] = (key.into(), atom);
        } else if position == self.recent.len() {
            self.recent.push((key.into(), atom));
        }
        Some(atom)
    }

    /// Checks a value QuickJS made.
    fn made<E: serde::de::Error>(&mut self, value: qjs::JSValue) -> Result<qjs::JSValue, E> {
        // SAFETY: inspecting a value's tag.
        if unsafe { qjs::JS_IsException(value) } {
            self.failed = true;
            return Err(E::custom("QuickJS raised an exception"));
        }
        Ok(value)
    }

    /// Defines `key` on `object` as `JSON.parse` does (a duplicate key keeps
    /// its place and takes the last value); takes ownership of `value`.
    fn define<E: serde::de::Error>(
        &mut self,
        object: qjs::JSValue,
        key: qjs::JSAtom,
        value: qjs::JSValue,
    ) -> Result<(), E> {
        // SAFETY: `object` is a live object; the value's ownership passes to
        // QuickJS, also when it fails.
        let status = unsafe {
            qjs::JS_DefinePropertyValue(self.ctx, object, key, value, qjs::JS_PROP_C_W_E as i32)
        };
        if status < 0 {
            self.failed = true;
            return Err(E::custom("QuickJS raised an exception"));
        }
        Ok(())
    }
}

impl Drop for Builder {
    fn drop(&mut self) {
        // Values left on the stack belong to a parse that failed.
        for value in self.values.drain(..) {
            // SAFETY: every value on the stack is owned.
            unsafe { qjs::JS_FreeValue(self.ctx, value) };
        }
        for atom in self.atoms.drain(..) {
            // SAFETY: the atoms were made by this builder.
            unsafe { qjs::JS_FreeAtom(self.ctx, atom) };
        }
    }
}

/// Builds one value of the document.
struct Seed<'b>(&'b mut Builder);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = qjs::JSValue;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn int(value: i32) -> qjs::JSValue {
    qjs::JS_MKVAL(qjs::JS_TAG_INT as i32, value)
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = qjs::JSValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(qjs::JS_NULL)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(qjs::JS_MKVAL(qjs::JS_TAG_BOOL as i32, i32::from(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(match i32::try_from(value) {
            Ok(small) => int(small),
            Err(_) => qjs::JS_NewFloat64(value as f64),
        })
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(match i32::try_from(value) {
            Ok(small) => int(small),
            Err(_) => qjs::JS_NewFloat64(value as f64),
        })
    }

    fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
        // SAFETY: a plain call into QuickJS; it makes integral values small
        // integers, as `JSON.parse` does, and keeps -0.
        Ok(unsafe { qjs::JS_NewNumber(self.0.ctx, value) })
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
        // SAFETY: `value` is valid UTF-8 of the given length.
        let string =
            unsafe { qjs::JS_NewStringLen(self.0.ctx, value.as_ptr().cast(), value.len() as _) };
        self.0.made(string)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let builder = self.0;
        let start = builder.values.len();
        while let Some(value) = seq.next_element_seed(Seed(builder))? {
            builder.values.push(value);
        }
        let count = builder.values.len() - start;
        let count = i32::try_from(count).map_err(|_| A::Error::custom("array too long"))?;
        // SAFETY: `count` values, whose ownership passes to the array (also
        // when it fails).
        let array =
            unsafe { qjs::JS_NewArrayFrom(builder.ctx, count, builder.values[start..].as_ptr()) };
        builder.values.truncate(start);
        builder.made(array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let builder = self.0;
        // SAFETY: a plain call into QuickJS.
        let object = unsafe { qjs::JS_NewObject(builder.ctx) };
        let object = builder.made(object)?;
        let mut position = 0;
        let filled = loop {
            let key = map.next_key_seed(Key {
                builder: &mut *builder,
                position,
            });
            let atom = match key {
                Ok(Some(atom)) => atom,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            let defined = map
                .next_value_seed(Seed(&mut *builder))
                .and_then(|value| builder.define(object, atom, value));
            if let Err(e) = defined {
                break Err(e);
            }
            position += 1;
        };
        if let Err(e) = filled {
            // SAFETY: `object` is owned and not used again.
            unsafe { qjs::JS_FreeValue(builder.ctx, object) };
            return Err(e);
        }
        Ok(object)
    }
}

/// Reads a key into its atom.
struct Key<'b> {
    builder: &'b mut Builder,
    position: usize,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = qjs::JSAtom;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = qjs::JSAtom;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        self.builder
            .atom(self.position, key.as_bytes())
            .ok_or_else(|| E::custom("QuickJS raised an exception"))
    }
}
