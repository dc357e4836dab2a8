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
        keys: Vec::new(),
        templates: Vec::new(),
        failed: false,
    };
    // One check of the whole document spares serde_json a check per string.
    let Ok(json) = std::str::from_utf8(json) else {
        return Ok(None);
    };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let built = Seed(&mut builder, 0)
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
    /// The elements of the arrays and the property values of the objects
    /// being built.
    values: Vec<qjs::JSValue>,
    /// The keys of the objects being built.
    keys: Vec<qjs::JSAtom>,
    /// The object last built one by one at each depth, with its keys: a
    /// later object at that depth with the same keys in the same order is
    /// made at once with its shape (`JS_NewObjectLike`).
    templates: Vec<Option<Template>>,
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

    /// Makes an object of the keys from `keys_from` and the values from
    /// `values_from` on, and takes them off their stacks.
    fn object<E: serde::de::Error>(
        &mut self,
        depth: usize,
        keys_from: usize,
        values_from: usize,
    ) -> Result<qjs::JSValue, E> {
        let count = self.keys.len() - keys_from;
        if let Some(Some(template)) = self.templates.get(depth)
            && template.keys[..] == self.keys[keys_from..]
        {
            // SAFETY: `count` owned values; when the shape is taken, their
            // ownership passes to the object (also when it fails).
            let object = unsafe {
                JS_NewObjectLike(
                    self.ctx,
                    template.object,
                    count as i32,
                    self.values[values_from..].as_mut_ptr(),
                )
            };
            // SAFETY: inspecting a value's tag.
            if !unsafe { qjs::JS_IsUninitialized(object) } {
                self.keys.truncate(keys_from);
                self.values.truncate(values_from);
                return self.made(object);
            }
        }
        // SAFETY: a plain call into QuickJS.
        let object = unsafe { qjs::JS_NewObject(self.ctx) };
        let object = self.made(object)?;
        for i in 0..count {
            let (key, value) = (self.keys[keys_from + i], self.values[values_from + i]);
            // The value now belongs to `define`.
            self.values[values_from + i] = qjs::JS_UNDEFINED;
            if let Err(e) = self.define(object, key, value) {
                // SAFETY: `object` is owned and not used again.
                unsafe { qjs::JS_FreeValue(self.ctx, object) };
                return Err(e);
            }
        }
        self.values.truncate(values_from);
        // A new template only for keys the one at this depth does not
        // already have (with them, its shape did not qualify).
        let new_keys = self
            .templates
            .get(depth)
            .and_then(Option::as_ref)
            .is_none_or(|template| template.keys[..] != self.keys[keys_from..]);
        if count > 0 && count <= MAX_TEMPLATE_KEYS && new_keys {
            if self.templates.len() <= depth {
                self.templates.resize_with(depth + 1, || None);
            }
            let keys = self.keys[keys_from..].into();
            // SAFETY: `object` is live; the template holds a reference.
            let object = unsafe { qjs::JS_DupValue(self.ctx, object) };
            if let Some(old) = self.templates[depth].replace(Template { keys, object }) {
                // SAFETY: the template's reference is its own.
                unsafe { qjs::JS_FreeValue(self.ctx, old.object) };
            }
        }
        self.keys.truncate(keys_from);
        Ok(object)
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
        for template in self.templates.drain(..).flatten() {
            // SAFETY: the template's reference is its own.
            unsafe { qjs::JS_FreeValue(self.ctx, template.object) };
        }
        for atom in self.atoms.drain(..) {
            // SAFETY: the atoms were made by this builder.
            unsafe { qjs::JS_FreeAtom(self.ctx, atom) };
        }
    }
}

/// An object built one by one, and its keys (atoms the builder holds).
struct Template {
    keys: Box<[qjs::JSAtom]>,
    object: qjs::JSValue,
}

/// Objects with more keys than this are always built one by one.
const MAX_TEMPLATE_KEYS: usize = 64;

unsafe extern "C" {
    /// Added to QuickJS by this project (`vendor/rquickjs-sys`): a new
    /// plain object with the shape of `like`, or `JS_UNINITIALIZED` when
    /// `like` was not built as a JSON parser builds objects.
    fn JS_NewObjectLike(
        ctx: *mut qjs::JSContext,
        like: qjs::JSValue,
        count: i32,
        values: *mut qjs::JSValue,
    ) -> qjs::JSValue;
}

/// Builds one value of the document, at a depth (the document is at 0).
struct Seed<'b>(&'b mut Builder, usize);

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
        let depth = self.1 + 1;
        while let Some(value) = seq.next_element_seed(Seed(builder, depth))? {
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
        let (builder, depth) = (self.0, self.1 + 1);
        let (keys_from, values_from) = (builder.keys.len(), builder.values.len());
        loop {
            let position = builder.keys.len() - keys_from;
            let Some(atom) = map.next_key_seed(Key {
                builder: &mut *builder,
                position,
            })?
            else {
                break;
            };
            let value = map.next_value_seed(Seed(&mut *builder, depth))?;
            builder.keys.push(atom);
            builder.values.push(value);
        }
        builder.object(depth, keys_from, values_from)
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
