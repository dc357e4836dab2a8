//! Fuzz targets, on stable Rust with `bolero`: the JSON-RPC request parser,
//! the node protocol (a node's `POST /v1/call/{method}`, a gateway in front
//! of a node, and the gateway's reading of whatever a node replies), and
//! module loading. Under `cargo test` each target runs
//! random inputs for `BOLERO_RANDOM_TEST_TIME_MS` (default 1 s);
//! `scripts/fuzz SECONDS` runs each for longer.

mod support;

use madrpc::rpc::{Entry, Incoming, codes};
use madrpc::runtime::{Limits, Runtime, RuntimeConfig};
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Duration;
use support::grid::{Process, TEST_TOKEN};

/// Reads choices and bytes off a fuzz input; past its end it reads zeros.
struct Tape<'a> {
    bytes: &'a [u8],
}

impl<'a> Tape<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn byte(&mut self) -> u8 {
        let (first, rest) = self.bytes.split_first().unwrap_or((&0, &[]));
        self.bytes = rest;
        *first
    }

    fn below(&mut self, n: usize) -> usize {
        let wide = u16::from_le_bytes([self.byte(), self.byte()]);
        usize::from(wide) % n.max(1)
    }

    fn take(&mut self, max: usize) -> &'a [u8] {
        let len = self.below(max + 1).min(self.bytes.len());
        let (taken, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        taken
    }

    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len())]
    }
}

// ---- the JSON-RPC request parser ----

/// A JSON text built from the tape: mostly request-shaped, sometimes broken.
fn request_body(tape: &mut Tape) -> String {
    match tape.below(8) {
        0 => String::from_utf8_lossy(tape.take(64)).into_owned(),
        1 | 2 => {
            let entries: Vec<String> = (0..tape.below(6)).map(|_| entry_text(tape)).collect();
            format!("[{}]", entries.join(tape.pick(&[",", " , ", ",\n"])))
        }
        3 => {
            let body = entry_text(tape);
            let cut = tape.below(body.len() + 1);
            String::from_utf8_lossy(&body.as_bytes()[..cut]).into_owned()
        }
        _ => entry_text(tape),
    }
}

