//! Resource amounts as the scheduler counts them: CPU in millicores, memory and storage in bytes, pods, and
//! extended resources by name.

use std::collections::BTreeMap;

use gantry_api::validation::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;

/// A set of resource amounts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Number of pods (allocatable: the node's `pods`; requested: pods placed).
    pub pods: i64,
    /// Extended and other scalar resources (e.g. `nvidia.com/gpu`, `hugepages-2Mi`), in their base unit.
    pub scalars: BTreeMap<String, i64>,
}

fn amount(name: &str, q: &KQuantity) -> i64 {
    match Quantity::parse(&q.0) {
        Ok(quantity) if name == "cpu" => quantity.milli_value(),
        Ok(quantity) => quantity.value(),
        // Quantities were validated when written; an unreadable one counts as nothing.
        Err(_) => 0,
    }
}

impl Resources {
    /// Amounts from a resource list (`requests`, `limits`, `capacity`, `allocatable`).
    pub fn from_list(list: &BTreeMap<String, KQuantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set(name, amount(name, q));
        }
        r
    }

    fn set(&mut self, name: &str, value: i64) {
        match name {
            "cpu" => self.milli_cpu = value,
            "memory" => self.memory = value,
            "ephemeral-storage" => self.ephemeral_storage = value,
            "pods" => self.pods = value,
            other => {
                self.scalars.insert(other.to_string(), value);
            }
        }
    }

    /// The amount of one resource by its API name.
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.pods,
            other => self.scalars.get(other).copied().unwrap_or(0),
        }
    }

    /// Adds `other` to these amounts.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (k, v) in &other.scalars {
            *self.scalars.entry(k.clone()).or_insert(0) += v;
        }
    }

    /// Subtracts `other` from these amounts.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (k, v) in &other.scalars {
            *self.scalars.entry(k.clone()).or_insert(0) -= v;
        }
    }

    /// The larger of each amount.
    pub fn max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalars {
            let e = self.scalars.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }
}

fn container_requests(c: &Container) -> Resources {
    c.resources.as_ref().and_then(|r| r.requests.as_ref()).map(Resources::from_list).unwrap_or_default()
}

/// What a pod asks of a node, as kube-scheduler computes it: the sum of its containers' requests, at least
/// the largest request of any init container (sidecars, `restartPolicy: Always`, add to both), plus the pod
/// overhead; `pods` is 1.
pub fn pod_requests(pod: &Pod) -> Resources {
    let mut total = Resources::default();
    let Some(spec) = &pod.spec else {
        total.pods = 1;
        return total;
    };
    for c in &spec.containers {
        total.add(&container_requests(c));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let req = container_requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&req);
            total.add(&req);
        } else {
            // A regular init container runs alongside the sidecars started before it.
            let mut during = sidecars.clone();
            during.add(&req);
            init_max.max(&during);
        }
    }
    total.max(&init_max);
    if let Some(overhead) = &spec.overhead {
        total.add(&Resources::from_list(overhead));
    }
    total.pods = 1;
    total
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn requests_sum_containers_and_take_the_largest_init_container() {
        let p = pod(serde_json::json!({"spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                           {"name": "b", "resources": {"requests": {"cpu": "200m", "nvidia.com/gpu": "1"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1", "memory": "32Mi"}}}],
            "overhead": {"cpu": "10m"}}}));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 1010);
        assert_eq!(r.memory, 64 * 1024 * 1024);
        assert_eq!(r.scalars["nvidia.com/gpu"], 1);
        assert_eq!(r.pods, 1);
    }

    #[test]
    fn sidecars_add_to_the_pod_and_to_later_init_containers() {
        let p = pod(serde_json::json!({"spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
                {"name": "setup", "resources": {"requests": {"cpu": "300m"}}}]}}));
        assert_eq!(pod_requests(&p).milli_cpu, 350);
    }
}
