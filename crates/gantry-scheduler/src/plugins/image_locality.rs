//! ImageLocality: prefers nodes that already hold the pod's images, as kube-scheduler's plugin of the same
//! name scores them. Each image present on a node counts its size scaled by the fraction of all nodes that
//! hold it (so that an image everywhere does not pull every pod to one node); the sum is clamped between
//! 23 MiB and 1000 MiB per container and mapped linearly onto 0..=MAX_NODE_SCORE.

use std::collections::HashMap;

use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, PreFilter, Score, Status};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

const MB: i64 = 1024 * 1024;
/// Below this sum of scaled image sizes a node scores 0.
pub const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container: at or above this many times the number of containers a node scores MAX_NODE_SCORE.
pub const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

const STATE_KEY: &str = "PreFilterImageLocality";

/// What scoring needs from the whole cluster: how many nodes there are and how many hold each of the pod's
/// images (by normalized name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSpread {
    /// The number of nodes in the snapshot (all of them, not only the feasible ones).
    pub total_nodes: usize,
    /// Nodes holding each image the pod uses.
    pub nodes_with_image: HashMap<String, usize>,
    /// The pod's images, normalized once per cycle rather than once per node (duplicates kept).
    pub images: Vec<String>,
    /// The pod's containers.
    pub containers: i64,
}

/// Scores nodes by the images of the pod they already hold.
///
/// Scoring needs the count of nodes holding each image across the whole snapshot, which Score cannot see;
/// the plugin therefore records it in its PreFilter, and must be registered at both extension points.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImageLocality;

impl ImageLocality {
    /// The plugin (it takes no arguments).
    pub fn new() -> ImageLocality {
        ImageLocality
    }
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }
}

/// An image reference without a tag gets `:latest`, as the container runtime reads it; a digest reference
/// (`@sha256:…`) already has a colon after the last slash and stays as it is.
pub fn normalized_image_name(image: &str) -> String {
    let colon = image.rfind(':');
    let slash = image.rfind('/');
    if colon <= slash { format!("{image}:latest") } else { image.to_string() }
}

/// The images of the pod's init and regular containers, normalized, in order (duplicates kept: each
/// container counts).
fn pod_images(pod: &PodInfo) -> Vec<String> {
    let Some(spec) = &pod.pod.spec else { return Vec::new() };
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| normalized_image_name(c.image.as_deref().unwrap_or("")))
        .collect()
}

fn container_count(pod: &PodInfo) -> i64 {
    pod.pod.spec.as_ref().map_or(0, |s| s.containers.len() + s.init_containers.as_ref().map_or(0, Vec::len)) as i64
}

/// Maps a sum of scaled image sizes to 0..=MAX_NODE_SCORE for a pod with `containers` containers.
pub fn calculate_priority(sum: i64, containers: i64) -> i64 {
    let max_threshold = MAX_CONTAINER_THRESHOLD * containers;
    let clamped = if sum < MIN_THRESHOLD { MIN_THRESHOLD } else { sum.min(max_threshold) };
    let span = max_threshold - MIN_THRESHOLD;
    // A pod without containers has max_threshold 0 and scores nothing.
    if span <= 0 {
        return 0;
    }
    MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / span
}

impl PreFilter for ImageLocality {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> Status {
        let images = pod_images(pod);
        let nodes_with_image = images
            .iter()
            .map(|image| {
                let count = snapshot.image_nodes.get(image).copied().unwrap_or(0);
                (image.clone(), count)
            })
            .collect();
        let containers = container_count(pod);
        state.write(STATE_KEY, ImageSpread { total_nodes: snapshot.nodes.len(), nodes_with_image, images, containers });
        Status::success()
    }
}

