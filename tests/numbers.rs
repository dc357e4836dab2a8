//! Arithmetic, bitwise operators and comparisons give the same numbers
//! whichever path QuickJS takes. The interpreter computes an int32 and a
//! float64 meeting in an operator on a fast path of its own
//! (`guest-sdk/vendor/rquickjs-sys`); with its left operand boxed, the same
//! operator goes through the generic conversions, which serve as the
//! reference here.

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
// The loop scripts/bench times against Node: its result is fixed by the
// arithmetic, so any drift in the operators shows here.
madrpc.register('lcg', ({ seed, samples }) => {
  let state = seed;
  let inside = 0;
  for (let i = 0; i < samples; i++) {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    const x = state / 0x7fffffff;
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    const y = state / 0x7fffffff;
    if (x * x + y * y <= 1) inside++;
  }
  return { inside, state };
});
"#;

#[test]
fn operators_on_mixed_integers_and_floats_match_the_generic_path() {
    let module = load_source("numbers.js", SCRIPT);
    let result = runtime()
        .call(&module, "mismatches", b"")
        .result
        .expect("the call succeeds");
    let result: Value = serde_json::from_slice(&result).expect("a JSON result");
    assert_eq!(result["checked"], 19 * 32 * 32, "every pair was checked");
    assert_eq!(result["found"], serde_json::json!([]), "{result}");
}

#[test]
fn the_monte_carlo_generator_gives_the_numbers_of_ieee_doubles() {
    let module = load_source("numbers.js", SCRIPT);
    let result = runtime()
        .call(&module, "lcg", br#"{"seed": 7, "samples": 10000}"#)
        .result
        .expect("the call succeeds");
    let result: Value = serde_json::from_slice(&result).expect("a JSON result");
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
        serde_json::json!({ "inside": inside, "state": state })
    );
}
