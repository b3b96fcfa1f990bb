//! How a decoded protobuf message becomes the JSON kube-apiserver would serve for it.
//!
//! Every generated message type implements [`ToJson`] through the [`objects!`](crate::protobuf::json) macro, which
//! lists each field of the `k8s-pb` struct. The list is checked by the compiler in both directions: a destructuring
//! pattern without `..` fails to build when a field is missing, and an unknown name fails too.
//!
//! Go's `encoding/json` with `omitempty` decides which fields appear, and the protobuf encoding of client-go does not
//! carry that decision: a non-pointer Go field is always written on the wire, even at its zero value, while a pointer
//! field is written only when set. So each scalar field is written out
//! - when it is not the zero value, by default (a Go value field with `omitempty`), or
//! - whenever it is on the wire, for fields marked `keep` (a Go pointer, where zero is meaningful, like
//!   `replicas: 0`, or a field without `omitempty`, like `containerPort`).
//!
//! Messages are written whenever present (Go never omits a struct), lists and maps when not empty, and fields marked
//! `inline` (Go's embedded structs, such as `LocalObjectReference` or `VolumeSource`) are merged into their parent.

use std::collections::BTreeMap;

use k8s_pb::api::authentication::v1 as authentication_v1;
use k8s_pb::api::authorization::v1 as authorization_v1;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::RawExtension;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value};

/// Why one value could not be turned into JSON, and where it sits in the object.
#[derive(Debug)]
pub(crate) struct ValueError {
    /// The JSON path from the innermost field outwards; reversed when shown.
    path: Vec<String>,
    /// What is wrong with the value.
    pub(crate) problem: ValueProblem,
}

/// What is wrong with a value that prost decoded but that has no JSON form.
#[derive(Debug)]
pub(crate) enum ValueProblem {
    /// A field that carries JSON bytes (`fieldsV1`, a `RawExtension`) does not hold valid JSON.
    EmbeddedJson(serde_json::Error),
    /// A timestamp that cannot be written as an RFC 3339 date.
    TimeOutOfRange { seconds: i64, nanos: i32 },
}

impl ValueError {
    fn new(problem: ValueProblem) -> ValueError {
        ValueError { path: Vec::new(), problem }
    }

    /// The same error, seen from the object that holds `segment`.
    fn within(mut self, segment: impl Into<String>) -> ValueError {
        self.path.push(segment.into());
        self
    }

    /// The JSON path of the offending value, as `spec.template.metadata.managedFields[0].fieldsV1`.
    pub(crate) fn path(&self) -> String {
        let mut out = String::new();
        for segment in self.path.iter().rev() {
            if !out.is_empty() && !segment.starts_with('[') {
                out.push('.');
            }
            out.push_str(segment);
        }
        out
    }
}

/// A value with a JSON form.
pub(crate) trait ToJson {
    /// The JSON kube-apiserver would write for this value.
    fn to_json(&self) -> Result<Value, ValueError>;

    /// Whether this is the zero value Go's `omitempty` leaves out (only scalars and timestamps can be).
    fn is_zero(&self) -> bool {
        false
    }
}

/// A struct field: an optional value, a repeated field or a map.
pub(crate) trait FieldValue {
    /// The JSON for this field, or `None` when Go's encoding leaves the field out.
    fn field_json(&self, keep_zero: bool) -> Result<Option<Value>, ValueError>;
}

impl<T: ToJson> FieldValue for Option<T> {
    fn field_json(&self, keep_zero: bool) -> Result<Option<Value>, ValueError> {
        match self {
            Some(value) if keep_zero || !value.is_zero() => value.to_json().map(Some),
            _ => Ok(None),
        }
    }
}