fn entry_text(tape: &mut Tape) -> String {
    if tape.below(6) == 0 {
        return scalar(tape);
    }
    let mut members = Vec::new();
    for _ in 0..tape.below(6) + 1 {
        let member = match tape.below(6) {
            0 => format!(
                r#""jsonrpc":{}"#,
                tape.pick(&[r#""2.0""#, r#""1.0""#, "2", "null", r#""2.0\u0000""#])
            ),
            1 => format!(
                r#""method":{}"#,
                tape.pick(&[
                    r#""add""#,
                    r#""rpc.discover""#,
                    r#""rpc.x""#,
                    r#""""#,
                    r#""\u00e9\ud83d\ude00""#,
                    "1",
                    "null",
                    "[]"
                ])
            ),
            2 => format!(r#""params":{}"#, value(tape, 3)),
            3 => format!(r#""id":{}"#, value(tape, 2)),
            4 => format!("{}:{}", string(tape), value(tape, 2)),
            _ => String::from(r#""jsonrpc":"2.0","method":"add""#),
        };
        members.push(member);
    }
    format!("{{{}}}", members.join(","))
}

fn value(tape: &mut Tape, depth: usize) -> String {
    match (tape.below(5), depth) {
        (0, d) if d > 0 => {
            let items: Vec<String> = (0..tape.below(4)).map(|_| value(tape, d - 1)).collect();
            format!("[{}]", items.join(","))
        }
        (1, d) if d > 0 => {
            let items: Vec<String> = (0..tape.below(4))
                .map(|_| format!("{}:{}", string(tape), value(tape, d - 1)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        _ => scalar(tape),
    }
}

fn scalar(tape: &mut Tape) -> String {
    match tape.below(4) {
        0 => string(tape),
        1 => tape
            .pick(&[
                "0",
                "-1",
                "1.0",
                "1e400",
                "-0",
                "12345678901234567890123",
                "0.5e-3",
            ])
            .to_owned(),
        2 => tape.pick(&["null", "true", "false"]).to_owned(),
        _ => format!("{}", tape.below(100_000)),
    }
}

fn string(tape: &mut Tape) -> String {
    let raw = String::from_utf8_lossy(tape.take(12)).into_owned();
    serde_json::to_string(&raw).unwrap_or_default()
}

/// The members of an object in order, duplicates kept.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// What the specification says an entry is: a call, an invalid request, or
/// a request with invalid params.
#[derive(Debug, PartialEq)]
enum Verdict {
    Call { id: Option<String>, method: String },
    InvalidRequest,
    InvalidParams { id: Option<String> },
}

fn verdict(raw: &RawValue) -> Verdict {
    let Ok(Members(members)) = serde_json::from_str::<Members>(raw.get()) else {
        return Verdict::InvalidRequest;
    };
    // A member of the protocol given twice makes the request ambiguous.
    let twice = |name: &str| members.iter().filter(|(n, _)| n == name).count() > 1;
    if ["jsonrpc", "method", "params", "id"].into_iter().any(twice) {
        return Verdict::InvalidRequest;
    }
    let get = |name: &str| {
        members
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.get())
    };
    let string = |json: Option<&str>| json.and_then(|j| serde_json::from_str::<String>(j).ok());
    if string(get("jsonrpc")).as_deref() != Some("2.0") {
        return Verdict::InvalidRequest;
    }
    let id = get("id");
    let id_ok = id.is_none_or(|id| {
        id == "null"
            || id.starts_with('"')
            || id.starts_with('-')
            || id.starts_with(|c: char| c.is_ascii_digit())
    });
    if !id_ok {
        return Verdict::InvalidRequest;
    }
    let Some(method) = string(get("method")) else {
        return Verdict::InvalidRequest;
    };
    let id = id.map(str::to_owned);
    match get("params") {
        Some(p) if !(p.starts_with('[') || p.starts_with('{')) => Verdict::InvalidParams { id },
        _ => Verdict::Call { id, method },
    }
}

fn parsed_verdict(entry: &Entry) -> Verdict {
    match entry {
        Entry::Call(call) => Verdict::Call {
            id: call.id.map(|id| id.get().to_owned()),
            method: call.method.clone().into_owned(),
        },
        Entry::Invalid { error, id } if error.code == codes::INVALID_PARAMS => {
            Verdict::InvalidParams {
                id: id.map(|id| id.get().to_owned()),
            }
        }
        Entry::Invalid { error, id } => {
            assert_eq!(error.code, codes::INVALID_REQUEST, "{error:?}");
            assert!(
                id.is_none(),
                "an invalid request is answered with a null id"
            );
            Verdict::InvalidRequest
        }
    }
}

/// The parser's answer agrees with the specification read independently.
fn check_parse(body: &[u8]) {
    let root = std::str::from_utf8(body)
        .ok()
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
    match (madrpc::rpc::parse(body), root) {
        (Err(error), None) => assert_eq!(error.code, codes::PARSE_ERROR),
        (Err(error), Some(_)) => panic!("valid JSON refused: {error:?}"),
        (Ok(_), None) => panic!("a body that is not JSON was accepted"),
        (Ok(Incoming::Single(entry)), Some(root)) => {
            let expected = if root.get().starts_with('[') {
                Verdict::InvalidRequest // only the empty batch is a single entry
            } else {
                verdict(root)
            };
            assert_eq!(parsed_verdict(&entry), expected, "{}", root.get());
        }
        (Ok(Incoming::Batch(entries)), Some(root)) => {
            let members: Vec<&RawValue> =
                serde_json::from_str(root.get()).expect("a batch is an array");
            assert_eq!(entries.len(), members.len());
            for (entry, member) in entries.iter().zip(members) {
                assert_eq!(parsed_verdict(entry), verdict(member), "{}", member.get());
            }
        }
    }
}

#[test]
fn request_parser_on_arbitrary_bytes() {
    bolero::check!().for_each(check_parse);
}

#[test]
fn request_parser_on_request_shaped_json() {
    bolero::check!().for_each(|input: &[u8]| {
        let body = request_body(&mut Tape::new(input));
        check_parse(body.as_bytes());
    });
}

// ---- module loading ----

const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

/// A runtime that compiles every module afresh (no cache to fill).
fn fuzz_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            limits: Limits {
                fuel: 50_000_000,
                memory_bytes: 32 << 20,
                deadline: Duration::from_secs(2),
                ..Limits::default()
            },
            max_instances: 8,
            cache: None,
        })
        .expect("the runtime starts")
    })
}

/// A real module, built once.
fn real_module() -> &'static [u8] {
    static MODULE: OnceLock<Vec<u8>> = OnceLock::new();
    MODULE.get_or_init(|| {
        madrpc::build::build_source("fuzz.js", "madrpc.register('add', (a, b) => a + b);")
            .expect("the script builds")
            .wasm
    })
}

fn with_custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut wasm = EMPTY_MODULE.to_vec();
    wasm.push(0);
    let mut section = Vec::new();
    wasm_encoder::Encode::encode(&name, &mut section);
    section.extend_from_slice(payload);
    wasm_encoder::Encode::encode(&(section.len() as u32), &mut wasm);
    wasm.extend_from_slice(&section);
    wasm
}

