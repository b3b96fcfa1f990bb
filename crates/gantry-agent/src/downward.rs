//! The downward API: a pod's own fields and its containers' resources as text, formatted exactly as the kubelet
//! formats them, shared by `downwardAPI` volumes (and projections) and by container environment variables.

use std::collections::BTreeMap;

use gantry_api::validation::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};

/// The node's allocatable resources: what `resourceFieldRef` reports for a limit the container does not set
/// (the kubelet reports the node's allocatable there, since the container may use up to that).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeAllocatable {
    /// Allocatable CPU in milli-cores.
    pub cpu_millis: i64,
    /// Allocatable memory in bytes.
    pub memory_bytes: i64,
    /// Allocatable ephemeral storage in bytes.
    pub ephemeral_storage_bytes: i64,
}

/// Why a downward API value could not be produced; the texts are the kubelet's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownwardError {
    /// The field path is not one the downward API offers here.
    #[error("unsupported fieldPath: {path}")]
    UnsupportedFieldPath {
        /// The field path asked for.
        path: String,
    },
    /// A subscript on a field that is not a map.
    #[error("fieldPath {path:?} does not support subscript")]
    NoSubscript {
        /// The field path asked for.
        path: String,
    },
    /// The resource is not one `resourceFieldRef` offers.
    #[error("unsupported container resource : {resource}")]
    UnsupportedResource {
        /// The resource asked for.
        resource: String,
    },
    /// `containerName` names no container of the pod.
    #[error("container {container} not found in pod {namespace}/{pod}")]
    ContainerNotFound {
        /// The container asked for.
        container: String,
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        pod: String,
    },
    /// A quantity (a limit, a request or the divisor) does not parse.
    #[error("invalid quantity {value:?} in {what}")]
    Quantity {
        /// Where the quantity was.
        what: String,
        /// Its text.
        value: String,
    },
}

/// Splits `metadata.labels['key']` into `("metadata.labels", "key")`; `None` when there is no subscript.
pub fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (field, key) = inner.split_once("['")?;
    if field.is_empty() {
        return None;
    }
    Some((field, key))
}

/// The metadata fields both the volume and the environment forms of the downward API offer: `metadata.name`,
/// `metadata.namespace`, `metadata.uid`, `metadata.labels`, `metadata.annotations` (the whole maps, formatted
/// by [`format_map`]) and their subscripted forms `metadata.labels['k']` (empty when the key is absent).
pub fn metadata_field(pod: &Pod, path: &str) -> Result<String, DownwardError> {
    let meta = &pod.metadata;
    if let Some((field, key)) = split_subscript(path) {
        let map = match field {
            "metadata.labels" => meta.labels.as_ref(),
            "metadata.annotations" => meta.annotations.as_ref(),
            _ => return Err(DownwardError::NoSubscript { path: path.to_string() }),
        };
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    let empty = BTreeMap::new();
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref().unwrap_or(&empty)),
        "metadata.annotations" => format_map(meta.annotations.as_ref().unwrap_or(&empty)),
        _ => return Err(DownwardError::UnsupportedFieldPath { path: path.to_string() }),
    })
}

/// A map as the downward API writes it: `key="value"` lines sorted by key, values quoted like Go's `%q`, no
/// newline after the last line.
pub fn format_map(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| format!("{k}={}", go_quote(v))).collect::<Vec<_>>().join("\n")
}

/// `s` as Go's `strconv.Quote` (`%q`) writes it: double quotes, backslash escapes for quotes, backslashes and
/// control characters, `\uXXXX`/`\UXXXXXXXX` for characters Go does not consider printable.
///
/// Go's notion of printable is its Unicode tables; this follows them for controls, spaces other than U+0020,
/// format characters and private use, but treats unassigned code points as printable (Go escapes them).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if go_printable(c) => out.push(c),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn go_printable(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    let u = c as u32;
    let format_char = matches!(u,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891 | 0x8e2 | 0x180e | 0x200b..=0x200f
        | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff | 0xfff9..=0xfffb | 0x110bd | 0x110cd
        | 0x13430..=0x1343f | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f);
    let private_or_noncharacter = matches!(u, 0xe000..=0xf8ff | 0xf0000.. | 0xfdd0..=0xfdef) || (u & 0xfffe) == 0xfffe;
    !(c.is_control() || c.is_whitespace() || format_char || private_or_noncharacter)
}