impl<T: ToJson> FieldValue for Vec<T> {
    fn field_json(&self, _keep_zero: bool) -> Result<Option<Value>, ValueError> {
        if self.is_empty() {
            return Ok(None);
        }
        let items = self
            .iter()
            .enumerate()
            .map(|(i, item)| item.to_json().map_err(|e| e.within(format!("[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Value::Array(items)))
    }
}

impl<V: ToJson> FieldValue for BTreeMap<String, V> {
    fn field_json(&self, _keep_zero: bool) -> Result<Option<Value>, ValueError> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut object = Map::new();
        for (key, value) in self {
            object.insert(key.clone(), value.to_json().map_err(|e| e.within(format!("[{key:?}]")))?);
        }
        Ok(Some(Value::Object(object)))
    }
}

/// Writes one field into `object` under its JSON name, unless Go's encoding would leave it out.
pub(crate) fn put(
    object: &mut Map<String, Value>,
    name: &str,
    value: &impl FieldValue,
    keep_zero: bool,
) -> Result<(), ValueError> {
    if let Some(json) = value.field_json(keep_zero).map_err(|e| e.within(name))? {
        object.insert(name.to_owned(), json);
    }
    Ok(())
}

/// Merges the fields of an embedded Go struct into the object that embeds it.
pub(crate) fn inline<T: ToJson>(object: &mut Map<String, Value>, value: &Option<T>) -> Result<(), ValueError> {
    if let Some(value) = value
        && let Value::Object(fields) = value.to_json()?
    {
        object.extend(fields);
    }
    Ok(())
}

/// The JSON name of a field from its Rust name: `r#type` is `type`, `working_dir` is `workingDir`.
///
/// Names with acronyms (`hostIP`, `podCIDRs`) do not follow this rule and are spelled out in the table.
pub(crate) fn json_name(rust_name: &str) -> String {
    let rust_name = rust_name.strip_prefix("r#").unwrap_or(rust_name);
    let mut out = String::with_capacity(rust_name.len());
    let mut upper_next = false;
    for c in rust_name.chars() {
        if c == '_' {
            upper_next = true;
        } else if upper_next {
            out.extend(c.to_uppercase());
            upper_next = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Implements [`ToJson`] (and, in tests, `Sample`) for message types from their field lists.
///
/// Each entry is `path::Type { field, field[options], ... }` listing every field of the `k8s-pb` struct. Options:
/// `keep` writes a scalar even at its zero value, `inline` merges an embedded struct into its parent, and a string
/// literal gives the JSON name when it is not the camelCase of the Rust name.
macro_rules! objects {
    ($( $($ty:ident)::+ { $( $field:ident $([ $($opt:tt)* ])? ),* $(,)? } ),* $(,)?) => {
        $(
            impl $crate::protobuf::json::ToJson for $($ty)::+ {
                fn to_json(&self) -> Result<serde_json::Value, $crate::protobuf::json::ValueError> {
                    let Self { $($field),* } = self;
                    let mut object = serde_json::Map::new();
                    $( $crate::protobuf::json::field!(object, $field, $($($opt)*)?); )*
                    Ok(serde_json::Value::Object(object))
                }
            }

            #[cfg(test)]
            impl $crate::protobuf::json::Sample for $($ty)::+ {
                fn sample() -> Self {
                    Self { $($field: $crate::protobuf::json::Sample::sample()),* }
                }
            }
        )*
    };
}
pub(crate) use objects;

/// One field of an [`objects!`] entry.
macro_rules! field {
    ($object:ident, $field:ident,) => {
        $crate::protobuf::json::put(
            &mut $object,
            &$crate::protobuf::json::json_name(stringify!($field)),
            $field,
            false,
        )?
    };
    ($object:ident, $field:ident, keep) => {
        $crate::protobuf::json::put(&mut $object, &$crate::protobuf::json::json_name(stringify!($field)), $field, true)?
    };
    ($object:ident, $field:ident, inline) => {
        $crate::protobuf::json::inline(&mut $object, $field)?
    };
    ($object:ident, $field:ident, $name:literal) => {
        $crate::protobuf::json::put(&mut $object, $name, $field, false)?
    };
    ($object:ident, $field:ident, keep $name:literal) => {
        $crate::protobuf::json::put(&mut $object, $name, $field, true)?
    };
}
pub(crate) use field;

impl ToJson for String {
    fn to_json(&self) -> Result<Value, ValueError> {
        Ok(Value::String(self.clone()))
    }

    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}

impl ToJson for bool {
    fn to_json(&self) -> Result<Value, ValueError> {
        Ok(Value::Bool(*self))
    }

    fn is_zero(&self) -> bool {
        !*self
    }
}

impl ToJson for i32 {
    fn to_json(&self) -> Result<Value, ValueError> {
        Ok(Value::from(*self))
    }

    fn is_zero(&self) -> bool {
        *self == 0
    }
}

impl ToJson for i64 {
    fn to_json(&self) -> Result<Value, ValueError> {
        Ok(Value::from(*self))
    }

    fn is_zero(&self) -> bool {
        *self == 0
    }
}

/// Bytes are base64 strings in JSON (Go's `[]byte`), as in a Secret's `data`.
impl ToJson for Vec<u8> {
    fn to_json(&self) -> Result<Value, ValueError> {
        Ok(Value::String(base64(self)))
    }

    fn is_zero(&self) -> bool {
        self.is_empty()
    }
}

/// `metav1.Time`: whole seconds in RFC 3339 (the protobuf nanoseconds are dropped, as kube-apiserver drops them).
/// Go writes the zero time (an empty message) as `null`; it is left out here, which reads the same.
impl ToJson for meta::Time {
    fn to_json(&self) -> Result<Value, ValueError> {
        let seconds = self.seconds.unwrap_or(0);
        let time = jiff::Timestamp::from_second(seconds)
            .map_err(|_| ValueError::new(ValueProblem::TimeOutOfRange { seconds, nanos: 0 }))?;
        Ok(Value::String(time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
    }

    fn is_zero(&self) -> bool {
        self.seconds.unwrap_or(0) == 0 && self.nanos.unwrap_or(0) == 0
    }
}

/// `metav1.MicroTime`: RFC 3339 with exactly six fractional digits.
impl ToJson for meta::MicroTime {
    fn to_json(&self) -> Result<Value, ValueError> {
        let (seconds, nanos) = (self.seconds.unwrap_or(0), self.nanos.unwrap_or(0));
        let time = jiff::Timestamp::new(seconds, nanos)
            .map_err(|_| ValueError::new(ValueProblem::TimeOutOfRange { seconds, nanos }))?;
        Ok(Value::String(time.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()))
    }

    fn is_zero(&self) -> bool {
        self.seconds.unwrap_or(0) == 0 && self.nanos.unwrap_or(0) == 0
    }
}

/// `resource.Quantity` is its canonical string; a message without one is the zero quantity.
impl ToJson for Quantity {
    fn to_json(&self) -> Result<Value, ValueError> {
        Ok(Value::String(self.string.clone().unwrap_or_else(|| "0".to_owned())))
    }
}

/// `intstr.IntOrString`: type 1 is a string, anything else the integer.
impl ToJson for IntOrString {
    fn to_json(&self) -> Result<Value, ValueError> {
        Ok(match self.r#type {
            Some(1) => Value::String(self.str_val.clone().unwrap_or_default()),
            _ => Value::from(self.int_val.unwrap_or(0)),
        })
    }
}

/// `metav1.FieldsV1` carries its JSON in `raw`; it appears in JSON as that object.
impl ToJson for meta::FieldsV1 {
    fn to_json(&self) -> Result<Value, ValueError> {
        match self.raw.as_deref() {
            None | Some([]) => Ok(Value::Object(Map::new())),
            Some(raw) => embedded_json(raw),
        }
    }
}

/// `runtime.RawExtension` (a ControllerRevision's `data`) carries the JSON of an arbitrary object.
impl ToJson for RawExtension {
    fn to_json(&self) -> Result<Value, ValueError> {
        match self.raw.as_deref() {
            None | Some([]) => Ok(Value::Null),
            Some(raw) => embedded_json(raw),
        }
    }
}

fn embedded_json(raw: &[u8]) -> Result<Value, ValueError> {
    serde_json::from_slice(raw).map_err(|e| ValueError::new(ValueProblem::EmbeddedJson(e)))
}

/// `ExtraValue` of TokenReview and SubjectAccessReview user info is a plain list of strings in JSON.
impl ToJson for authentication_v1::ExtraValue {
    fn to_json(&self) -> Result<Value, ValueError> {
        Ok(Value::Array(self.items.iter().cloned().map(Value::String).collect()))
    }
}

impl ToJson for authorization_v1::ExtraValue {
    fn to_json(&self) -> Result<Value, ValueError> {
        Ok(Value::Array(self.items.iter().cloned().map(Value::String).collect()))
    }
}

/// Standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Test-only: a value of every field set, each scalar distinct, to check the table against k8s-openapi.
#[cfg(test)]
pub(crate) trait Sample {
    fn sample() -> Self;
}

#[cfg(test)]
mod sample {
    use std::cell::Cell;
    use std::collections::BTreeMap;

    use super::{IntOrString, Quantity, RawExtension, Sample, authentication_v1, authorization_v1, meta};

    thread_local! {
        static COUNTER: Cell<i32> = const { Cell::new(0) };
    }

    fn next() -> i32 {
        COUNTER.with(|c| {
            c.set(c.get() + 1);
            c.get()
        })
    }

    impl Sample for String {
        fn sample() -> Self {
            format!("s{}", next())
        }
    }

    impl Sample for bool {
        fn sample() -> Self {
            true
        }
    }

    impl Sample for i32 {
        fn sample() -> Self {
            next()
        }
    }

    impl Sample for i64 {
        fn sample() -> Self {
            i64::from(next()) * 1000
        }
    }

    impl Sample for Vec<u8> {
        fn sample() -> Self {
            let n = next().to_le_bytes();
            vec![0, 0xff, n[0], n[1], b'x']
        }
    }

    impl<T: Sample> Sample for Option<T> {
        fn sample() -> Self {
            Some(T::sample())
        }
    }

    impl<T: Sample> Sample for Vec<T> {
        fn sample() -> Self {
            vec![T::sample()]
        }
    }

    impl<V: Sample> Sample for BTreeMap<String, V> {
        fn sample() -> Self {
            BTreeMap::from([(format!("k{}", next()), V::sample())])
        }
    }

    impl Sample for meta::Time {
        fn sample() -> Self {
            meta::Time { seconds: Some(1_700_000_000 + i64::from(next())), nanos: Some(0) }
        }
    }

    impl Sample for meta::MicroTime {
        fn sample() -> Self {
            meta::MicroTime { seconds: Some(1_700_000_000 + i64::from(next())), nanos: Some(123_456_000) }
        }
    }

    impl Sample for Quantity {
        fn sample() -> Self {
            Quantity { string: Some(format!("{}m", next())) }
        }
    }

    impl Sample for IntOrString {
        fn sample() -> Self {
            let n = next();
            if n % 2 == 0 {
                IntOrString { r#type: Some(0), int_val: Some(n), str_val: None }
            } else {
                IntOrString { r#type: Some(1), int_val: None, str_val: Some(format!("port{n}")) }
            }
        }
    }

    impl Sample for meta::FieldsV1 {
        fn sample() -> Self {
            meta::FieldsV1 {
                raw: Some(format!(r#"{{"f:metadata":{{"f:labels":{{"f:n{}":{{}}}}}}}}"#, next()).into_bytes()),
            }
        }
    }

    impl Sample for RawExtension {
        fn sample() -> Self {
            RawExtension { raw: Some(format!(r#"{{"n":{}}}"#, next()).into_bytes()) }
        }
    }

    impl Sample for authentication_v1::ExtraValue {
        fn sample() -> Self {
            authentication_v1::ExtraValue { items: Sample::sample() }
        }
    }

    impl Sample for authorization_v1::ExtraValue {
        fn sample() -> Self {
            authorization_v1::ExtraValue { items: Sample::sample() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_encoding_with_padding() {
        let cases: [(&[u8], &str); 8] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
            (&[0xfb, 0xff, 0xbf], "+/+/"),
        ];
        for (bytes, encoded) in cases {
            assert_eq!(base64(bytes), encoded, "{bytes:?}");
        }
    }

    #[test]
    fn int_or_string_without_a_type_is_an_integer() {
        let value = IntOrString { r#type: None, int_val: Some(8080), str_val: None };
        assert_eq!(value.to_json().ok(), Some(Value::from(8080)));
        let empty = IntOrString::default();
        assert_eq!(empty.to_json().ok(), Some(Value::from(0)));
    }

    #[test]
    fn a_quantity_without_a_string_is_zero() {
        assert_eq!(Quantity { string: None }.to_json().ok(), Some(Value::from("0")));
        assert_eq!(Quantity { string: Some("1Gi".to_owned()) }.to_json().ok(), Some(Value::from("1Gi")));
    }

    #[test]
    fn time_drops_nanoseconds_and_the_zero_time_is_left_out() {
        let time = meta::Time { seconds: Some(0), nanos: Some(0) };
        assert!(time.is_zero());
        assert_eq!(Some(time).field_json(false).ok(), Some(None));
        let time = meta::Time { seconds: Some(86_400), nanos: Some(999_999_999) };
        assert_eq!(time.to_json().ok(), Some(Value::from("1970-01-02T00:00:00Z")));
    }

    #[test]
    fn an_empty_raw_extension_is_null() {
        assert_eq!(RawExtension { raw: None }.to_json().ok(), Some(Value::Null));
        assert_eq!(
            RawExtension { raw: Some(br#"{"a":[1]}"#.to_vec()) }.to_json().ok(),
            Some(serde_json::json!({"a": [1]}))
        );
    }

    #[test]
    fn error_paths_read_from_the_outside_in() {
        let error = ValueError::new(ValueProblem::TimeOutOfRange { seconds: 1, nanos: 0 })
            .within("time")
            .within("[2]")
            .within("managedFields")
            .within("metadata");
        assert_eq!(error.path(), "metadata.managedFields[2].time");
    }
}
