//! JSON texts built from a fuzz input.

use crate::Tape;

pub fn value(tape: &mut Tape, depth: usize) -> String {
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

pub fn scalar(tape: &mut Tape) -> String {
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

pub fn string(tape: &mut Tape) -> String {
    let raw = String::from_utf8_lossy(tape.take(12)).into_owned();
    serde_json::to_string(&raw).unwrap_or_default()
}
