//! Key helpers shared by the backends.

/// The smallest key greater than every key starting with `prefix` (etcd's "range end" for a prefix), or `None`
/// when no such key exists (the prefix is empty or all `0xff`): then the range is open-ended.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A key made printable for messages: valid UTF-8 is shown as is (control characters escaped), other bytes as
/// `\xNN`.
pub fn display_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    out.push('"');
    for chunk in key.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.extend(c.escape_debug());
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/a/b/"), Some(b"/a/b0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
    }

    #[test]
    fn prefix_end_of_empty_or_all_ff_is_open() {
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }

    #[test]
    fn display_key_escapes_control_and_invalid_bytes() {
        assert_eq!(display_key(b"/a\n\xffb"), "\"/a\\n\\xffb\"");
    }
}