/// Module bytes made from the tape: raw bytes, a damaged real module, or a
/// module whose madrpc manifest says anything.
fn damaged_module(tape: &mut Tape) -> Vec<u8> {
    match tape.below(8) {
        0 => tape.take(4096).to_vec(),
        1 => [EMPTY_MODULE, tape.take(4096)].concat(),
        2 => {
            let real = real_module();
            real[..tape.below(real.len() + 1)].to_vec()
        }
        3 => {
            // A few bytes overwritten, mostly in the sections' headers.
            let mut wasm = real_module().to_vec();
            for _ in 0..tape.below(4) + 1 {
                let at = if tape.byte().is_multiple_of(4) {
                    tape.below(wasm.len())
                } else {
                    tape.below(wasm.len().min(4096))
                };
                wasm[at] = tape.byte();
            }
            wasm
        }
        4 => with_custom_section(madrpc::manifest::SECTION_NAME, tape.take(512)),
        5 => {
            let manifest = format!(
                r#"{{"abi":{},"script":{},"methods":[{}]}}"#,
                tape.pick(&["1", "0", "2", "-1", "4294967296", "1.5", "null"]),
                string(tape),
                (0..tape.below(3))
                    .map(|_| string(tape))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            with_custom_section(madrpc::manifest::SECTION_NAME, manifest.as_bytes())
        }
        6 => {
            // The real module with a second manifest appended.
            let mut wasm = real_module().to_vec();
            let section = with_custom_section(madrpc::manifest::SECTION_NAME, tape.take(256));
            wasm.extend_from_slice(&section[EMPTY_MODULE.len()..]);
            wasm
        }
        _ => [real_module(), tape.take(256)].concat(),
    }
}

#[test]
fn module_loading_refuses_damaged_modules_without_crashing() {
    bolero::check!().for_each(|input: &[u8]| {
        let runtime = fuzz_runtime();
        let wasm = damaged_module(&mut Tape::new(input));
        // Loading either fails with an error or gives a module that runs
        // calls under the limits; it never panics or aborts.
        if let Ok(module) = runtime.load(&wasm) {
            let report = runtime.call(&module, "add", b"[1, 2]");
            if let Ok(result) = &report.result {
                serde_json::from_slice::<IgnoredAny>(result).expect("a result is JSON");
            }
        }
    });
}

#[test]
fn a_node_given_a_broken_module_exits_with_an_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let real = real_module();
    for (name, bytes) in [
        ("text.wasm", b"console.log(1)".to_vec()),
        ("truncated.wasm", real[..real.len() / 2].to_vec()),
        ("bare.wasm", EMPTY_MODULE.to_vec()),
        (
            "manifest.wasm",
            with_custom_section(madrpc::manifest::SECTION_NAME, b"{\"abi\":"),
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("the module is written");
        let output = support::run_cli(
            dir.path(),
            &[
                "node",
                "--module",
                path.to_str().expect("UTF-8"),
                "--listen",
                "127.0.0.1:0",
                "--insecure-public-calls",
            ],
        );
        let (_, stderr) = support::texts(&output);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(stderr.contains("module"), "{name}: {stderr}");
    }
}

// ---- the node protocol ----

/// The data kinds the error table names.
const KINDS: &[&str] = &[
    "parse_error",
    "invalid_request",
    "method_not_found",
    "invalid_params",
    "internal",
    "guest_threw",
    "fuel_exhausted",
    "memory_exceeded",
    "deadline_exceeded",
    "stack_overflow",
    "not_serializable",
    "never_settled",
    "guest_crashed",
    "params_too_large",
    "result_too_large",
    "body_too_large",
    "batch_too_large",
    "overloaded",
    "no_healthy_node",
    "node_failed",
    "call_depth_exceeded",
    "too_many_subcalls",
    "unauthorized",
];

fn fuzz_tokio() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Runtime::new().expect("a tokio runtime"))
}

