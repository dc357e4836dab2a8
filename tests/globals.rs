//! The web-platform globals a function can use, called through `madrpc run`
//! and through `madrpc serve`. Expected values are Node 20's answers to the
//! same code in `tests/scripts/globals.js`, computed once and written here;
//! where Node 20 departs from the standard, the standard's answer is used
//! and the line says so.

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use support::grid::{Process, client, rpc};
use support::{build_into, run_cli, texts};
use tempfile::TempDir;

/// `globals.js`, built once per test into its own directory.
struct Module {
    dir: TempDir,
    path: PathBuf,
}

fn module() -> Module {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = build_into(dir.path(), "globals.js");
    Module { dir, path }
}

/// One call through `madrpc run`.
fn run(module: &Module, method: &str) -> Value {
    let output = run_cli(
        module.dir.path(),
        &["run", module.path.to_str().expect("UTF-8 path"), method],
    );
    let (stdout, stderr) = texts(&output);
    assert!(output.status.success(), "madrpc run {method}: {stderr}");
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("madrpc run {method} printed no JSON ({e}): {stdout}"))
}

/// `madrpc serve` of the module, on a free port.
fn serve(module: &Path) -> Process {
    Process::start(
        &support::grid::serve_args(module, &["--nodes", "1", "--workers", "1"]),
        "madrpc is serving at ",
    )
}

/// One call through the served grid's JSON-RPC endpoint.
async fn call(served: &Process, method: &str) -> Value {
    let body = json!({"jsonrpc": "2.0", "method": method, "id": 1}).to_string();
    let reply = rpc(&client(), &format!("{}/", served.url), &body)
        .await
        .json();
    reply
        .get("result")
        .cloned()
        .unwrap_or_else(|| panic!("serve {method} failed: {reply}"))
}

/// Calls `method` once through `run` and once through `serve`, and checks
/// both answers against `expected`.
async fn check(method: &str, expected: Value) {
    let module = module();
    assert_eq!(run(&module, method), expected, "madrpc run {method}");
    let served = serve(&module.path);
    assert_eq!(
        call(&served, method).await,
        expected,
        "madrpc serve {method}"
    );
}

