//! A call's params become its arguments exactly as `JSON.parse` would
//! make them, whichever way the guest reads them. Each document is sent
//! twice in one call, as a string and as JSON; the guest parses the string
//! with `JSON.parse` and compares the two values in every way JavaScript
//! can tell them apart.

mod support;

use madrpc::runtime::{CallError, Limits};
use serde_json::Value;
use support::{load_source, runtime};

const COMPARE: &str = r#"
const describe = (v) => Object.is(v, -0) ? '-0' : typeof v === 'string'
  ? JSON.stringify([...v].map((c) => c.charCodeAt(0))) : String(v);
const compare = (a, b, path) => {
  if (typeof a !== typeof b) return `${path}: ${typeof a} against ${typeof b}`;
  if (a === null || typeof a !== 'object') {
    return Object.is(a, b) ? null : `${path}: ${describe(a)} against ${describe(b)}`;
  }
  if (Array.isArray(a) !== Array.isArray(b)) return `${path}: array against non-array`;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return `${path}: prototypes differ`;
  const keys = Reflect.ownKeys(a);
  const other = Reflect.ownKeys(b);
  if (JSON.stringify(keys) !== JSON.stringify(other)) {
    return `${path}: keys ${JSON.stringify(keys)} against ${JSON.stringify(other)}`;
  }
  for (const key of keys) {
    const d = Object.getOwnPropertyDescriptor(a, key);
    const e = Object.getOwnPropertyDescriptor(b, key);
    for (const flag of ['writable', 'enumerable', 'configurable']) {
      if (d[flag] !== e[flag]) return `${path}.${key}: ${flag} differs`;
    }
    const inner = compare(d.value, e.value, `${path}.${key}`);
    if (inner) return inner;
  }
  return null;
};
madrpc.register('same_as_json_parse', (text, value) => compare(value, JSON.parse(text), '$') ?? 'same');
"#;

/// Documents that exercise every corner of `JSON.parse`: number forms,
/// escapes, duplicate and special keys, index-like keys, nesting.
const DOCUMENTS: &[&str] = &[
    r#"{"items":[{"id":1,"name":"a","qty":2,"price":0.37},{"id":2,"name":"b","qty":3,"price":12.5}]}"#,
    r#"[0, -0, 1, -1, 2147483647, 2147483648, -2147483648, -2147483649, 9007199254740993]"#,
    r#"[18446744073709551615, 18446744073709551616, 1e308, 1e400, -1e400, 5e-324, 2e-324]"#,
    r#"[0.1, 0.2, 0.30000000000000004, 1.0, 1e2, 1E-2, -0.0, 123456789.123456789, 3.141592653589793]"#,
    r#"[true, false, null, "", "plain", "é ü 中文 😀"]"#,
    r#"["\"\\\/\b\f\n\r\t", "\u0000\u001f\u00e9\u4e2d", "\ud83d\ude00", "\ud800", "\udc00x", "a\ud800\ud800b"]"#,
    r#"{"a":1,"b":2,"a":3}"#,
    r#"{"__proto__":{"polluted":true},"constructor":1,"toString":"x"}"#,
    r#"{"b":1,"2":"two","a":2,"1":"one","-1":"minus","01":"zero-one","4294967295":"big","4294967294":"max"}"#,
    r#"{"":"empty key","\u0000":"nul key","k\u00e9y":"escaped key","k\ud800":"lone key"}"#,
    r#"[[], {}, [[]], [{}], {"a":{}}, {"a":[]}]"#,
    r#"[{"x":1,"y":2},{"y":3,"x":4},{"x":5},{"x":6,"y":7,"z":8},{"x":9,"y":10}]"#,
    // Objects after the first with the same keys share its shape.
    r#"[{"a":1,"b":2,"a":3},{"a":4,"b":5,"a":6},{"a":7,"b":8},{"a":9,"b":10}]"#,
    r#"[{"__proto__":{"p":1},"x":2},{"__proto__":null,"x":4},{"__proto__":3,"x":[]}]"#,
    r#"[{"2":"a","1":"b","x":1},{"2":"c","1":"d","x":2},{"1":"e","2":"f","x":3}]"#,
    r#"[{"p":{"x":1,"y":[{"k":1},{"k":2}]},"q":2},{"p":{"x":3,"y":[{"k":3},{"j":4}]},"q":4}]"#,
    r#"[{},{},{"a":{}},{"a":{}}]"#,
    "  {\n\t\"spaced\" :\r\n [ 1 , 2 ]  }  ",
];