/// One HTTP client for the targets that talk to processes.
fn fuzz_http() -> &'static madrpc::http::HttpClient {
    static HTTP: OnceLock<madrpc::http::HttpClient> = OnceLock::new();
    HTTP.get_or_init(support::grid::client)
}

const NODE_LIMITS: &[&str] = &[
    "--fuel",
    "50000000",
    "--deadline",
    "1s",
    "--max-params",
    "64KiB",
    "--max-body",
    "128KiB",
];

fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A header value from the tape: numbers in and out of range, or junk.
fn header_value(tape: &mut Tape) -> Option<String> {
    match tape.below(6) {
        0 => None,
        1 => Some(
            tape.pick(&[
                "0",
                "1",
                "8",
                "4294967295",
                "4294967296",
                "18446744073709551615",
                "99999999999999999999",
                "-1",
                " 3 ",
                "1e3",
            ])
            .to_owned(),
        ),
        2 => Some(tape.below(20_000).to_string()),
        _ => Some(
            String::from_utf8_lossy(tape.take(16))
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .collect(),
        ),
    }
}

/// Checks one reply of the node protocol: marked, a known status, and the
/// body that status promises.
fn check_node_reply(status: u16, headers: &hyper::HeaderMap, body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    if headers.get("x-madrpc-node-reply").is_none_or(|v| v != "1") {
        return Err(format!("an unmarked reply: HTTP {status} {text}"));
    }
    match status {
        200 => serde_json::from_slice::<IgnoredAny>(body)
            .map(|_| ())
            .map_err(|e| format!("a result that is not JSON ({e}): {text}")),
        401 | 413 | 422 | 503 => {
            let error: Value = serde_json::from_slice(body)
                .map_err(|e| format!("HTTP {status}, not JSON ({e}): {text}"))?;
            let kind = error["data"]["kind"].as_str().unwrap_or_default();
            if error["code"].as_i64().is_none()
                || !error["message"].is_string()
                || (status != 401 && !KINDS.contains(&kind))
            {
                return Err(format!(
                    "HTTP {status} without a JSON-RPC error object: {text}"
                ));
            }
            Ok(())
        }
        other => Err(format!("HTTP {other} outside the node protocol: {text}")),
    }
}

