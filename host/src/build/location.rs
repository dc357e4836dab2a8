//! Finding `file:line:column` in a QuickJS stack trace.

use std::fmt;

/// A place in the user's script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    /// The script's file name.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column, when known.
    pub column: Option<u32>,
}

impl SourceLocation {
    /// The first `file:line[:column]` frame of `text` that names `file`.
    pub fn find_in(text: &str, file: &str) -> Option<SourceLocation> {
        let needle = format!("{file}:");
        let mut rest = text;
        while let Some(at) = rest.find(&needle) {
            rest = &rest[at + needle.len()..];
            let (line, after_line) = leading_number(rest);
            if let Some(line) = line {
                let column = after_line
                    .strip_prefix(':')
                    .and_then(|s| leading_number(s).0);
                return Some(SourceLocation {
                    file: file.to_owned(),
                    line: Some(line),
                    column,
                });
            }
        }
        None
    }
}

/// The decimal number at the start of `text`, and what follows it.
fn leading_number(text: &str) -> (Option<u32>, &str) {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    (text[..digits].parse().ok(), &text[digits..])
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_line_and_column_in_a_frame() {
        let stack = "    at boom (lib.js:1:1)\n    at <eval> (app.js:12:7)\n";
        let location = SourceLocation::find_in(stack, "app.js").unwrap();
        assert_eq!(location.to_string(), "app.js:12:7");
    }

    #[test]
    fn finds_a_line_without_column() {
        let location = SourceLocation::find_in("at app.js:3\n", "app.js").unwrap();
        assert_eq!(location.to_string(), "app.js:3");
    }

    #[test]
    fn ignores_other_files() {
        assert_eq!(SourceLocation::find_in("at other.js:1:2", "app.js"), None);
    }
}
