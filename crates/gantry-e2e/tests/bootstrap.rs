//! What a freshly started cluster holds, as every reader sees it: GET (served from the store) and LIST (served
//! from the watch cache) must agree from the first request on.

use gantry_e2e::TestCluster;

const TOKEN: &str = "bootstrap-token";

fn listed_namespaces(cluster: &TestCluster) -> Vec<String> {
    let list = cluster.raw_get("/api/v1/namespaces", Some(TOKEN)).json();
    let mut names: Vec<String> = list["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|n| n["metadata"]["name"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn every_fresh_cluster_lists_all_built_in_namespaces() {
    // The race is between the cache's first listing and the bootstrap's first write, so it takes many starts to
    // see; each start is a fraction of a second.
    for attempt in 0..40 {
        let cluster = TestCluster::builder().token(TOKEN, "reader").start();
        assert_eq!(cluster.raw_get("/api/v1/namespaces/default", Some(TOKEN)).status, 200);
        let names = listed_namespaces(&cluster);
        assert_eq!(names, ["default", "kube-node-lease", "kube-public", "kube-system"], "start #{attempt}");
    }
}
