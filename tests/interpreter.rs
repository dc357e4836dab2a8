//! QuickJS as this project changes it (`guest-sdk/vendor/rquickjs-sys`)
//! computes what unchanged QuickJS computes.
//!
//! - Arithmetic, bitwise operators and comparisons give the same numbers
//!   whichever path QuickJS takes. The interpreter computes an int32 and a
//!   float64 meeting in an operator on a fast path of its own; with its left
//!   operand boxed, the same operator goes through the generic conversions,
//!   which serve as the reference here.
//! - `let`, `const` and `class` bindings still throw in their temporal dead
//!   zone wherever JavaScript says so, though accesses after a declaration
//!   are compiled without the check.

mod support;

use serde_json::Value;
use support::{load_source, runtime};

const SCRIPT: &str = r#"
// Values `Object()` boxes (so not null or undefined), numbers above all.
const values = [
  0, -0, 1, -1, 2, 7, 31, 32, 33, 1103515245, 2147483647, -2147483648,
  0.5, -0.5, 1.5, 2.5e-8, 12345.678, 2147483648, -2147483649, 4294967295,
  4294967296.5, -4294967297.25, 9007199254740993, 1e21, -1e21, 1e300, 5e-324,
  NaN, Infinity, -Infinity, true, '3',
];
// Each operator, and its reference with the left operand boxed.
const ops = {
  '+': [(a, b) => a + b, (a, b) => Object(a) + b],
  '-': [(a, b) => a - b, (a, b) => Object(a) - b],
  '*': [(a, b) => a * b, (a, b) => Object(a) * b],
  '/': [(a, b) => a / b, (a, b) => Object(a) / b],
  '&': [(a, b) => a & b, (a, b) => Object(a) & b],
  '|': [(a, b) => a | b, (a, b) => Object(a) | b],
  '^': [(a, b) => a ^ b, (a, b) => Object(a) ^ b],
  '<<': [(a, b) => a << b, (a, b) => Object(a) << b],
  '>>': [(a, b) => a >> b, (a, b) => Object(a) >> b],
  '>>>': [(a, b) => a >>> b, (a, b) => Object(a) >>> b],
  '<': [(a, b) => a < b, (a, b) => Object(a) < b],
  '<=': [(a, b) => a <= b, (a, b) => Object(a) <= b],
  '>': [(a, b) => a > b, (a, b) => Object(a) > b],
  '>=': [(a, b) => a >= b, (a, b) => Object(a) >= b],
  '==': [(a, b) => a == b, (a, b) => Object(a) == b],
  '!=': [(a, b) => a != b, (a, b) => Object(a) != b],
  // A boxed value is never strictly equal to anything; between numbers
  // (the only pairs the fast path takes) `==` is the reference.
  '===': [(a, b) => a === b, (a, b) => typeof a === typeof b && Object(a) == b],
  '!==': [(a, b) => a !== b, (a, b) => typeof a !== typeof b || Object(a) != b],
  '+= on a local': [(a, b) => { let x = a; x += b; return x; }, (a, b) => Object(a) + b],
};
const show = (v) => (Object.is(v, -0) ? '-0' : typeof v === 'string' ? JSON.stringify(v) : String(v));
madrpc.register('mismatches', () => {
  const found = [];
  let checked = 0;
  for (const [name, [op, reference]] of Object.entries(ops)) {
    for (const a of values) {
      for (const b of values) {
        const got = op(a, b);
        const expected = reference(a, b);
        checked++;
        if (!Object.is(got, expected)) {
          found.push(`${show(a)} ${name} ${show(b)}: ${show(got)}, expected ${show(expected)}`);
        }
      }
    }
  }
  return { checked, found: found.slice(0, 20) };
});
"#;

/// Calls `method` of a module built from `source` and returns its result.
fn call(name: &str, source: &str, method: &str, params: &[u8]) -> Value {
    let module = load_source(name, source);
    let result = runtime()
        .call(&module, method, params)
        .result
        .expect("the call succeeds");
    serde_json::from_slice(&result).expect("a JSON result")
}

#[test]
fn operators_on_mixed_integers_and_floats_match_the_generic_path() {
    let result = call("numbers.js", SCRIPT, "mismatches", b"");
    assert_eq!(result["checked"], 19 * 32 * 32, "every pair was checked");
    assert_eq!(result["found"], serde_json::json!([]), "{result}");
}

