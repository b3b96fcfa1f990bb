//! YAML as kubectl prints it (JSON turned into YAML by a go-yaml v2 encoder): keys in its natural order (numbers
//! inside keys compared as numbers, non-letters before letters), sequences not indented under their key,
//! strings plain when they would read back as strings, double-quoted when they would read back as something
//! else (`"12"`, `"True"`, timestamps), single-quoted when plain is impossible (`'*'`, `'a: b'`), literal
//! blocks for text with line breaks, and long lines folded at spaces past column 80.

use std::cmp::Ordering;

use serde_json::Value;

const WIDTH: usize = 80;

/// The YAML text of a JSON value.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(&mut out, value, 0),
        Value::Array(items) if !items.is_empty() => sequence(&mut out, items, 0),
        scalar => {
            let mut line = String::new();
            write_scalar(&mut line, scalar, 0, 0);
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// go-yaml v2's order of map keys.
pub fn key_order(a: &str, b: &str) -> Ordering {
    let (ar, br): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    for i in 0..ar.len().min(br.len()) {
        if ar[i] == br[i] {
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl { Ordering::Less } else { Ordering::Greater };
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an.saturating_mul(10).saturating_add(i64::from(ar[ai] as u8 - b'0'));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn.saturating_mul(10).saturating_add(i64::from(br[bi] as u8 - b'0'));
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// The entries of a non-empty mapping, each line at `indent`; the first entry's line is already indented when
/// `out` does not end with a newline (an entry of a sequence).
fn mapping(out: &mut String, value: &Value, indent: usize) {
    let Some(map) = value.as_object() else { return };
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by(|a, b| key_order(a, b));
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 || out.ends_with('\n') || out.is_empty() {
            pad(out, indent);
        }
        let mut line = String::new();
        write_scalar(&mut line, &Value::String(key.clone()), indent, usize::MAX);
        out.push_str(&line);
        out.push(':');
        let item = &map[key.as_str()];
        match item {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                mapping(out, item, indent + 2);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                sequence(out, items, indent);
            }
            scalar => {
                out.push(' ');
                let column = current_column(out);
                let mut text = String::new();
                write_scalar(&mut text, scalar, indent + 2, column);
                out.push_str(&text);
                out.push('\n');
            }
        }
    }
}

fn sequence(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => mapping(out, item, indent + 2),
            Value::Array(inner) if !inner.is_empty() => {
                // A sequence in a sequence starts on the dash's line.
                let mut nested = String::new();
                sequence(&mut nested, inner, indent + 2);
                out.push_str(nested.trim_start());
            }
            scalar => {
                let column = current_column(out);
                let mut text = String::new();
                write_scalar(&mut text, scalar, indent + 2, column);
                out.push_str(&text);
                out.push('\n');
            }
        }
    }
}

fn current_column(out: &str) -> usize {
    out.rsplit('\n').next().map_or(0, |l| l.chars().count())
}

/// Whether a plain scalar would read back as something else than this string.
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF", "~", "null", "Null", "NULL", ".inf", ".Inf", ".INF", "+.inf", "+.Inf",
        "+.INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN", "<<",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    if !(first.is_ascii_digit() || first == '-' || first == '+' || first == '.') {
        return false;
    }
    let digits = s.trim_start_matches(['-', '+']);
    let is_int = !digits.is_empty()
        && (digits.chars().all(|c| c.is_ascii_digit() || c == '_')
            || digits
                .strip_prefix("0x")
                .or_else(|| digits.strip_prefix("0o"))
                .or_else(|| digits.strip_prefix("0b"))
                .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit() || c == '_')));
    let is_float = {
        let (mantissa, exponent) = match digits.find(['e', 'E']) {
            Some(i) => (&digits[..i], Some(digits[i + 1..].trim_start_matches(['-', '+']))),
            None => (digits, None),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let mantissa_ok = !mantissa.is_empty()
            && whole.chars().all(|c| c.is_ascii_digit())
            && fraction.chars().all(|c| c.is_ascii_digit())
            && !(whole.is_empty() && fraction.is_empty());
        mantissa_ok && exponent.is_none_or(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_digit()))
    };
    is_int || is_float || looks_like_timestamp(s)
}

fn looks_like_timestamp(s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.len() < 8 || !bytes[..4].iter().all(u8::is_ascii_digit) || bytes[4] != b'-' {
        return false;
    }
    let rest = &s[5..];
    let date_end = rest.find(['T', 't', ' ']).unwrap_or(rest.len());
    let mut parts = rest[..date_end].split('-');
    let (Some(month), Some(day), None) = (parts.next(), parts.next(), parts.next()) else { return false };
    let small = |p: &str| (1..=2).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit());
    small(month) && small(day)
}

