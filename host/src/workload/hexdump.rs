//! Expected and actual bytes side by side around the first difference, as
//! a hex dump with file offsets.

use std::fmt::Write as _;
use std::ops::Range;

/// Bytes per dump line.
const WIDTH: usize = 16;

/// Lines shown before and after the line with the first difference.
const CONTEXT_LINES: usize = 2;

/// A side-by-side dump of `expected` and `actual`, both starting at file
/// offset `base`, around file offset `at`. Expected bytes inside `unknown`
/// (offsets relative to `base`) print as `??`; bytes one side lacks as
/// blanks; a line whose bytes differ is marked with `<`.
pub fn diff_dump(
    base: u64,
    expected: &[u8],
    unknown: &[Range<usize>],
    actual: &[u8],
    at: u64,
) -> String {
    let len = expected.len().max(actual.len());
    if len == 0 {
        return "  (both empty)\n".to_owned();
    }
    let at = (at.saturating_sub(base) as usize).min(len - 1);
    // Lines are aligned to file offsets.
    let first_line_off = (base as usize / WIDTH) * WIDTH;
    let line_of = |rel: usize| (base as usize + rel - first_line_off) / WIDTH;
    let diff_line = line_of(at);
    let last_line = line_of(len - 1);
    let lo = diff_line.saturating_sub(CONTEXT_LINES);
    let hi = (diff_line + CONTEXT_LINES).min(last_line);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<10}  {:<48}  {:<48}",
        "offset", "expected", "actual"
    );
    for line in lo..=hi {
        let line_off = first_line_off + line * WIDTH;
        let mut exp = String::new();
        let mut act = String::new();
        let mut differs = false;
        for col in 0..WIDTH {
            let off = line_off + col;
            let rel = off.checked_sub(base as usize);
            let e = rel.and_then(|r| expected.get(r).map(|b| (r, *b)));
            let a = rel.and_then(|r| actual.get(r).copied());
            match e {
                Some((r, _)) if unknown.iter().any(|u| u.contains(&r)) => exp.push_str("?? "),
                Some((_, b)) => {
                    let _ = write!(exp, "{b:02x} ");
                }
                None => exp.push_str("   "),
            }
            match a {
                Some(b) => {
                    let _ = write!(act, "{b:02x} ");
                }
                None => act.push_str("   "),
            }
            let unknown_here = rel.is_some_and(|r| unknown.iter().any(|u| u.contains(&r)));
            if e.map(|(_, b)| b) != a && !unknown_here {
                differs = true;
            }
        }
        let mark = if differs { "<" } else { "" };
        let _ = writeln!(out, "  {line_off:#010x}  {exp:<48}  {act:<48}{mark}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_both_sides_around_the_difference_with_offsets() {
        let expected: Vec<u8> = (0..200u8).collect();
        let mut actual = expected.clone();
        actual[100] = 0xff;
        let dump = diff_dump(4096, &expected, &[], &actual, 4196);
        let lines: Vec<&str> = dump.lines().collect();
        assert!(lines[0].contains("expected") && lines[0].contains("actual"));
        let marked: Vec<&&str> = lines.iter().filter(|l| l.ends_with('<')).collect();
        assert_eq!(marked.len(), 1, "{dump}");
        assert!(marked[0].starts_with("  0x00001060"), "{dump}");
        assert!(marked[0].contains(" ff "), "{dump}");
        assert_eq!(lines.len(), 1 + 5, "{dump}");
    }

    #[test]
    fn unknown_bytes_and_short_reads_are_shown() {
        let dump = diff_dump(0, &[1, 2, 3, 4], std::slice::from_ref(&(1..2)), &[1, 9], 2);
        assert!(dump.contains("01 ?? 03 04"), "{dump}");
        assert!(dump.contains("01 09"), "{dump}");
        assert!(dump.lines().nth(1).unwrap().ends_with('<'));
    }
}