/// The loop `scripts/bench` times against Node: its result is fixed by the
/// arithmetic, so any drift in the operators shows here.
#[test]
fn the_monte_carlo_example_gives_the_numbers_of_ieee_doubles() {
    let result = call(
        "monte_carlo.js",
        include_str!("../examples/monte_carlo.js"),
        "monte_carlo_sample",
        br#"{"seed": 7, "samples": 10000}"#,
    );
    // The same generator in doubles, as JavaScript defines it: the product
    // is rounded to a double, then `&` takes it modulo 2^32.
    let next = |state: i64| {
        let product = state as f64 * 1_103_515_245.0 + 12_345.0;
        (product as i128).rem_euclid(1 << 32) as i64 & 0x7fff_ffff
    };
    let (mut state, mut inside) = (7i64, 0);
    for _ in 0..10_000 {
        state = next(state);
        let x = state as f64 / f64::from(0x7fff_ffff);
        state = next(state);
        let y = state as f64 / f64::from(0x7fff_ffff);
        if x * x + y * y <= 1.0 {
            inside += 1;
        }
    }
    assert_eq!(
        result,
        serde_json::json!({ "inside": inside, "total": 10_000 })
    );
}

const TEMPORAL_DEAD_ZONE: &str = r#"
const cases = {
  before_decl: () => { x; let x = 1; },
  before_decl_put: () => { x = 2; let x = 1; },
  self_init: () => { let x = x + 1; },
  switch_skip: () => { switch (1) { case 0: let x = 1; case 1: return x; } },
  switch_put_skip: () => { switch (1) { case 0: let x = 1; case 1: x = 5; return x; } },
  switch_ok: () => { switch (0) { case 0: let x = 1; case 1: return x; } },
  switch_block_ok: () => { switch (1) { case 1: { let y = 3; return y; } } },
  closure_before: () => { const f = () => x; f(); let x = 1; },
  closure_after: () => { const f = () => x; let x = 4; return f(); },
  hoisted_fn: () => { g(); let x = 1; function g() { return x; } },
  loop_reenter: () => { let out = []; for (let i = 0; i < 3; i++) { let v = i * 2; out.push(v); } return out.join(); },
  loop_before_in_body: () => { for (let i = 0; i < 2; i++) { if (i === 1) return y; let y = i; } },
  while_body: () => { let n = 0; while (n < 3) { const k = n; n = k + 1; } return n; },
  destructure_order: () => { let { a, b = a + 1 } = { a: 1 }; return a + b; },
  destructure_bad: () => { let { a = b, b } = {}; },
  const_assign: () => { const c = 1; c = 2; },
  const_assign_before: () => { c = 2; const c = 1; },
  typeof_before: () => { typeof x; let x; },
  let_undefined: () => { let x; return x === undefined; },
  try_finally: () => { let r; try { let t = 1; r = t; } finally { r += 1; } return r; },
  catch_scope: () => { try { throw 1; } catch (e) { let z = e + 1; return z; } },
  labeled: () => { let r = 0; out: { let q = 5; if (q) break out; r = 1; } return r; },
  class_heritage: () => { class C extends (C, Object) {} },
  class_ok: () => { class C { static f() { return C.name; } } return C.f(); },
  for_of: () => { let s = 0; for (const v of [1, 2, 3]) s += v; return s; },
  for_in_tdz: () => { for (let k in { a: k }) {} },
  gen: () => { function* g() { let a = 1; yield a; let b = a + 1; yield b; } return [...g()].join(); },
  async_like: () => { let p = Promise.resolve(1); return typeof p.then; },
  inner_block_shadow: () => { let x = 1; { let y = x; { let x = y + 1; return x; } } },
  inner_block_tdz: () => { let x = 1; { x; let x = 2; } },
  compound_before: () => { x += 1; let x = 1; },
  compound_after: () => { let x = 1; x += 1; x++; ++x; return x; },
  comma_init: () => { let a = 1, b = a + 1; return b; },
  comma_tdz: () => { let a = b, b = 1; },
  arrow_default: () => { const f = (a = 1) => { let b = a; return b; }; return f(); },
  eval_access: () => { let e = 7; return eval('e'); },
  eval_before: () => { eval('q'); let q = 1; },
  do_while: () => { let i = 0; do { let j = i; i = j + 1; } while (i < 5); return i; },
  switch_default_skip: () => { switch (3) { default: return w; case 0: let w = 1; } },
  nested_fn_loop: () => { const fs = []; for (let i = 0; i < 3; i++) fs.push(() => i); return fs.map(f => f()).join(); },
  class_computed_key: () => { class C { [C.name]() {} } },
  class_static_block: () => { class C { static { this.v = later; } } let later = 1; },
  class_static_after: () => { let before = 3; class C { static { this.v = before; } } return C.v; },
  labeled_continue: () => { let s = 0; outer: for (let i = 0; i < 3; i++) { for (let j = 0; j < 3; j++) { if (j === 1) continue outer; s += i * 10 + j; } } return s; },
  param_default_outer: () => { let base = 5; const f = (a = base) => a; return f(); },
  for_of_destructure_default: () => { let r = []; for (const { a, b = a * 2 } of [{ a: 1 }, { a: 2, b: 0 }]) r.push(a + b); return r.join(); },
  getter_in_literal: () => { let v = 9; const o = { get g() { return v; } }; return o.g; },
  finally_break: () => { let r = 0; for (;;) { try { let t = 4; r = t; break; } finally { r += 1; } } return r; },
  switch_nested_fn: () => { switch (1) { case 0: let z = 1; case 1: return typeof (() => z); } },
  switch_closure_call: () => { switch (1) { case 0: let z = 1; case 1: return (() => z)(); } },
  loop_closure_before_decl: () => { const fs = []; for (let i = 0; i < 2; i++) { fs.push(() => w); let w = i; } return fs.map(f => f()).join(); },
  while_break_then_use: () => { let k = 0; while (true) { let q = k; if (q > 2) break; k = q + 1; } return k; },
  nested_switch_in_loop: () => { let out = ''; for (let i = 0; i < 2; i++) { switch (i) { case 0: let a = 'x'; out += a; break; case 1: out += typeof i; } } return out; },
  do_while_cond_uses_body_let: () => { let n = 0; do { n++; } while (n < 3); return n; },
  try_catch_let_after: () => { try { null.x; } catch (e) {} let after = 2; return after; },
  generator_resume: () => { function* g() { const a = yield 1; let b = a + 1; yield b; } const it = g(); it.next(); return it.next(5).value; },
  async_fn: () => { async function f() { let v = await 1; return v; } return typeof f(); },
  arguments_shadow: () => { function f() { let arguments2 = arguments.length; return arguments2; } return f(1, 2); },
  destructure_array_swap: () => { let a = 1, b = 2; [a, b] = [b, a]; return a * 10 + b; },
  compound_obj: () => { let o = { n: 1 }; o.n += 1; let p = o; p.n++; return o.n; },
  const_in_switch_block_reassign: () => { switch (0) { case 0: { const c = 1; c = 2; } } },
  let_in_for_head_closure_update: () => { const fs = []; for (let i = 0; i < 3; fs.push(() => i), i++); return fs.map(f => f()).join(); },
};
madrpc.register('outcomes', () => Object.entries(cases).map(([name, f]) => {
  try {
    return `${name}: ok ${String(f())}`;
  } catch (e) {
    return `${name}: ${e.constructor.name}`;
  }
}));
"#;

