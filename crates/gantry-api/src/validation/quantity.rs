//! Kubernetes resource quantities (`100m`, `1.5Gi`, `1e3`), parsed, compared and printed in canonical form.
//!
//! `k8s_openapi`'s `Quantity` is only a string wrapper, so Gantry parses quantities itself. A quantity is held as
//! an exact count of nano-units, which is what kube can represent: values are rounded up to the nano and capped
//! at 2^63-1 units, as kube does when parsing. The suffix style a value was written in (`DecimalSI`, `BinarySI`,
//! `DecimalExponent`) is remembered and used again when printing, following kube's canonical form
//! (`1.5` → `1500m`, `1536Mi` stays `1536Mi`, `2048Ki` → `2Mi`, `1000m` → `1`).

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

const NANO: i128 = 1_000_000_000;
/// kube caps quantities at 2^63-1 whole units.
const MAX_NANOS: i128 = (i64::MAX as i128) * NANO;

/// Why a quantity could not be parsed; the texts are kube's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text is not a number followed by a suffix.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format {
        /// The text that was given.
        input: String,
    },
    /// The number is fine but the suffix is not one kube knows.
    #[error("unable to parse quantity's suffix")]
    Suffix {
        /// The text that was given.
        input: String,
    },
    /// The JSON value is neither a string nor a number.
    #[error("quantity must be a string or a number, not {found}")]
    NotAQuantity {
        /// The JSON type that was found.
        found: &'static str,
    },
}

/// The notation a quantity was written in, kept for printing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantityFormat {
    /// Powers of ten with SI suffixes (`m`, `k`, `M`, ...), or no suffix.
    DecimalSI,
    /// Powers of two (`Ki`, `Mi`, ...).
    BinarySI,
    /// Scientific notation (`1e3`).
    DecimalExponent,
}