impl Score for ImageLocality {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(spread) = state.read::<ImageSpread>(STATE_KEY) else {
            return Err(Status::error("ImageLocality: no image spread in the cycle state (PreFilter not run)"));
        };
        let mut sum = 0i64;
        if !node.image_sizes.is_empty() {
            for image in &spread.images {
                let Some(size) = node.image_sizes.get(image) else { continue };
                let holders = spread.nodes_with_image.get(image).copied().unwrap_or(0);
                let fraction = if spread.total_nodes == 0 { 0.0 } else { holders as f64 / spread.total_nodes as f64 };
                sum += (*size as f64 * fraction) as i64;
            }
        }
        Ok(calculate_priority(sum, spread.containers))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};

    use super::*;
    use crate::framework::{Code, Decision, PluginSet, Profile};

    fn pod(images: &[&str]) -> PodInfo {
        let containers: Vec<Value> =
            images.iter().enumerate().map(|(i, image)| json!({"name": format!("c{i}"), "image": image})).collect();
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": containers}}))
        .unwrap();
        PodInfo::new(Arc::new(pod))
    }

    fn node(name: &str, images: &[(&str, i64)]) -> Arc<NodeInfo> {
        let images: Vec<Value> = images.iter().map(|(n, size)| json!({"names": [n], "sizeBytes": size})).collect();
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": name}, "status": {"images": images}})).unwrap();
        Arc::new(NodeInfo::new(Arc::new(node)))
    }

    fn scores(pod: &PodInfo, snapshot: &Snapshot) -> Vec<i64> {
        let mut state = CycleState::default();
        assert!(ImageLocality.pre_filter(&mut state, pod, snapshot).is_success());
        snapshot.nodes.iter().map(|n| ImageLocality.score(&state, pod, n).unwrap()).collect()
    }

    #[test]
    fn untagged_images_are_read_as_latest() {
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(normalized_image_name("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(normalized_image_name("localhost:5000/app:v1"), "localhost:5000/app:v1");
        assert_eq!(normalized_image_name("app@sha256:abc"), "app@sha256:abc");
    }

    #[test]
    fn sizes_are_scaled_by_the_fraction_of_nodes_holding_the_image() {
        // 250 MiB on 1 of 2 nodes: 125 MiB counted; (125 - 23) * 100 / (1000 - 23) = 10.
        let snapshot = Snapshot::new(vec![node("a", &[("app:v1", 250 * MB)]), node("b", &[])]);
        assert_eq!(scores(&pod(&["app:v1"]), &snapshot), vec![10, 0]);
    }

    #[test]
    fn an_image_on_every_node_is_counted_in_full_everywhere() {
        let snapshot = Snapshot::new(vec![node("a", &[("app:v1", 500 * MB)]), node("b", &[("app:v1", 500 * MB)])]);
        assert_eq!(scores(&pod(&["app:v1"]), &snapshot), vec![48, 48]);
    }

    #[test]
    fn small_images_score_nothing_and_huge_ones_are_capped() {
        let snapshot = Snapshot::new(vec![node("a", &[("small:1", 20 * MB), ("huge:1", 5000 * MB)])]);
        assert_eq!(scores(&pod(&["small:1"]), &snapshot), vec![0]);
        assert_eq!(scores(&pod(&["huge:1"]), &snapshot), vec![MAX_NODE_SCORE]);
    }

    #[test]
    fn the_cap_grows_with_the_number_of_containers() {
        let snapshot = Snapshot::new(vec![node("a", &[("huge:1", 5000 * MB)])]);
        // 1000 MiB counted of a 2000 MiB cap: (1000 - 23) * 100 / (2000 - 23) = 49.
        let two = pod(&["huge:1", "other:1"]);
        assert_eq!(calculate_priority(1000 * MB, 2), 49);
        assert_eq!(scores(&two, &snapshot), vec![100]);
    }

    #[test]
    fn a_pod_naming_nginx_matches_the_node_image_nginx_latest() {
        let snapshot = Snapshot::new(vec![node("a", &[("nginx:latest", 600 * MB)])]);
        assert_eq!(scores(&pod(&["nginx"]), &snapshot), vec![59]);
    }

    #[test]
    fn a_pod_without_containers_scores_zero() {
        assert_eq!(calculate_priority(0, 0), 0);
    }

    #[test]
    fn score_without_pre_filter_is_an_error() {
        let status = ImageLocality.score(&CycleState::default(), &pod(&["a"]), &node("a", &[])).unwrap_err();
        assert_eq!(status.code, Code::Error);
    }

    #[test]
    fn a_profile_prefers_the_node_holding_the_image() {
        let plugin = Arc::new(ImageLocality);
        let profile = Profile {
            scheduler_name: "default-scheduler".into(),
            plugins: PluginSet { pre_filter: vec![plugin.clone()], score: vec![(plugin, 1)], ..Default::default() },
        };
        let snapshot = Snapshot::new(vec![node("a", &[]), node("b", &[("app:v1", 900 * MB)]), node("c", &[])]);
        let (decision, _) = profile.schedule(&pod(&["app:v1"]), &snapshot, 0);
        let Decision::Place { node, explanation } = decision else { panic!("not placed") };
        assert_eq!(node, "b");
        // 900 MiB on 1 of 3 nodes: 300 MiB counted; (300 - 23) * 100 / 977 = 28.
        assert_eq!(explanation.scores[0].total, 28);
    }
}