/// What unchanged QuickJS gives for each case of [`TEMPORAL_DEAD_ZONE`], and
/// Node too, but for assigning a constant before its declaration: QuickJS
/// reports the assignment (`TypeError`) before the dead zone.
const OUTCOMES: &str = "before_decl: ReferenceError
before_decl_put: ReferenceError
self_init: ReferenceError
switch_skip: ReferenceError
switch_put_skip: ReferenceError
switch_ok: ok 1
switch_block_ok: ok 3
closure_before: ReferenceError
closure_after: ok 4
hoisted_fn: ReferenceError
loop_reenter: ok 0,2,4
loop_before_in_body: ReferenceError
while_body: ok 3
destructure_order: ok 3
destructure_bad: ReferenceError
const_assign: TypeError
const_assign_before: TypeError
typeof_before: ReferenceError
let_undefined: ok true
try_finally: ok 2
catch_scope: ok 2
labeled: ok 0
class_heritage: ReferenceError
class_ok: ok C
for_of: ok 6
for_in_tdz: ReferenceError
gen: ok 1,2
async_like: ok function
inner_block_shadow: ok 2
inner_block_tdz: ReferenceError
compound_before: ReferenceError
compound_after: ok 4
comma_init: ok 2
comma_tdz: ReferenceError
arrow_default: ok 1
eval_access: ok 7
eval_before: ReferenceError
do_while: ok 5
switch_default_skip: ReferenceError
nested_fn_loop: ok 0,1,2
class_computed_key: ReferenceError
class_static_block: ReferenceError
class_static_after: ok 3
labeled_continue: ok 30
param_default_outer: ok 5
for_of_destructure_default: ok 3,2
getter_in_literal: ok 9
finally_break: ok 5
switch_nested_fn: ok function
switch_closure_call: ReferenceError
loop_closure_before_decl: ok 0,1
while_break_then_use: ok 3
nested_switch_in_loop: ok xnumber
do_while_cond_uses_body_let: ok 3
try_catch_let_after: ok 2
generator_resume: ok 6
async_fn: ok object
arguments_shadow: ok 2
destructure_array_swap: ok 21
compound_obj: ok 3
const_in_switch_block_reassign: TypeError
let_in_for_head_closure_update: ok 1,2,3";

#[test]
fn lexical_bindings_throw_in_their_temporal_dead_zone_and_nowhere_else() {
    let result = call("tdz.js", TEMPORAL_DEAD_ZONE, "outcomes", b"");
    let expected: Vec<&str> = OUTCOMES.lines().collect();
    assert_eq!(result, serde_json::json!(expected));
}
