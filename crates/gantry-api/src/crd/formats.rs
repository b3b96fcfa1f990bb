//! The string formats kube-apiserver checks in custom resources (the `strfmt` registry of kube-openapi, as
//! trimmed by apiextensions). Formats it does not know pass.

use base64::Engine;

/// Whether `value` is valid in `format`. Unknown formats and the numeric formats (which kube does not check
/// on strings) accept everything.
pub(crate) fn valid(format: &str, value: &str) -> bool {
    match format {
        "byte" => base64::engine::general_purpose::STANDARD.decode(value).is_ok(),
        "date" => is_date(value),
        "date-time" | "datetime" => is_date_time(value),
        "uuid" => is_uuid(value, None),
        "uuid3" => is_uuid(value, Some('3')),
        "uuid4" => is_uuid(value, Some('4')),
        "uuid5" => is_uuid(value, Some('5')),
        "ipv4" => value.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => value.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => is_cidr(value),
        "mac" => is_mac(value),
        "hostname" => is_hostname(value),
        "email" => is_email(value),
        "uri" => is_uri(value),
        "duration" => is_duration(value),
        "hexcolor" => is_hexcolor(value),
        "rgbcolor" => is_rgbcolor(value),
        "bsonobjectid" => value.len() == 24 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        _ => true,
    }
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_date(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    match parts.as_slice() {
        [y, m, d] if digits(y, 4) && digits(m, 2) && digits(d, 2) => {
            jiff::civil::Date::strptime("%Y-%m-%d", value).is_ok()
        }
        _ => false,
    }
}

fn is_date_time(value: &str) -> bool {
    // The RFC 3339 forms clients send, and the local and reduced-precision ISO 8601 forms the schema
    // validator also accepts (`2006-01-02T15:04:05`, `2006-01-02 15:04`).
    value.parse::<jiff::Timestamp>().is_ok() || value.parse::<jiff::civil::DateTime>().is_ok()
}

fn is_uuid(value: &str, version: Option<char>) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    if groups.len() != 5
        || groups.iter().zip(lens).any(|(g, n)| g.len() != n || !g.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return false;
    }
    match version {
        None => true,
        Some(v) => {
            let version_ok = groups[2].starts_with(v);
            let variant_ok = version == Some('3') || groups[3].starts_with(['8', '9', 'a', 'b', 'A', 'B']);
            version_ok && variant_ok
        }
    }
}

fn is_cidr(value: &str) -> bool {
    let Some((addr, bits)) = value.split_once('/') else { return false };
    let Ok(bits) = bits.parse::<u8>() else { return false };
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

fn is_mac(value: &str) -> bool {
    let sep = if value.contains(':') {
        ':'
    } else if value.contains('-') {
        '-'
    } else {
        return false;
    };
    let groups: Vec<&str> = value.split(sep).collect();
    matches!(groups.len(), 6 | 8 | 20)
        && groups.iter().all(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_hostname(value: &str) -> bool {
    if value.is_empty() || value.len() > 255 {
        return false;
    }
    value.trim_end_matches('.').split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

/// An address as Go's mail parser reads it, optionally with a display name (`Ann <ann@example.com>`).
fn is_email(value: &str) -> bool {
    let address = match (value.rfind('<'), value.ends_with('>')) {
        (Some(start), true) => &value[start + 1..value.len() - 1],
        _ => value,
    };
    let Some((local, domain)) = address.rsplit_once('@') else { return false };
    !local.is_empty() && !domain.is_empty() && !address.contains(char::is_whitespace)
}

/// An absolute URI or an absolute path, as an HTTP request line carries it.
fn is_uri(value: &str) -> bool {
    if value.contains(char::is_whitespace) || value.is_empty() {
        return false;
    }
    if value.starts_with('/') {
        return true;
    }
    let Some((scheme, _rest)) = value.split_once(':') else { return false };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Go `time.ParseDuration` syntax, or numbers with units and optional spaces (`3 days`, `1h 30m`) as the
/// schema validator also accepts.
fn is_duration(value: &str) -> bool {
    let s = value.trim().trim_start_matches(['+', '-']);
    if s == "0" {
        return true;
    }
    let mut rest = s;
    let mut parts = 0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return false;
        }
        rest = rest[num_len..].trim_start();
        let unit_len = rest.find(|c: char| !(c.is_alphabetic())).unwrap_or(rest.len());
        if unit_len == 0 {
            return false;
        }
        rest = rest[unit_len..].trim_start();
        parts += 1;
    }
    parts > 0
}

fn is_hexcolor(value: &str) -> bool {
    let Some(hex) = value.strip_prefix('#') else { return false };
    matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_rgbcolor(value: &str) -> bool {
    let Some(inner) = value.strip_prefix("rgb(").and_then(|v| v.strip_suffix(')')) else { return false };
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    parts.len() == 3 && parts.iter().all(|p| p.parse::<u8>().is_ok())
}