fn expected(json: &str) -> Value {
    serde_json::from_str(json).expect("the expected value is JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn atob_and_btoa_follow_forgiving_base64() {
    check(
        "base64",
        expected(
            r##"{"btoa":["aGVsbG8sIHdvcmxk","","//4AYQ==","bnVsbA=="],
                "atob":[[104,101,108,108,111,44,32,119,111,114,108,100],[104,101,108,108,111],[97],[97],[255,254,253]],
                "errors":["DOMException InvalidCharacterError 5","DOMException InvalidCharacterError 5",
                          "DOMException InvalidCharacterError 5","DOMException InvalidCharacterError 5",
                          "DOMException InvalidCharacterError 5","TypeError"]}"##,
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn url_parses_resolves_and_sets_like_whatwg_url() {
    check(
        "url",
        expected(
            r##"{"parts":["https://user:pa%20ss@example.com:8080/a/c?x=1&y=%20z#frag","https://example.com:8080","https:","user","pa%20ss","example.com:8080","example.com","8080","/a/c","?x=1&y=%20z","#frag"],
                "relative":["http://example.org/a/d/e?q#h","http://example.org","http:","","","example.org","example.org","","/a/d/e","?q","#h"],
                "idn":["https://xn--mnchen-3ya.de/%C3%A4?%C3%B6=%C3%BC","https://xn--mnchen-3ya.de","https:","","","xn--mnchen-3ya.de","xn--mnchen-3ya.de","","/%C3%A4","?%C3%B6=%C3%BC",""],
                "changed":["https://me@example.net/new%20path?a=b%20c#top","https://example.net","https:","me","","example.net","example.net","","/new%20path","?a=b%20c","#top"],
                "linked":["https://a.example/x?k=v&k=w+x&n=1","?k=v&k=w+x&n=1",["v","w x"]],
                "reparse":["file:///tmp/x.txt","null",""],
                "json":"{\"url\":\"http://x/y\"}",
                "canParse":[true,false,true,false],
                "special":[["blob:https://a.example/uuid","https://a.example","","https://a.example/uuid"],["data:text/plain,hi","null","","text/plain,hi"],["http://[::1]/","http://[::1]","[::1]","/"],["http://127.0.0.1/","http://127.0.0.1","127.0.0.1","/"],["mailto:a@b.example","null","","a@b.example"]],
                "errors":["TypeError","TypeError","TypeError","TypeError"],
                "tag":"[object URL]"}"##,
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn url_search_params_parse_edit_sort_and_serialize() {
    check(
        "search_params",
        expected(
            r##"{"get":["1"," d e","",null],"getAll":["1","3"],"has":[true,false,true],"size":5,
                "seen":["a=1","b=2","a=3","c= d e","f="],
                "entries":[["a","1"],["b","2"],["a","3"],["c"," d e"],["f",""]],
                "keys":["a","b","a","c","f"],
                "record":"z=last&a=first+%C3%A9&%3D%26=%3F","pairs":"x=1&y=2",
                "sorted":"a=2&a=1&z=1&z=0&%C3%A9=4&%EF%BF%BD=3","set":"a=x&b=2",
                "encoded":"q=a+b%26c%3Dd%2F%C3%A9%7E*%27%28%29%21",
                "errors":["TypeError","TypeError"]}"##,
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn subtle_digest_gives_the_fips_180_examples() {
    check(
        "digest",
        expected(
            r##"{"SHA-1":["a9993e364706816aba3e25717850c26c9cd0d89d","da39a3ee5e6b4b0d3255bfef95601890afd80709"],
                "SHA-256":["ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],
                "SHA-384":["cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7","38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b"],
                "SHA-512":["ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f","cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"],
                "view":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                "rejections":["DOMException NotSupportedError","TypeError","TypeError"],
                "isPromise":true}"##,
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn structured_clone_copies_the_serializable_types() {
    check(
        "clone",
        expected(
            r##"{"distinct":true,"cycle":true,"sharedKept":true,"date":[true,"2024-02-29T12:30:00.000Z"],
                "regexp":[true,"a+b","gi"],"map":["key is shared",1],"set":3,"bytes":[true,[1,2,65535],true],
                "big":"12345678901234567890","boxed":[["object",3],["object","s"],["object",false]],
                "sparse":[3,false],"error":[true,"RangeError","out of range"],"special":[true,true,null,5,true],
                "classInstance":[true,"{\"x\":1}"],"transfer":[0,[1,2,3]],
                "errors":["DOMException DataCloneError 25","DOMException DataCloneError 25","DOMException DataCloneError 25","TypeError"]}"##,
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn abort_controller_and_signal_fire_abort_once() {
    check(
        "abort",
        expected(
            r##"{"log":["before false undefined","listener abort true true","once","onabort abort","any why","after true why true why"],
                "reason":[true,true,"AbortError","This operation was aborted",20],"thrown":true,"notAborted":true,
                "illegal":"TypeError","inherits":true,"tags":["[object AbortSignal]","[object AbortController]"]}"##,
        ),
    )
    .await;
}

/// Node 20 lets `preventDefault` in a passive listener take effect; the DOM
/// standard ignores it there ("passive false").
#[tokio::test(flavor = "multi_thread")]
async fn event_target_dispatches_in_order_and_honours_options() {
    check(
        "events",
        expected(
            r##"{"log":["fn ping 2 true","object ping","prevent true","stop","object ping","prevent false","stop","detail 1","passive false","subclass true true"],
                "result":false,"second":true,"after":[0,null,true,true],"fresh":[false,false,false,0,2],
                "errors":["TypeError","TypeError","TypeError"]}"##,
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn weak_ref_and_finalization_registry_exist() {
    check(
        "weakref",
        expected(
            r##"{"deref":true,"name":"kept","unregistered":true,"again":false,
                "tags":["[object WeakRef]","[object FinalizationRegistry]"]}"##,
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn text_encoder_and_decoder_still_work() {
    check(
        "text",
        expected(r##"{"bytes":[97,226,130,172,240,157,132,158],"back":"a€𝄞","label":"utf-8"}"##),
    )
    .await;
}

/// Newer than Node 20: the values are the ECMAScript 2024/2025 results.
#[tokio::test(flavor = "multi_thread")]
async fn the_guest_stays_ahead_of_node_20() {
    check(
        "ahead",
        expected(r##"{"groupBy":{"odd":[1,3],"even":[2,4]},"union":[1,2,3],"fromAsync":[1,2]}"##),
    )
    .await;
}

/// What exists and what is deliberately absent (Node has `fetch`, timers
/// and `process`; a madrpc function does not).
#[tokio::test(flavor = "multi_thread")]
async fn the_globals_present_and_absent() {
    check(
        "present",
        expected(
            r##"["atob: function","btoa: function","URL: function","URLSearchParams: function","crypto: object",
                "structuredClone: function","performance: object","AbortController: function","AbortSignal: function",
                "EventTarget: function","Event: function","CustomEvent: function","DOMException: function",
                "WeakRef: function","FinalizationRegistry: function","TextEncoder: function","TextDecoder: function",
                "Intl: object",
                "fetch: undefined","setTimeout: undefined","setInterval: undefined","queueMicrotask: function",
                "process: undefined","require: undefined"]"##,
        ),
    )
    .await;
}

/// The parts of a `random` answer that do not depend on the draw. The last
/// error is WebIDL's TypeError for a non-view (Node 20 says
/// TypeMismatchError).
fn check_random_shape(answer: &Value, via: &str) {
    assert_eq!(answer["uuidShape"], true, "{via}: {answer}");
    assert_eq!(answer["same"], true, "{via}: {answer}");
    assert_eq!(answer["untouched"], json!([0, 0, 0, 0]), "{via}: {answer}");
    assert_eq!(answer["bigint"], "bigint", "{via}: {answer}");
    assert_eq!(answer["max"], 65536, "{via}: {answer}");
    assert_eq!(
        answer["errors"],
        json!([
            "DOMException TypeMismatchError 17",
            "DOMException TypeMismatchError 17",
            "DOMException QuotaExceededError 22",
            "TypeError"
        ]),
        "{via}: {answer}"
    );
    assert_eq!(answer["bytes"].as_str().map(str::len), Some(64), "{via}");
}

/// Every call draws fresh entropy: no two calls, through either path, see
/// the same bytes, UUID or `Math.random()`.
#[tokio::test(flavor = "multi_thread")]
async fn random_values_differ_in_every_call() {
    let module = module();
    let mut answers = vec![run(&module, "random"), run(&module, "random")];
    let served = serve(&module.path);
    for _ in 0..3 {
        answers.push(call(&served, "random").await);
    }
    for (i, answer) in answers.iter().enumerate() {
        check_random_shape(answer, &format!("call {i}"));
    }
    for field in ["bytes", "uuid", "random"] {
        let mut values: Vec<String> = answers.iter().map(|a| a[field].to_string()).collect();
        values.sort();
        values.dedup();
        assert_eq!(values.len(), answers.len(), "{field} repeated: {answers:?}");
    }
}

/// `performance.now()` counts from the start of the call: a build-time
/// origin would put the first reading at the build's fixed clock, far from
/// zero.
#[tokio::test(flavor = "multi_thread")]
async fn performance_now_measures_the_call() {
    let module = module();
    let mut answers = vec![run(&module, "performance"), run(&module, "performance")];
    let served = serve(&module.path);
    for _ in 0..2 {
        answers.push(call(&served, "performance").await);
    }
    for answer in &answers {
        let start = answer["start"].as_f64().unwrap_or(f64::NAN);
        assert!((0.0..50.0).contains(&start), "{answer}");
        assert_eq!(answer["monotonic"], true, "{answer}");
        assert_eq!(answer["origin"], true, "{answer}");
        assert_eq!(answer["tag"], "[object Performance]", "{answer}");
        assert_eq!(answer["type"], "number", "{answer}");
    }
    let starts: Vec<String> = answers.iter().map(|a| a["start"].to_string()).collect();
    let mut distinct = starts.clone();
    distinct.dedup();
    assert!(
        distinct.len() > 1,
        "every call read the same time: {starts:?}"
    );
}

/// French groups digits with a narrow no-break space (U+202F), in Node too.
#[tokio::test(flavor = "multi_thread")]
async fn intl_number_format_and_to_locale_string() {
    check(
        "number_format",
        expected(
            r##"{"toLocale":["1,234,567.891","1,234,567.891","-0.5","1,000,000,000,000,000,000,000","0","1.01","3","-3",
                             "12,345,678,901,234,567,890","NaN","-∞"],
                "options":["1,234.50","123,000","1.5000","007","1234567","26%","12.3%","+5","0","5","1,234.57","1,000",
                           "1,234.5","1.234.567,891","1\u202f234,5","1,23,45,678"],
                "resolved":"en-US","errors":["RangeError","RangeError","RangeError"]}"##,
        ),
    )
    .await;
}

/// Node 20 lists plural categories in V8's order and answers `und` with
/// English rules; ECMA-402 (2024) orders them zero, one, two, few, many,
/// other, and CLDR's root locale has only "other".
#[tokio::test(flavor = "multi_thread")]
async fn intl_plural_rules_select_cardinals_and_ordinals() {
    check(
        "plural_rules",
        expected(
            r##"{"cardinal":["other","one","other","other","one"],"fraction":"other",
                "ordinal":["1st","2nd","3rd","4th","11th","12th","13th","21st","22nd","23rd","101st","111th"],
                "categories":[["one","other"],["one","two","few","other"]],"root":"other",
                "arabic":["zero","one","two","few","many","other"]}"##,
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn intl_collator_sorts_by_locale() {
    check(
        "collator",
        expected(
            r##"{"sorted":["äpfel","apple","b","resume","Resume","résumé","zebra","Zebra"],"base":0,"accent":-1,
                "caseOnly":[-1,0],"numeric":["item1","item2","item10"],"localeCompare":[-1,1,0,-1,1]}"##,
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn intl_date_time_format_in_utc() {
    check(
        "date_time_format",
        expected(
            r##"{"toLocale":["11/28/2026, 2:05:09 PM","11/28/2026","2:05:09 PM","11/28/2026, 2:05:09 PM","Invalid Date"],
                "styles":["Saturday, November 28, 2026","November 28, 2026","Nov 28, 2026","11/28/26"],
                "times":["2:05:09 PM Coordinated Universal Time","2:05:09 PM UTC","2:05:09 PM","2:05 PM"],
                "both":"Nov 28, 2026, 2:05 PM",
                "components":["November 28, 2026","Nov 28","Saturday","November 2026","2:05 PM","14:05","Sat, Nov 28, 2026"],
                "defaults":"11/28/2026","gb":"28/11/2026","de":"28.11.2026","resolved":["en-US","gregory","latn","UTC"],
                "errors":["TypeError","RangeError"]}"##,
        ),
    )
    .await;
}
