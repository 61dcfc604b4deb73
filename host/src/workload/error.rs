//! Why a workload file was rejected.

use std::fmt;
use std::ops::Range;

/// A workload file that cannot be run: which file, where, which field, why.
///
/// Displays on one line as `FILE:LINE: FIELD: REASON` (without `:LINE`
/// when the problem has no single place in the file).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct WorkloadError {
    /// The workload file (or the name of a bundled workload).
    pub file: String,
    /// The 1-based line the problem is on.
    pub line: Option<usize>,
    /// The field, as a dotted path (`read.max`, `thread[2].script[0].len`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}: {}", self.file, self.field, self.reason),
            None => write!(f, "{}: {}: {}", self.file, self.field, self.reason),
        }
    }
}

/// The 1-based line of byte offset `offset` in `source`.
pub(crate) fn line_of(source: &str, offset: usize) -> usize {
    let offset = offset.min(source.len());
    source.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted field path at `span` in a TOML `source`, for parse errors
/// (which carry a span but not a path): the enclosing `[table]` or
/// `[[array]]` header, then the key whose value the span covers, or the
/// key named by an "unknown field" message.
pub(crate) fn field_at(source: &str, span: &Range<usize>, message: &str) -> String {
    let start = span.start.min(source.len());
    let before = &source[..start];
    // The innermost table header above the span, `[[x]]` numbered.
    let mut header = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for line in before.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_owned();
            let n = match counts.iter_mut().find(|(k, _)| *k == name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    counts.push((name.clone(), 0));
                    0
                }
            };
            header = format!("{name}[{n}]");
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            header = name.trim().to_owned();
        }
    }
    let key = quoted_after(message, "unknown field `")
        .or_else(|| quoted_after(message, "missing field `"))
        .or_else(|| key_before(before))
        .or_else(|| {
            // The span is the key itself.
            let text = source.get(span.clone()).unwrap_or("");
            let key = text.trim().trim_matches('"');
            (!key.is_empty() && key.chars().all(is_key_char)).then(|| key.to_owned())
        });
    match (header.is_empty(), key) {
        (true, Some(key)) => key,
        (false, Some(key)) if key != header => format!("{header}.{key}"),
        (true, None) => "(top level)".to_owned(),
        (false, _) => header,
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The text between `prefix` and the next backquote in `message`.
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    Some(rest[..rest.find('`')?].to_owned())
}

/// The key of the `key = value` the text ends inside of, on its last line.
fn key_before(before: &str) -> Option<String> {
    let line = before.rsplit('\n').next().unwrap_or("");
    let eq = line.rfind('=')?;
    let key: String = line[..eq]
        .trim_end()
        .chars()
        .rev()
        .take_while(|&c| is_key_char(c) || c == '"')
        .collect();
    let key: String = key
        .chars()
        .rev()
        .collect::<String>()
        .trim_matches('"')
        .to_owned();
    (!key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_file_line_field_reason() {
        let e = WorkloadError {
            file: "w.toml".into(),
            line: Some(3),
            field: "read.max".into(),
            reason: "too big".into(),
        };
        assert_eq!(e.to_string(), "w.toml:3: read.max: too big");
        let e = WorkloadError { line: None, ..e };
        assert_eq!(e.to_string(), "w.toml: read.max: too big");
    }

    #[test]
    fn field_paths_come_from_headers_and_keys() {
        let src = "seed = 1\n[read]\nmax = -4\n[[thread]]\n[[thread]]\nmix = { read = -1 }\n";
        let at = |needle: &str| {
            let s = src.find(needle).unwrap();
            s..s + needle.len()
        };
        assert_eq!(
            field_at(src, &at("-4"), "size must not be negative"),
            "read.max"
        );
        assert_eq!(field_at(src, &at("-1"), "x"), "thread[1].read");
        assert_eq!(
            field_at(src, &at("seed"), "unknown field `seed`, expected"),
            "seed"
        );
        assert_eq!(line_of(src, at("-4").start), 3);
    }
}