/// A parsed resource quantity.
///
/// Equality and ordering compare amounts only: `1Gi == 1073741824`.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    nanos: i128,
    format: QuantityFormat,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl Quantity {
    /// Zero, printed as `0`.
    pub const ZERO: Quantity = Quantity { nanos: 0, format: QuantityFormat::DecimalSI };

    /// A quantity of whole units in decimal notation.
    pub fn from_units(units: i64) -> Quantity {
        Quantity { nanos: i128::from(units) * NANO, format: QuantityFormat::DecimalSI }
    }

    /// A quantity of milli-units in decimal notation (CPU: `from_millis(250)` is `250m`).
    pub fn from_millis(millis: i64) -> Quantity {
        Quantity { nanos: i128::from(millis) * 1_000_000, format: QuantityFormat::DecimalSI }
    }

    /// A quantity of whole units in binary notation (memory: `from_bytes_binary(1 << 30)` is `1Gi`).
    pub fn from_bytes_binary(bytes: i64) -> Quantity {
        Quantity { nanos: i128::from(bytes) * NANO, format: QuantityFormat::BinarySI }
    }

    /// Parses kube's quantity syntax. Surrounding whitespace is ignored, as kube's JSON decoding does.
    pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
        let s = input.trim();
        let format_err = || QuantityError::Format { input: input.to_string() };
        if s.is_empty() {
            return Err(format_err());
        }
        let b = s.as_bytes();
        let mut pos = 0;
        let mut negative = false;
        match b[0] {
            b'-' => {
                negative = true;
                pos += 1;
            }
            b'+' => pos += 1,
            _ => {}
        }
        let int_start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let int_digits = &s[int_start..pos];
        let mut frac_digits = "";
        if pos < b.len() && b[pos] == b'.' {
            pos += 1;
            let frac_start = pos;
            while pos < b.len() && b[pos].is_ascii_digit() {
                pos += 1;
            }
            frac_digits = &s[frac_start..pos];
        }
        let suffix = &s[pos..];
        // The suffix is letters from the SI set, an optional sign, then digits; anything else is a format error.
        let sb = suffix.as_bytes();
        let mut i = 0;
        while i < sb.len() && b"eEinumkKMGTP".contains(&sb[i]) {
            i += 1;
        }
        if i < sb.len() && (sb[i] == b'-' || sb[i] == b'+') {
            i += 1;
        }
        while i < sb.len() && sb[i].is_ascii_digit() {
            i += 1;
        }
        if i != sb.len() {
            return Err(format_err());
        }
        let (base2, exponent, format) =
            interpret_suffix(suffix).ok_or_else(|| QuantityError::Suffix { input: input.to_string() })?;

        let digits = format!("{int_digits}{frac_digits}");
        let digits = digits.trim_start_matches('0');
        let frac_len = frac_digits.len() as i64;
        let magnitude = if base2 {
            // digits * 2^exponent / 10^frac_len, in nanos.
            let scaled = shift_decimal(digits, 9 - frac_len);
            let mut n = scaled;
            for _ in 0..exponent {
                n = n.saturating_mul(2);
            }
            n
        } else {
            shift_decimal(digits, i64::from(exponent) - frac_len + 9)
        };
        let magnitude = magnitude.min(MAX_NANOS);
        let mut format = format;
        if format == QuantityFormat::BinarySI && magnitude > 0 && magnitude < NANO {
            format = QuantityFormat::DecimalSI;
        }
        Ok(Quantity { nanos: if negative { -magnitude } else { magnitude }, format })
    }

    /// Reads a quantity from JSON: a string, or a bare number as kube's decoder also accepts.
    pub fn from_json(value: &Value) -> Result<Quantity, QuantityError> {
        match value {
            Value::String(s) => Quantity::parse(s),
            Value::Number(n) => Quantity::parse(&n.to_string()),
            Value::Null => Ok(Quantity::ZERO),
            Value::Bool(_) => Err(QuantityError::NotAQuantity { found: "boolean" }),
            Value::Array(_) => Err(QuantityError::NotAQuantity { found: "array" }),
            Value::Object(_) => Err(QuantityError::NotAQuantity { found: "object" }),
        }
    }

    /// The notation the quantity keeps for printing.
    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The amount in nano-units (exact).
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The amount in milli-units, rounded up away from zero (kube's `MilliValue`).
    pub fn milli_value(&self) -> i64 {
        clamp_i64(div_away(self.nanos, 1_000_000))
    }

    /// The amount in whole units, rounded up away from zero (kube's `Value`).
    pub fn value(&self) -> i64 {
        clamp_i64(div_away(self.nanos, NANO))
    }

    /// The amount rounded up to a whole number of milli-units, as kube's defaulting does to resource lists.
    pub fn round_up_to_milli(&self) -> Quantity {
        Quantity { nanos: div_away(self.nanos, 1_000_000) * 1_000_000, format: self.format }
    }

    /// The sum of two quantities, keeping this one's notation.
    pub fn add(&self, other: &Quantity) -> Quantity {
        Quantity { nanos: (self.nanos + other.nanos).clamp(-MAX_NANOS, MAX_NANOS), format: self.format }
    }

    /// The difference of two quantities, keeping this one's notation.
    pub fn sub(&self, other: &Quantity) -> Quantity {
        Quantity { nanos: (self.nanos - other.nanos).clamp(-MAX_NANOS, MAX_NANOS), format: self.format }
    }

    /// The canonical text, as JSON.
    pub fn to_json(&self) -> Value {
        Value::String(self.to_string())
    }

    fn fmt_decimal(&self, exponent_style: bool) -> String {
        let negative = self.nanos < 0;
        let mut mantissa = self.nanos.unsigned_abs();
        let mut exp: i32 = -9;
        while mantissa != 0 && mantissa.is_multiple_of(10) {
            mantissa /= 10;
            exp += 1;
        }
        match exp.rem_euclid(3) {
            1 => {
                mantissa *= 10;
                exp -= 1;
            }
            2 => {
                mantissa *= 100;
                exp -= 2;
            }
            _ => {}
        }
        let suffix = if exponent_style {
            if exp == 0 { String::new() } else { format!("e{exp}") }
        } else {
            match exp {
                -9 => "n".to_string(),
                -6 => "u".to_string(),
                -3 => "m".to_string(),
                0 => String::new(),
                3 => "k".to_string(),
                6 => "M".to_string(),
                9 => "G".to_string(),
                12 => "T".to_string(),
                15 => "P".to_string(),
                18 => "E".to_string(),
                other => format!("e{other}"),
            }
        };
        format!("{}{}{}", if negative { "-" } else { "" }, mantissa, suffix)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let text = match self.format {
            QuantityFormat::DecimalExponent => self.fmt_decimal(true),
            QuantityFormat::DecimalSI => self.fmt_decimal(false),
            QuantityFormat::BinarySI => {
                let whole = self.nanos.abs() >= 1024 * NANO && self.nanos % NANO == 0;
                if !whole {
                    self.fmt_decimal(false)
                } else {
                    let negative = self.nanos < 0;
                    let mut units = (self.nanos / NANO).unsigned_abs();
                    let mut power = 0;
                    while power < 6 && units.is_multiple_of(1024) {
                        units /= 1024;
                        power += 1;
                    }
                    let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
                    format!("{}{}{}", if negative { "-" } else { "" }, units, suffix)
                }
            }
        };
        f.write_str(&text)
    }
}

/// (is base 2, exponent, format) for a suffix.
fn interpret_suffix(suffix: &str) -> Option<(bool, i32, QuantityFormat)> {
    let dec = |e| Some((false, e, QuantityFormat::DecimalSI));
    let bin = |e| Some((true, e, QuantityFormat::BinarySI));
    match suffix {
        "" => dec(0),
        "n" => dec(-9),
        "u" => dec(-6),
        "m" => dec(-3),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        "Ki" => bin(10),
        "Mi" => bin(20),
        "Gi" => bin(30),
        "Ti" => bin(40),
        "Pi" => bin(50),
        "Ei" => bin(60),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            let e: i32 = s[1..].parse().ok()?;
            Some((false, e, QuantityFormat::DecimalExponent))
        }
        _ => None,
    }
}