/// Whether the emitter may write this string plain (block context).
fn plain_allowed(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    let Some(&first) = chars.first() else { return false };
    if first == ' ' || chars.last() == Some(&' ') {
        return false;
    }
    if "#,[]{}&*!|>'\"%@`".contains(first) {
        return false;
    }
    if matches!(first, '-' | '?' | ':') && chars.get(1).is_none_or(|c| *c == ' ') {
        return false;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    for (i, &c) in chars.iter().enumerate() {
        if !printable(c) || c == '\n' {
            return false;
        }
        let next = chars.get(i + 1);
        if c == ':' && next.is_none_or(|n| *n == ' ') {
            return false;
        }
        if c == '#' && i > 0 && chars[i - 1] == ' ' {
            return false;
        }
    }
    true
}

fn printable(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{7E}' | '\u{85}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
        && c != '\u{FEFF}'
}

/// Writes `value` as a scalar whose line starts at `column` (folding at spaces past the width; `usize::MAX`:
/// never fold), continuation lines at `indent`.
fn write_scalar(out: &mut String, value: &Value, indent: usize, column: usize) {
    let s = match value {
        Value::Null => {
            out.push_str("null");
            return;
        }
        Value::Bool(b) => {
            out.push_str(if *b { "true" } else { "false" });
            return;
        }
        Value::Number(n) => {
            out.push_str(&n.to_string());
            return;
        }
        Value::Object(_) => {
            out.push_str("{}");
            return;
        }
        Value::Array(_) => {
            out.push_str("[]");
            return;
        }
        Value::String(s) => s.as_str(),
    };
    if s.is_empty() {
        out.push_str("\"\"");
    } else if resolves_to_non_string(s) {
        double_quoted(out, s, indent, column);
    } else if s.contains('\n') && s.chars().all(|c| c == '\n' || printable(c)) && !s.starts_with(' ') {
        literal(out, s, indent);
    } else if plain_allowed(s) {
        folded(out, s, indent, column, "", "");
    } else if s.chars().all(|c| printable(c) && c != '\n') {
        folded(out, &s.replace('\'', "''"), indent, column, "'", "'");
    } else {
        double_quoted(out, s, indent, column);
    }
}

/// Words separated by single spaces, broken onto a new line at `indent` where the line is past the width.
fn folded(out: &mut String, s: &str, indent: usize, column: usize, open: &str, close: &str) {
    let fold = column != usize::MAX;
    let mut col = column.saturating_add(open.len());
    out.push_str(open);
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let single_space = c == ' '
            && i > 0
            && chars[i - 1] != ' '
            && chars.get(i + 1).is_some_and(|n| *n != ' ')
            && i + 1 < chars.len();
        if fold && single_space && col > WIDTH {
            out.push('\n');
            pad(out, indent);
            col = indent;
            continue;
        }
        out.push(c);
        col = col.saturating_add(1);
    }
    out.push_str(close);
}

fn double_quoted(out: &mut String, s: &str, indent: usize, column: usize) {
    let mut escaped = String::new();
    for c in s.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\t' => escaped.push_str("\\t"),
            '\r' => escaped.push_str("\\r"),
            c if !printable(c) => escaped.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => escaped.push(c),
        }
    }
    folded(out, &escaped, indent, column, "\"", "\"");
}

fn literal(out: &mut String, s: &str, indent: usize) {
    let trailing = s.len() - s.trim_end_matches('\n').len();
    out.push('|');
    match trailing {
        0 => out.push('-'),
        1 => {}
        _ => out.push('+'),
    }
    let body = s.trim_end_matches('\n');
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            pad(out, indent);
            out.push_str(line);
        }
    }
    for _ in 1..trailing {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_that_read_back_as_other_types_are_double_quoted() {
        let text = to_yaml(&json!({"a": "12", "b": "True", "c": "2026-11-28T06:15:48Z", "d": "plain text", "e": ""}));
        assert_eq!(text, "a: \"12\"\nb: \"True\"\nc: \"2026-11-28T06:15:48Z\"\nd: plain text\ne: \"\"\n");
    }

    #[test]
    fn strings_that_cannot_be_plain_are_single_quoted() {
        assert_eq!(to_yaml(&json!({"a": "*", "b": "x: y", "c": "it's"})), "a: '*'\nb: 'x: y'\nc: it's\n");
    }

    #[test]
    fn sequences_sit_under_their_key_without_indentation() {
        let text = to_yaml(&json!({"spec": {"containers": [{"name": "a", "args": ["x", "y"]}], "empty": []}}));
        assert_eq!(text, "spec:\n  containers:\n  - args:\n    - x\n    - \"y\"\n    name: a\n  empty: []\n");
    }

    #[test]
    fn text_with_line_breaks_is_a_literal_block() {
        let text = to_yaml(&json!({"metadata": {"annotations": {"k": "{\"a\":1}\n"}}, "x": "a\nb"}));
        assert_eq!(text, "metadata:\n  annotations:\n    k: |\n      {\"a\":1}\nx: |-\n  a\n  b\n");
    }

    #[test]
    fn long_lines_fold_at_a_space_past_column_80() {
        let long = "word ".repeat(30).trim_end().to_string();
        let text = to_yaml(&json!({"message": long}));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 1, "{text}");
        assert!(lines[1].starts_with("  word"), "{text}");
        assert!(lines[0].len() <= 86, "{text}");
    }

    #[test]
    fn keys_follow_go_yamls_natural_order() {
        let mut keys = vec!["a10", "a9", "b", "B", "_x", "a"];
        keys.sort_by(|a, b| key_order(a, b));
        assert_eq!(keys, ["_x", "B", "a", "a9", "a10", "b"]);
    }
}