/// The value of a `resourceFieldRef` for `container` of `pod`, as the kubelet computes it: limits the
/// container does not set default to the node's allocatable; the value is divided by the divisor (default 1)
/// and rounded up. `limits.cpu` with divisor `1m` gives milli-cores, `requests.memory` with `1Mi` mebibytes.
pub fn resource_value(
    pod: &Pod,
    container: &Container,
    selector: &ResourceFieldSelector,
    allocatable: &NodeAllocatable,
) -> Result<String, DownwardError> {
    let container = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) if name != container.name => find_container(pod, name)?,
        _ => container,
    };
    let divisor = match &selector.divisor {
        Some(q) => parse_quantity(&q.0, "divisor")?,
        None => Quantity::from_units(1),
    };
    let divisor = if divisor.is_zero() { Quantity::from_units(1) } else { divisor };
    let resources = container.resources.as_ref();
    let lookup = |list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
                  name: &str|
     -> Result<Option<Quantity>, DownwardError> {
        match list.and_then(|l| l.get(name)) {
            Some(q) => {
                parse_quantity(&q.0, &format!("{} of container {}", selector.resource, container.name)).map(Some)
            }
            None => Ok(None),
        }
    };
    let limits = resources.and_then(|r| r.limits.as_ref());
    let requests = resources.and_then(|r| r.requests.as_ref());
    let (kind, scope) = match selector.resource.split_once('.') {
        Some((scope @ ("limits" | "requests"), kind)) => (kind, scope),
        _ => return Err(DownwardError::UnsupportedResource { resource: selector.resource.clone() }),
    };
    let default_limit = match kind {
        "cpu" => Quantity::from_millis(allocatable.cpu_millis),
        "memory" => Quantity::from_units(allocatable.memory_bytes),
        "ephemeral-storage" => Quantity::from_units(allocatable.ephemeral_storage_bytes),
        k if k.starts_with("hugepages-") => Quantity::from_units(0),
        _ => return Err(DownwardError::UnsupportedResource { resource: selector.resource.clone() }),
    };
    let amount = if scope == "limits" {
        match lookup(limits, kind)? {
            // Hugepages are never overcommitted, so they get no allocatable default.
            Some(q) if !q.is_zero() || kind.starts_with("hugepages-") => q,
            _ if kind.starts_with("hugepages-") => Quantity::from_units(0),
            _ => default_limit,
        }
    } else {
        lookup(requests, kind)?.unwrap_or(Quantity::from_units(0))
    };
    let value = if kind == "cpu" {
        (amount.milli_value() as f64 / divisor.milli_value() as f64).ceil()
    } else {
        (amount.value() as f64 / divisor.value() as f64).ceil()
    };
    Ok(format!("{}", value as i64))
}