#[test]
fn node_call_route_answers_arbitrary_requests_in_protocol() {
    let mut args = vec!["--workers", "2"];
    args.extend_from_slice(NODE_LIMITS);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let node = Process::node(&support::build_into(dir.path(), "sandbox.js"), &args);
    let url = node.url.clone();
    bolero::check!().for_each(|input: &[u8]| {
        let http = fuzz_http();
        let mut tape = Tape::new(input);
        let method: Vec<u8> = match tape.below(3) {
            0 => tape
                .pick(&[
                    "add",
                    "echo",
                    "throws",
                    "throws_string",
                    "spin_for",
                    "big_result",
                    "never_settles",
                    "returns_cycle",
                    "nope",
                    "rpc.discover",
                    "%",
                    "..",
                ])
                .as_bytes()
                .to_vec(),
            // The route needs a segment: `/v1/call/` is no call at all.
            _ => [tape.take(24), b"_"].concat(),
        };
        let body: Vec<u8> = match tape.below(3) {
            0 => tape.take(256).to_vec(),
            _ => value(&mut tape, 3).into_bytes(),
        };
        let mut request =
            hyper::Request::post(format!("{url}/v1/call/{}", percent_encode(&method)))
                .header("content-type", "application/json");
        match tape.below(6) {
            0 => {}
            1 => request = request.header("authorization", "Bearer wrong"),
            _ => request = request.header("authorization", format!("Bearer {TEST_TOKEN}")),
        }
        for name in ["x-madrpc-depth", "x-madrpc-deadline-ms"] {
            if let Some(value) = header_value(&mut tape) {
                request = request.header(name, value);
            }
        }
        let request = request
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .expect("a request");
        let (status, headers, reply) = fuzz_tokio().block_on(async {
            let response = tokio::time::timeout(Duration::from_secs(10), http.request(request))
                .await
                .expect("the node answers within 10 s")
                .expect("the node is reachable");
            let (parts, body) = response.into_parts();
            let body = http_body_util::BodyExt::collect(body)
                .await
                .expect("a body")
                .to_bytes();
            (parts.status.as_u16(), parts.headers, body)
        });
        if let Err(problem) = check_node_reply(status, &headers, &reply) {
            panic!("POST /v1/call/{}: {problem}", percent_encode(&method));
        }
    });
    let health = fuzz_tokio().block_on(support::grid::get_json(
        fuzz_http(),
        &format!("{url}/health"),
    ));
    assert_eq!(health["status"], "ok", "{health}");
}

#[test]
fn client_requests_never_take_a_node_out_of_rotation() {
    let grid = fuzz_tokio().block_on(support::grid::Grid::start("sandbox.js", 1, NODE_LIMITS));
    let url = grid.url();
    let gateway = grid.gateway.url.clone();
    bolero::check!().for_each(|input: &[u8]| {
        let http = fuzz_http();
        let mut tape = Tape::new(input);
        let body = request_body(&mut tape);
        let deadline = header_value(&mut tape);
        let depth = header_value(&mut tape);
        fuzz_tokio().block_on(async {
            let mut headers = Vec::new();
            if let Some(value) = &deadline {
                headers.push(("x-madrpc-deadline-ms", value.as_str()));
            }
            if let Some(value) = &depth {
                headers.push(("x-madrpc-depth", value.as_str()));
            }
            let reply =
                support::grid::post_with(http, &url, "application/json", &headers, body.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{body}: {e}"));
            if reply.status != 204 {
                // Ids are echoed byte for byte, so read them as raw JSON.
                #[derive(serde::Deserialize)]
                struct Response<'a> {
                    #[serde(borrow)]
                    #[allow(dead_code)]
                    id: &'a RawValue,
                    error: Option<Value>,
                }
                let text = String::from_utf8_lossy(&reply.body);
                let batch = reply.body.first() == Some(&b'[');
                let replies = if batch {
                    serde_json::from_slice::<Vec<Response>>(&reply.body)
                } else {
                    serde_json::from_slice::<Response>(&reply.body).map(|one| vec![one])
                }
                .unwrap_or_else(|e| panic!("{body}: a reply that is not JSON-RPC ({e}): {text}"));
                for response in replies {
                    let kind = response.error.as_ref().map(|e| e["data"]["kind"].clone());
                    assert!(
                        !matches!(
                            kind.as_ref().and_then(Value::as_str),
                            Some("node_failed" | "no_healthy_node" | "internal")
                        ),
                        "{body} -> {text}"
                    );
                }
            }
            let available = support::grid::available_nodes(http, &gateway).await;
            assert_eq!(available, 1, "{body} took the node out of rotation");
        });
    });
}

/// `Some` for a member that is present, even when it is `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as serde::Deserialize>::deserialize(d).map(Some)
}