fn module() -> madrpc::runtime::LoadedModule {
    load_source("compare.js", COMPARE)
}

fn same_as_json_parse(module: &madrpc::runtime::LoadedModule, document: &str) -> Value {
    let params = format!("[{}, {document}]", Value::String(document.to_owned()));
    let result = runtime()
        .call(module, "same_as_json_parse", params.as_bytes())
        .result
        .unwrap_or_else(|e| panic!("{document}: {e}"));
    serde_json::from_slice(&result).expect("a JSON result")
}

#[test]
fn params_arrive_as_json_parse_makes_them() {
    let module = module();
    for document in DOCUMENTS {
        assert_eq!(same_as_json_parse(&module, document), "same", "{document}");
    }
}

#[test]
fn deep_and_wide_documents_arrive_whole() {
    let module = module();
    let deep = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
    let deep_objects = format!("{}1{}", r#"{"a":"#.repeat(300), "}".repeat(300));
    let wide: Vec<String> = (0..3000).map(|i| format!(r#""k{i}":{i}"#)).collect();
    let wide = format!("{{{}}}", wide.join(","));
    let long: Vec<String> = (0..20_000).map(|i| format!("[{i}, \"s{i}\"]")).collect();
    let long = format!("[{}]", long.join(","));
    let many_keys: Vec<String> = (0..70).map(|i| format!(r#""k{i}":{i}"#)).collect();
    let many_keys = format!("[{{{0}}},{{{0}}},{{{0}}}]", many_keys.join(","));
    let records: Vec<String> = (0..5000)
        .map(|i| format!(r#"{{"id":{i},"name":"n{i}","price":{i}.5,"tags":["t{i}"]}}"#))
        .collect();
    let records = format!("[{}]", records.join(","));
    for document in [&deep, &deep_objects, &wide, &long, &many_keys, &records] {
        assert_eq!(
            same_as_json_parse(&module, document),
            "same",
            "{}",
            &document[..60]
        );
    }
}

#[test]
fn objects_with_the_same_keys_change_independently() {
    let module = load_source(
        "mutate.js",
        r#"madrpc.register('mutate', (items) => {
            items[0].extra = 'added';
            delete items[1].b;
            items[2].a = 'changed';
            Object.defineProperty(items[3], 'a', { get: () => 'getter', enumerable: true });
            Object.freeze(items[4]);
            items[5].b = 'after the frozen one';
            return items.map((item) => [Object.keys(item), Object.values(item), Object.isFrozen(item)]);
        });"#,
    );
    let items = (0..7)
        .map(|i| format!(r#"{{"a":{i},"b":{i}}}"#))
        .collect::<Vec<_>>()
        .join(",");
    let result = runtime()
        .call(&module, "mutate", format!("[[{items}]]").as_bytes())
        .result
        .expect("the call succeeds");
    let result: Value = serde_json::from_slice(&result).expect("a JSON result");
    assert_eq!(
        result,
        serde_json::json!([
            [["a", "b", "extra"], [0, 0, "added"], false],
            [["a"], [1], false],
            [["a", "b"], ["changed", 2], false],
            [["a", "b"], ["getter", 3], false],
            [["a", "b"], [4, 4], true],
            [["a", "b"], [5, "after the frozen one"], false],
            [["a", "b"], [6, 6], false],
        ])
    );
}

#[test]
fn params_that_are_not_json_are_invalid_params() {
    let module = module();
    for bad in [r#"["a", ]"#, r#"{"a" 1}"#, "[1] x", r#"["\x"]"#, "[NaN]"] {
        match runtime()
            .call(&module, "same_as_json_parse", bad.as_bytes())
            .result
        {
            Err(CallError::InvalidParams(message)) => {
                assert!(message.contains("not valid JSON"), "{bad}: {message}")
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn params_larger_than_memory_hit_the_memory_limit() {
    let module = module();
    let limits = Limits {
        memory_bytes: 24 << 20,
        max_params_bytes: 64 << 20,
        ..Limits::default()
    };
    let items: Vec<String> = (0..200_000)
        .map(|i| format!(r#"{{"id":{i},"name":"item {i}"}}"#))
        .collect();
    let params = format!("[\"\", [{}]]", items.join(","));
    let report =
        runtime().call_with_limits(&module, "same_as_json_parse", params.as_bytes(), &limits);
    assert!(
        matches!(report.result, Err(CallError::MemoryExceeded { limit }) if limit == limits.memory_bytes),
        "{:?}",
        report.result
    );
    assert_eq!(
        same_as_json_parse(&module, "[1]"),
        "same",
        "the next call is served normally"
    );
}