/// The value of a `resourceFieldRef` of a downward API volume, where `containerName` names the container.
pub fn volume_resource_value(
    pod: &Pod,
    selector: &ResourceFieldSelector,
    allocatable: &NodeAllocatable,
) -> Result<String, DownwardError> {
    let container = find_container(pod, selector.container_name.as_deref().unwrap_or(""))?;
    resource_value(pod, container, selector, allocatable)
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Result<&'a Container, DownwardError> {
    let spec = pod.spec.as_ref();
    spec.into_iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .find(|c| c.name == name)
        .ok_or_else(|| DownwardError::ContainerNotFound {
            container: name.to_string(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            pod: pod.metadata.name.clone().unwrap_or_default(),
        })
}

fn parse_quantity(text: &str, what: &str) -> Result<Quantity, DownwardError> {
    Quantity::parse(text).map_err(|_| DownwardError::Quantity { what: what.to_string(), value: text.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod() -> Pod {
        let container = Container {
            name: "app".into(),
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([("memory".into(), Q("64Mi".into())), ("cpu".into(), Q("250m".into()))])),
                requests: Some(BTreeMap::from([
                    ("memory".into(), Q("32Mi".into())),
                    ("cpu".into(), Q("1500m".into())),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("u-1".into()),
                labels: Some(BTreeMap::from([("b".into(), "two".into()), ("a".into(), "one \"q\"\n".into())])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![container, Container { name: "bare".into(), ..Default::default() }],
                ..Default::default()
            }),
            status: None,
        }
    }

    fn selector(resource: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector { resource: resource.into(), divisor: divisor.map(|d| Q(d.into())), container_name: None }
    }

    const ALLOCATABLE: NodeAllocatable =
        NodeAllocatable { cpu_millis: 2000, memory_bytes: 4 << 30, ephemeral_storage_bytes: 10 << 30 };

    #[test]
    fn labels_are_sorted_key_value_lines_with_go_quoting_and_no_final_newline() {
        let text = metadata_field(&pod(), "metadata.labels").expect("labels");
        assert_eq!(text, "a=\"one \\\"q\\\"\\n\"\nb=\"two\"");
    }

    #[test]
    fn subscripted_labels_give_the_raw_value_or_nothing() {
        assert_eq!(metadata_field(&pod(), "metadata.labels['b']").expect("b"), "two");
        assert_eq!(metadata_field(&pod(), "metadata.labels['zz']").expect("zz"), "");
        assert_eq!(
            metadata_field(&pod(), "metadata.name['x']"),
            Err(DownwardError::NoSubscript { path: "metadata.name['x']".into() })
        );
    }

    #[test]
    fn plain_metadata_fields_and_unsupported_paths() {
        assert_eq!(metadata_field(&pod(), "metadata.uid").expect("uid"), "u-1");
        assert_eq!(metadata_field(&pod(), "metadata.namespace").expect("ns"), "ns");
        let err = metadata_field(&pod(), "spec.nodeName").expect_err("unsupported");
        assert_eq!(err.to_string(), "unsupported fieldPath: spec.nodeName");
    }

    #[test]
    fn go_quote_escapes_like_strconv_quote() {
        assert_eq!(go_quote("tab\there"), "\"tab\\there\"");
        assert_eq!(go_quote("\u{1}\u{7f}"), "\"\\x01\\x7f\"");
        assert_eq!(go_quote("é ü"), "\"é ü\"");
        assert_eq!(go_quote("\u{a0}\u{200b}"), "\"\\u00a0\\u200b\"");
        assert_eq!(go_quote("\u{f0000}"), "\"\\U000f0000\"");
        assert_eq!(go_quote("back\\slash"), "\"back\\\\slash\"");
    }

    #[test]
    fn cpu_values_are_divided_and_rounded_up() {
        let p = pod();
        let c = &p.spec.as_ref().expect("spec").containers[0];
        assert_eq!(resource_value(&p, c, &selector("limits.cpu", None), &ALLOCATABLE).expect("cpu"), "1");
        assert_eq!(resource_value(&p, c, &selector("limits.cpu", Some("1m")), &ALLOCATABLE).expect("cpu"), "250");
        assert_eq!(resource_value(&p, c, &selector("requests.cpu", None), &ALLOCATABLE).expect("cpu"), "2");
    }

    #[test]
    fn memory_values_use_the_divisor() {
        let p = pod();
        let c = &p.spec.as_ref().expect("spec").containers[0];
        assert_eq!(resource_value(&p, c, &selector("limits.memory", None), &ALLOCATABLE).expect("m"), "67108864");
        assert_eq!(resource_value(&p, c, &selector("limits.memory", Some("1Mi")), &ALLOCATABLE).expect("m"), "64");
        assert_eq!(resource_value(&p, c, &selector("requests.memory", Some("1M")), &ALLOCATABLE).expect("m"), "34");
    }

    #[test]
    fn missing_limits_default_to_the_node_allocatable_and_missing_requests_to_zero() {
        let p = pod();
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let mut other = selector("limits.cpu", Some("1m"));
        other.container_name = Some("bare".into());
        assert_eq!(resource_value(&p, c, &other, &ALLOCATABLE).expect("cpu"), "2000");
        other.resource = "limits.ephemeral-storage".into();
        other.divisor = Some(Q("1Gi".into()));
        assert_eq!(resource_value(&p, c, &other, &ALLOCATABLE).expect("storage"), "10");
        other.resource = "requests.memory".into();
        assert_eq!(resource_value(&p, c, &other, &ALLOCATABLE).expect("memory"), "0");
        other.container_name = Some("nope".into());
        assert!(matches!(resource_value(&p, c, &other, &ALLOCATABLE), Err(DownwardError::ContainerNotFound { .. })));
        assert_eq!(
            resource_value(&p, c, &selector("limits.gpu", None), &ALLOCATABLE).expect_err("gpu").to_string(),
            "unsupported container resource : limits.gpu"
        );
    }
}
