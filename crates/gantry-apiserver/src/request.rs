//! What a request asks for: the path parsed into a resource, a name and a verb, and the query parameters.

use std::collections::HashMap;

use gantry_api::registry::{Registry, ResourceType, Subresource};
use http::Method;

use crate::status::{ApiError, ApiResult};

/// The verb, as kube-apiserver names it for authorization and auditing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// GET of one object.
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection with `watch=true` (or under the legacy `/watch/` prefix).
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    DeleteCollection,
}

/// A request for a resource.
#[derive(Debug)]
pub struct ResourceRequest {
    /// The resource type.
    pub resource: &'static ResourceType,
    /// The namespace from the path (`None` for cluster-scoped resources and cluster-wide lists).
    pub namespace: Option<String>,
    /// The object name, when the path names one.
    pub name: Option<String>,
    /// The subresource, when the path names one.
    pub subresource: Option<Subresource>,
    /// The verb.
    pub verb: Verb,
}

/// What a path addresses.
#[derive(Debug)]
pub enum Target {
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`.
    GroupVersion(String, String),
    /// A resource, collection or subresource.
    Resource(ResourceRequest),
}

/// Parses an API path (`/api/...` or `/apis/...`) and method.
pub fn parse_target(registry: &Registry, method: &Method, path: &str, query: &Query) -> ApiResult<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Ok(Target::CoreVersions),
        ["apis"] => return Ok(Target::Groups),
        ["apis", group] => return Ok(Target::Group((*group).to_string())),
        ["api", version] => return Ok(Target::GroupVersion(String::new(), (*version).to_string())),
        ["apis", group, version] => return Ok(Target::GroupVersion((*group).to_string(), (*version).to_string())),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_route()),
    };
    let (legacy_watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    let (namespace, rest): (Option<&str>, Vec<&str>) = match rest {
        // `namespaces/{name}/status` and `/finalize` are subresources of the namespace itself.
        ["namespaces", ns, next, tail @ ..] if !matches!(*next, "status" | "finalize") => {
            (Some(*ns), std::iter::once(*next).chain(tail.iter().copied()).collect())
        }
        rest => (None, rest.to_vec()),
    };
    let (plural, name, sub) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::no_route()),
    };
    let resource = registry.by_plural(group, version, plural).ok_or_else(ApiError::no_route)?;
    let subresource = match sub {
        Some(s) => {
            Some(Subresource::from_name(s).filter(|s| resource.has_subresource(*s)).ok_or_else(ApiError::no_route)?)
        }
        None => None,
    };
    if namespace.is_some() && !resource.namespaced {
        return Err(ApiError::no_route());
    }
    let watch = legacy_watch || query.flag("watch");
    let verb = match (method, name.is_some()) {
        (&Method::GET, _) if watch => Verb::Watch,
        (&Method::GET, true) => Verb::Get,
        (&Method::GET, false) => Verb::List,
        (&Method::POST, _) => Verb::Create,
        (&Method::PUT, true) => Verb::Update,
        (&Method::PATCH, true) => Verb::Patch,
        (&Method::DELETE, true) => Verb::Delete,
        (&Method::DELETE, false) => Verb::DeleteCollection,
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method} {path})"
            )));
        }
    };
    Ok(Target::Resource(ResourceRequest {
        resource,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource,
        verb,
    }))
}

/// Query parameters, decoded. Repeated keys keep the first value.
#[derive(Debug, Default, Clone)]
pub struct Query {
    params: HashMap<String, String>,
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Query {
        let mut params = HashMap::new();
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            params.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Query { params }
    }

    /// A parameter's value; empty values count as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// A non-negative integer parameter; a malformed value is a 400.
    pub fn number(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("invalid value for {key}: {v:?}"))),
        }
    }
}