/// What the stand-in node answers on its call route.
#[derive(Debug, Clone, Default)]
struct NodeReply {
    status: u16,
    mark: Option<&'static str>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

impl NodeReply {
    fn from_tape(tape: &mut Tape) -> Self {
        if tape.below(3) == 0 {
            return Self::arbitrary(tape);
        }
        // Mostly replies of the protocol, which leave the node in rotation.
        let status = tape.pick(&[200, 200, 422, 413]);
        let body = match status {
            200 => value(tape, 4),
            _ => format!(
                r#"{{"code":{},"message":{},"data":{{"kind":"guest_threw","extra":{}}}}}"#,
                tape.pick(&["-32000", "-32001", "-32007", "-1"]),
                string(tape),
                value(tape, 2),
            ),
        };
        Self {
            status,
            mark: Some("1"),
            content_type: Some("application/json"),
            body: body.into_bytes(),
        }
    }

    fn arbitrary(tape: &mut Tape) -> Self {
        let status = tape.pick(&[
            200, 200, 200, 422, 422, 413, 503, 401, 400, 404, 500, 204, 302,
        ]);
        let body = match tape.below(5) {
            0 => tape.take(64).to_vec(),
            1 | 2 => format!(
                r#"{{"code":{},"message":{},"data":{{"kind":{}}}}}"#,
                tape.pick(&[
                    "-32000", "-32001", "-32010", "-32603", "1", "\"x\"", "1e400"
                ]),
                string(tape),
                tape.pick(&[
                    r#""guest_threw""#,
                    r#""fuel_exhausted""#,
                    r#""overloaded""#,
                    "null"
                ]),
            )
            .into_bytes(),
            _ => value(tape, 4).into_bytes(),
        };
        Self {
            status,
            mark: tape.pick(&[Some("1"), Some("1"), Some("1"), Some("0"), None]),
            content_type: tape.pick(&[
                Some("application/json"),
                Some("application/json"),
                Some("Application/JSON; charset=utf-8"),
                Some("text/plain"),
                None,
            ]),
            body,
        }
    }