/// `digits * 10^shift`, rounding up when digits are dropped, saturating far above the cap.
fn shift_decimal(digits: &str, shift: i64) -> i128 {
    if digits.is_empty() {
        return 0;
    }
    let (kept, dropped_nonzero, zeros) = if shift >= 0 {
        (digits, false, shift)
    } else {
        let drop = (-shift) as usize;
        if drop >= digits.len() {
            ("", true, 0)
        } else {
            let (k, d) = digits.split_at(digits.len() - drop);
            (k, d.bytes().any(|c| c != b'0'), 0)
        }
    };
    let mut n: i128 = 0;
    for c in kept.bytes() {
        n = n.saturating_mul(10).saturating_add(i128::from(c - b'0'));
        if n > MAX_NANOS {
            return MAX_NANOS + 1;
        }
    }
    for _ in 0..zeros {
        n = n.saturating_mul(10);
        if n > MAX_NANOS {
            return MAX_NANOS + 1;
        }
    }
    if dropped_nonzero { n + 1 } else { n }
}

/// Division rounding away from zero.
fn div_away(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else if n > 0 {
        q + 1
    } else {
        q - 1
    }
}

fn clamp_i64(n: i128) -> i64 {
    n.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Quantity::parse(s).map(|q| q.to_string()).unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn canonical_forms_match_kube() {
        assert_eq!(canon("100m"), "100m");
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("1.5"), "1500m");
        assert_eq!(canon("1000m"), "1");
        assert_eq!(canon("1500"), "1500");
        assert_eq!(canon("15000"), "15k");
        assert_eq!(canon("1Gi"), "1Gi");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("1536Mi"), "1536Mi");
        assert_eq!(canon("2048Ki"), "2Mi");
        assert_eq!(canon("1.5Gi"), "1536Mi");
        assert_eq!(canon("512"), "512");
        assert_eq!(canon("1e3"), "1e3");
        assert_eq!(canon("1E3"), "1e3");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("-0.5"), "-500m");
        assert_eq!(canon("+1k"), "1k");
        assert_eq!(canon("128974848"), "128974848");
        assert_eq!(canon("129e6"), "129e6");
        assert_eq!(canon("123Mi"), "123Mi");
        assert_eq!(canon(".5"), "500m");
    }

    #[test]
    fn tiny_values_round_up_to_the_nano() {
        assert_eq!(canon("0.1n"), "1n");
        assert_eq!(Quantity::parse("0.1m").map(|q| q.round_up_to_milli().to_string()).ok(), Some("1m".into()));
    }

    #[test]
    fn fractional_binary_values_print_in_decimal() {
        assert_eq!(canon("0.5Ki"), "512");
        assert_eq!(canon("1.1Ki"), "1126400m");
    }

    #[test]
    fn malformed_quantities_are_rejected_with_kubes_messages() {
        assert_eq!(
            canon("abc"),
            "error: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
        assert_eq!(canon(""), canon("x"));
        assert_eq!(canon("1Q"), canon("x"));
        assert_eq!(canon("1KiB"), canon("x"));
        assert_eq!(canon("1Gb"), canon("x"));
        assert_eq!(canon("1kk"), "error: unable to parse quantity's suffix");
        assert_eq!(canon("1e"), "error: unable to parse quantity's suffix");
    }

    #[test]
    fn comparison_is_by_amount_not_notation() {
        let q = |s: &str| Quantity::parse(s).unwrap_or(Quantity::ZERO);
        assert_eq!(q("1Gi"), q("1073741824"));
        assert!(q("100m") < q("1"));
        assert!(q("1G") < q("1Gi"));
        assert!(q("2") > q("1999m"));
        assert_eq!(q("1e3"), q("1k"));
    }

    #[test]
    fn values_and_milli_values_round_away_from_zero() {
        let q = |s: &str| Quantity::parse(s).unwrap_or(Quantity::ZERO);
        assert_eq!(q("1500m").value(), 2);
        assert_eq!(q("250m").milli_value(), 250);
        assert_eq!(q("1Ki").value(), 1024);
        assert_eq!(q("1n").milli_value(), 1);
    }

    #[test]
    fn huge_values_are_capped_at_two_to_the_63() {
        let q = Quantity::parse("100E").unwrap_or(Quantity::ZERO);
        assert_eq!(q.value(), i64::MAX);
    }

    #[test]
    fn json_numbers_are_quantities_too() {
        assert_eq!(Quantity::from_json(&serde_json::json!(2)).map(|q| q.to_string()).ok(), Some("2".into()));
        assert_eq!(Quantity::from_json(&serde_json::json!(0.25)).map(|q| q.to_string()).ok(), Some("250m".into()));
        assert!(Quantity::from_json(&serde_json::json!(true)).is_err());
    }
}