    /// Whether this is a reply of the node protocol that carries a result.
    fn is_result(&self) -> bool {
        self.status == 200
            && self.mark == Some("1")
            && self
                .content_type
                .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"))
            && std::str::from_utf8(&self.body)
                .is_ok_and(|t| serde_json::from_str::<&RawValue>(t).is_ok())
    }
}

/// A stand-in for a node: healthy on `/health`, and on its call route
/// whatever the current [`NodeReply`] says.
async fn stand_in_node(reply: std::sync::Arc<std::sync::Mutex<NodeReply>>) -> String {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    let call = move || {
        let reply = reply.lock().unwrap_or_else(|p| p.into_inner()).clone();
        async move {
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
            let mut response = (status, reply.body).into_response();
            let headers = response.headers_mut();
            headers.remove(header::CONTENT_TYPE);
            if let Some(mark) = reply.mark {
                headers.insert("x-madrpc-node-reply", HeaderValue::from_static(mark));
            }
            if let Some(content_type) = reply.content_type {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            }
            response
        }
    };
    let health = || async {
        let mut response =
            axum::Json(serde_json::json!({"status": "ok", "methods": ["echo"]})).into_response();
        response
            .headers_mut()
            .insert("x-madrpc-node-reply", HeaderValue::from_static("1"));
        response
    };
    let app = axum::Router::new()
        .route("/health", axum::routing::get(health))
        .route("/v1/call/{method}", axum::routing::post(call));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[test]
fn gateway_passes_on_only_node_protocol_replies() {
    let reply = std::sync::Arc::new(std::sync::Mutex::new(NodeReply {
        status: 200,
        mark: Some("1"),
        content_type: Some("application/json"),
        body: b"1".to_vec(),
    }));
    let node = fuzz_tokio().block_on(stand_in_node(reply.clone()));
    // A gateway that takes the stand-in as its node; a fresh one replaces
    // it once it ejected the node, so the fuzzer does not wait out backoffs.
    let start = || {
        let gateway = Process::gateway(&["--node", &node]);
        let ready = fuzz_tokio().block_on(support::grid::nodes_become_available(
            fuzz_http(),
            &gateway.url,
            1,
            Duration::from_secs(30),
        ));
        assert!(ready, "the stand-in node never became available");
        gateway
    };
    let gateway = std::panic::AssertUnwindSafe(std::sync::Mutex::new(start()));
    let shared = std::panic::AssertUnwindSafe(reply);
    static OUTCOMES: [std::sync::atomic::AtomicUsize; 3] =
        [const { std::sync::atomic::AtomicUsize::new(0) }; 3];
    let count = |i: usize| OUTCOMES[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    bolero::check!().for_each(|input: &[u8]| {
        let next = NodeReply::from_tape(&mut Tape::new(input));
        *shared.lock().unwrap_or_else(|p| p.into_inner()) = next.clone();
        let body = r#"{"jsonrpc":"2.0","method":"echo","params":[1],"id":"q"}"#;
        let mut gateway = gateway.lock().unwrap_or_else(|p| p.into_inner());
        let url = format!("{}/", gateway.url);
        let answer = fuzz_tokio().block_on(support::grid::rpc(fuzz_http(), &url, body));
        #[derive(serde::Deserialize)]
        struct Response<'a> {
            #[serde(borrow, default, deserialize_with = "present")]
            result: Option<&'a RawValue>,
            error: Option<Value>,
        }
        let text = String::from_utf8_lossy(&answer.body);
        let response: Response = serde_json::from_slice(&answer.body)
            .unwrap_or_else(|e| panic!("{next:?}: a reply that is not JSON-RPC ({e}): {text}"));
        if let Some(result) = response.result {
            assert!(
                next.is_result(),
                "{next:?} reached the client as a result: {text}"
            );
            assert_eq!(
                result.get().as_bytes(),
                String::from_utf8_lossy(&next.body).trim().as_bytes(),
                "{next:?}"
            );
            count(0);
            return;
        }
        let error = response
            .error
            .unwrap_or_else(|| panic!("{next:?}: neither result nor error: {text}"));
        assert!(
            error["code"].is_i64() && error["message"].is_string(),
            "{next:?}: {text}"
        );
        let kind = error["data"]["kind"].as_str().unwrap_or_default();
        if matches!(kind, "node_failed" | "no_healthy_node" | "overloaded") {
            count(2);
            *gateway = start();
        } else {
            count(1);
            // Any other error is the node's own error object, passed on
            // only from an error reply of the protocol.
            assert!(
                matches!(next.status, 413 | 422 | 503) && next.mark == Some("1"),
                "{next:?} -> {text}"
            );
            let sent: Value = serde_json::from_slice(&next.body).expect("the error sent was JSON");
            assert_eq!(error["code"], sent["code"], "{next:?} -> {text}");
        }
    });
    let [results, errors, refusals] = OUTCOMES
        .each_ref()
        .map(|n| n.load(std::sync::atomic::Ordering::Relaxed));
    eprintln!(
        "results passed on: {results}, call errors: {errors}, the gateway's own errors: {refusals}"
    );
}

#[test]
fn a_method_name_that_is_not_utf8_gets_a_node_protocol_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let node = Process::node(&support::build_into(dir.path(), "sandbox.js"), NODE_LIMITS);
    let request = hyper::Request::post(format!("{}/v1/call/%FF%FE", node.url))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TEST_TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"[]")))
        .expect("a request");
    let (status, headers, body) = fuzz_tokio().block_on(async {
        let response = fuzz_http()
            .request(request)
            .await
            .expect("the node answers");
        let (parts, body) = response.into_parts();
        let body = http_body_util::BodyExt::collect(body)
            .await
            .expect("a body")
            .to_bytes();
        (parts.status.as_u16(), parts.headers, body)
    });
    check_node_reply(status, &headers, &body).unwrap_or_else(|problem| panic!("{problem}"));
    let error: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        (status, &error["data"]["kind"]),
        (422, &Value::from("method_not_found"))
    );
}
