//! The ownerReferences graph, without IO: nodes by UID, each knowing its owners and its dependents, and what
//! each change means for the garbage collector's queues (as kube-controller-manager's graph builder does).
//!
//! An owner named by a reference but not seen yet is a *virtual* node: the collector must check with the API
//! whether it exists. Every change returns the UIDs to queue; nothing here scans the whole graph.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The finalizer that makes an owner wait for its blocking dependents to be deleted.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer that makes an owner wait for its dependents to be released.
pub const ORPHAN: &str = "orphan";

/// Where an object is, and which one it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// `group/version` (`v1` for the core group).
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// The namespace; empty for a cluster-scoped object (and, for a virtual node, the dependent's namespace:
    /// where a namespaced owner must be).
    pub namespace: String,
    /// The name.
    pub name: String,
    /// The UID.
    pub uid: String,
}

/// What the collector needs of an object the watch shows.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    /// The object.
    pub identity: Identity,
    /// Its owner references.
    pub owners: Vec<OwnerReference>,
    /// Whether it has a deletionTimestamp.
    pub being_deleted: bool,
    /// Its finalizers.
    pub finalizers: Vec<String>,
}

/// One object (or a virtual owner) in the graph.
#[derive(Clone, Debug)]
pub struct Node {
    /// The object.
    pub identity: Identity,
    /// Its owner references (empty for a virtual node).
    pub owners: Vec<OwnerReference>,
    /// The UIDs of the objects whose references name this one.
    pub dependents: HashSet<String>,
    /// Seen by a watch; `false` for a virtual node.
    pub observed: bool,
    /// It has a deletionTimestamp.
    pub being_deleted: bool,
    /// It has a deletionTimestamp and the `foregroundDeletion` finalizer: it waits for its dependents.
    pub deleting_dependents: bool,
    /// It has a deletionTimestamp and the `orphan` finalizer: it waits for its dependents to be released.
    pub orphaning: bool,
}

impl Node {
    fn virtual_owner(identity: Identity) -> Node {
        Node {
            identity,
            owners: Vec::new(),
            dependents: HashSet::new(),
            observed: false,
            being_deleted: false,
            deleting_dependents: false,
            orphaning: false,
        }
    }
}

/// What a change asks the collector to look at.
#[derive(Debug, Default, PartialEq)]
pub struct Work {
    /// UIDs for the "attempt to delete" queue.
    pub attempt_to_delete: Vec<String>,
    /// UIDs for the "attempt to orphan" queue.
    pub attempt_to_orphan: Vec<String>,
    /// Dependents naming, by UID, an owner observed in another namespace (to report).
    pub invalid_namespace: Vec<(Identity, OwnerReference)>,
}

/// The graph.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
}

fn blocks(reference: &OwnerReference) -> bool {
    reference.block_owner_deletion == Some(true)
}

/// The identity an owner reference gives its owner, seen from a dependent in `namespace`.
pub fn owner_identity(reference: &OwnerReference, namespace: &str) -> Identity {
    Identity {
        api_version: reference.api_version.clone(),
        kind: reference.kind.clone(),
        namespace: namespace.to_string(),
        name: reference.name.clone(),
        uid: reference.uid.clone(),
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// One node.
    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// How many nodes (virtual ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The dependents of `uid` whose reference to it blocks its deletion.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<&Node> {
        let Some(node) = self.nodes.get(uid) else { return Vec::new() };
        node.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .filter(|d| d.owners.iter().any(|o| o.uid == uid && blocks(o)))
            .collect()
    }

    /// Links `dependent` to the owners named by `references`, creating virtual owners (to be verified). A
    /// reference that disagrees with what the graph knows of its owner (another namespace, kind or name) has
    /// the dependent verified too: its owner may not exist where the reference says.
    fn link(&mut self, dependent: &Identity, references: &[&OwnerReference], work: &mut Work) {
        let namespace = dependent.namespace.as_str();
        let mut suspicious = false;
        for reference in references {
            let Some(owner) = self.nodes.get_mut(&reference.uid) else {
                let mut owner = Node::virtual_owner(owner_identity(reference, namespace));
                owner.dependents.insert(dependent.uid.clone());
                self.nodes.insert(reference.uid.clone(), owner);
                work.attempt_to_delete.push(reference.uid.clone());
                continue;
            };
            owner.dependents.insert(dependent.uid.clone());
            let known = &owner.identity;
            if !known.namespace.is_empty() && known.namespace != namespace {
                if owner.observed {
                    work.invalid_namespace.push((dependent.clone(), (*reference).clone()));
                }
                suspicious = true;
            } else if known.api_version.split('/').rev().nth(1) != reference.api_version.split('/').rev().nth(1)
                || known.kind != reference.kind
                || known.name != reference.name
            {
                suspicious = true;
            } else if known.namespace.is_empty() && !namespace.is_empty() && !owner.observed {
                // A virtual cluster-scoped owner may be a namespaced one wrongly named by a cluster-scoped object.
                suspicious = true;
            }
        }
        if suspicious {
            work.attempt_to_delete.push(dependent.uid.clone());
        }
    }

    fn unlink(&mut self, dependent: &str, owner: &str) {
        let drop_owner = match self.nodes.get_mut(owner) {
            Some(node) => {
                node.dependents.remove(dependent);
                !node.observed && node.dependents.is_empty()
            }
            None => false,
        };
        // A virtual owner nobody names any more has nothing left to verify.
        if drop_owner {
            self.nodes.remove(owner);
        }
    }

    /// The watch shows `info` (added or changed).
    pub fn observe(&mut self, info: ObjectInfo) -> Work {
        let mut work = Work::default();
        let uid = info.identity.uid.clone();
        let dependent = info.identity.clone();
        let deleting_dependents = info.being_deleted && info.finalizers.iter().any(|f| f == FOREGROUND);
        let orphaning = info.being_deleted && info.finalizers.iter().any(|f| f == ORPHAN);
        let (old_owners, was_deleting_dependents, was_orphaning) = match self.nodes.get(&uid) {
            Some(node) if node.observed => (node.owners.clone(), node.deleting_dependents, node.orphaning),
            _ => (Vec::new(), false, false),
        };
        let node = self.nodes.entry(uid.clone()).or_insert_with(|| Node::virtual_owner(info.identity.clone()));
        let was_virtual = !node.observed;
        node.identity = info.identity;
        node.owners = info.owners.clone();
        node.observed = true;
        node.being_deleted = info.being_deleted;
        node.deleting_dependents = deleting_dependents;
        node.orphaning = orphaning;

        // Dependents that named this object before it was seen took it to be in their own namespace; those
        // elsewhere (a cluster-scoped object naming a namespaced owner, say) name an owner that is not there.
        if was_virtual && !dependent.namespace.is_empty() {
            let dependents: Vec<String> =
                self.nodes.get(&uid).map(|n| n.dependents.iter().cloned().collect()).unwrap_or_default();
            for d in dependents {
                let Some(other) = self.nodes.get(&d) else { continue };
                if other.identity.namespace == dependent.namespace {
                    continue;
                }
                if let Some(reference) = other.owners.iter().find(|o| o.uid == uid) {
                    work.invalid_namespace.push((other.identity.clone(), reference.clone()));
                }
                work.attempt_to_delete.push(d);
            }
        }
        let added: Vec<&OwnerReference> =
            info.owners.iter().filter(|new| !old_owners.iter().any(|old| old.uid == new.uid)).collect();
        self.link(&dependent, &added, &mut work);
        for old in &old_owners {
            let unblocked = match info.owners.iter().find(|new| new.uid == old.uid) {
                None => {
                    self.unlink(&uid, &old.uid);
                    blocks(old)
                }
                Some(new) => blocks(old) && !blocks(new),
            };
            // An owner waiting for its blocking dependents may be waiting for this one no more.
            if unblocked && self.nodes.get(&old.uid).is_some_and(|o| o.deleting_dependents) {
                work.attempt_to_delete.push(old.uid.clone());
            }
        }

        if orphaning && !was_orphaning {
            work.attempt_to_orphan.push(uid);
        } else if deleting_dependents && !was_deleting_dependents {
            if let Some(node) = self.nodes.get(&uid) {
                work.attempt_to_delete.extend(node.dependents.iter().cloned());
            }
            work.attempt_to_delete.push(uid);
        }
        work
    }

    /// The watch shows the object `uid` deleted.
    pub fn observe_deleted(&mut self, uid: &str) -> Work {
        let mut work = Work::default();
        let Some(node) = self.nodes.remove(uid) else { return work };
        work.attempt_to_delete.extend(node.dependents.iter().cloned());
        for owner in &node.owners {
            self.unlink(uid, &owner.uid);
            if self.nodes.get(&owner.uid).is_some_and(|o| o.deleting_dependents) {
                work.attempt_to_delete.push(owner.uid.clone());
            }
        }
        // Its dependents still name it; keep a virtual node so that a dependent seen again relinks to it.
        if !node.dependents.is_empty() {
            let mut placeholder = Node::virtual_owner(node.identity);
            placeholder.dependents = node.dependents;
            self.nodes.insert(uid.to_string(), placeholder);
        }
        work
    }

    /// The API says the virtual node `uid` does not exist: forget it, and look at its dependents. An observed
    /// node stays: its watch will report its deletion.
    pub fn absent(&mut self, uid: &str) -> Work {
        let mut work = Work::default();
        if self.nodes.get(uid).is_some_and(|n| !n.observed)
            && let Some(node) = self.nodes.remove(uid)
        {
            work.attempt_to_delete.extend(node.dependents);
        }
        work
    }
}

/// What a dependent's owner turned out to be, checked against the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// It exists and is not waiting for its dependents' deletion.
    Solid,
    /// It does not exist (absent, or present with another UID).
    Dangling,
    /// It is being deleted in the foreground: its dependents must go first.
    WaitingForDependentsDeletion,
}

/// How to delete an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Its dependents go in the background.
    Background,
    /// It waits for its dependents.
    Foreground,
    /// Its dependents are released.
    Orphan,
}

/// What to do with a dependent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It has owners; nothing to do.
    Keep,
    /// It keeps an owner but names some that are gone or going: remove those references (these UIDs).
    RemoveReferences(Vec<String>),
    /// Every owner is gone or going: delete it.
    Delete(Propagation),
}

/// Decides a dependent's fate from its owners' states, as kube-controller-manager's `attemptToDeleteItem`
/// does: one solid owner keeps it (references to the others are removed); an owner deleting in the
/// foreground makes a dependent with dependents of its own delete in the foreground too, so that the
/// deletion cascades; otherwise the dependent is deleted the way its own finalizers ask (background by
/// default).
pub fn decide(owners: &[(String, OwnerState)], has_dependents: bool, finalizers: &[String]) -> Decision {
    if owners.is_empty() {
        return Decision::Keep;
    }
    let solid = owners.iter().any(|(_, state)| *state == OwnerState::Solid);
    if solid {
        let gone: Vec<String> =
            owners.iter().filter(|(_, state)| *state != OwnerState::Solid).map(|(uid, _)| uid.clone()).collect();
        return if gone.is_empty() { Decision::Keep } else { Decision::RemoveReferences(gone) };
    }
    let waiting = owners.iter().any(|(_, state)| *state == OwnerState::WaitingForDependentsDeletion);
    if waiting && has_dependents {
        return Decision::Delete(Propagation::Foreground);
    }
    if finalizers.iter().any(|f| f == ORPHAN) {
        Decision::Delete(Propagation::Orphan)
    } else if finalizers.iter().any(|f| f == FOREGROUND) {
        Decision::Delete(Propagation::Foreground)
    } else {
        Decision::Delete(Propagation::Background)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn identity(name: &str) -> Identity {
        Identity {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    fn reference(owner: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: owner.into(),
            uid: format!("uid-{owner}"),
            block_owner_deletion: Some(block),
            controller: None,
        }
    }

    fn object(name: &str, owners: Vec<OwnerReference>) -> ObjectInfo {
        ObjectInfo { identity: identity(name), owners, being_deleted: false, finalizers: Vec::new() }
    }

    fn deleting(name: &str, owners: Vec<OwnerReference>, finalizer: &str) -> ObjectInfo {
        ObjectInfo { being_deleted: true, finalizers: vec![finalizer.into()], ..object(name, owners) }
    }

    fn sorted(mut uids: Vec<String>) -> Vec<String> {
        uids.sort();
        uids
    }

    #[test]
    fn an_owner_not_seen_yet_is_a_virtual_node_queued_for_verification() {
        let mut graph = Graph::new();
        let work = graph.observe(object("child", vec![reference("parent", false)]));
        assert_eq!(work.attempt_to_delete, vec!["uid-parent".to_string()]);
        let parent = graph.node("uid-parent").unwrap();
        assert!(!parent.observed);
        assert!(parent.dependents.contains("uid-child"));

        let work = graph.observe(object("parent", vec![]));
        assert_eq!(work, Work::default(), "seeing the owner queues nothing");
        assert!(graph.node("uid-parent").unwrap().observed);
    }

    #[test]
    fn a_deleted_owner_queues_its_dependents() {
        let mut graph = Graph::new();
        graph.observe(object("parent", vec![]));
        graph.observe(object("a", vec![reference("parent", false)]));
        graph.observe(object("b", vec![reference("parent", true)]));
        let work = graph.observe_deleted("uid-parent");
        assert_eq!(sorted(work.attempt_to_delete), vec!["uid-a".to_string(), "uid-b".to_string()]);
    }

    #[test]
    fn an_owner_verified_absent_leaves_the_graph_and_queues_its_dependents() {
        let mut graph = Graph::new();
        graph.observe(object("child", vec![reference("ghost", false)]));
        assert_eq!(graph.absent("uid-ghost").attempt_to_delete, vec!["uid-child".to_string()]);
        assert!(graph.node("uid-ghost").is_none());
    }

    #[test]
    fn an_observed_node_is_not_removed_by_a_lookup_that_missed_it() {
        let mut graph = Graph::new();
        graph.observe(object("parent", vec![]));
        assert_eq!(graph.absent("uid-parent"), Work::default());
        assert!(graph.node("uid-parent").is_some(), "its watch reports its deletion");
    }

    #[test]
    fn a_dependent_whose_every_owner_is_gone_is_deleted_in_the_background() {
        let owners = [("a".to_string(), OwnerState::Dangling), ("b".to_string(), OwnerState::Dangling)];
        assert_eq!(decide(&owners, false, &[]), Decision::Delete(Propagation::Background));
    }

    #[test]
    fn a_dependent_with_one_owner_left_only_loses_the_references_to_the_others() {
        let owners = [
            ("a".to_string(), OwnerState::Dangling),
            ("b".to_string(), OwnerState::Solid),
            ("c".to_string(), OwnerState::WaitingForDependentsDeletion),
        ];
        assert_eq!(decide(&owners, true, &[]), Decision::RemoveReferences(vec!["a".into(), "c".into()]));
        assert_eq!(decide(&[("b".to_string(), OwnerState::Solid)], false, &[]), Decision::Keep);
        assert_eq!(decide(&[], false, &[]), Decision::Keep, "no owners, nothing to collect");
    }

    #[test]
    fn a_dependent_of_a_foreground_deletion_with_dependents_of_its_own_cascades_in_the_foreground() {
        let owners = [("a".to_string(), OwnerState::WaitingForDependentsDeletion)];
        assert_eq!(decide(&owners, true, &[]), Decision::Delete(Propagation::Foreground));
        assert_eq!(decide(&owners, false, &[]), Decision::Delete(Propagation::Background));
    }

    #[test]
    fn a_dependent_is_deleted_the_way_its_own_finalizers_ask() {
        let owners = [("a".to_string(), OwnerState::Dangling)];
        assert_eq!(decide(&owners, true, &[ORPHAN.into()]), Decision::Delete(Propagation::Orphan));
        assert_eq!(decide(&owners, true, &[FOREGROUND.into()]), Decision::Delete(Propagation::Foreground));
    }

    #[test]
    fn an_owner_starting_foreground_deletion_queues_itself_and_its_dependents() {
        let mut graph = Graph::new();
        graph.observe(object("parent", vec![]));
        graph.observe(object("a", vec![reference("parent", true)]));
        let work = graph.observe(deleting("parent", vec![], FOREGROUND));
        assert_eq!(sorted(work.attempt_to_delete), vec!["uid-a".to_string(), "uid-parent".to_string()]);
        assert!(graph.node("uid-parent").unwrap().deleting_dependents);
        let again = graph.observe(deleting("parent", vec![], FOREGROUND));
        assert_eq!(again, Work::default(), "only the transition queues work");
    }

    #[test]
    fn only_dependents_with_block_owner_deletion_block_a_foreground_deletion() {
        let mut graph = Graph::new();
        graph.observe(object("parent", vec![]));
        graph.observe(object("blocking", vec![reference("parent", true)]));
        graph.observe(object("free", vec![reference("parent", false)]));
        let blocking: Vec<&str> =
            graph.blocking_dependents("uid-parent").iter().map(|n| n.identity.name.as_str()).collect();
        assert_eq!(blocking, vec!["blocking"]);
    }

    #[test]
    fn the_last_blocking_dependent_leaving_requeues_the_waiting_owner() {
        let mut graph = Graph::new();
        graph.observe(deleting("parent", vec![], FOREGROUND));
        graph.observe(object("blocking", vec![reference("parent", true)]));
        let work = graph.observe_deleted("uid-blocking");
        assert_eq!(work.attempt_to_delete, vec!["uid-parent".to_string()]);
        assert!(graph.blocking_dependents("uid-parent").is_empty());
    }

    #[test]
    fn a_dependent_unblocking_or_dropping_its_reference_requeues_the_waiting_owner() {
        let mut graph = Graph::new();
        graph.observe(deleting("parent", vec![], FOREGROUND));
        graph.observe(object("a", vec![reference("parent", true)]));
        graph.observe(object("b", vec![reference("parent", true)]));
        let unblocked = graph.observe(object("a", vec![reference("parent", false)]));
        assert_eq!(unblocked.attempt_to_delete, vec!["uid-parent".to_string()]);
        let dropped = graph.observe(object("b", vec![]));
        assert_eq!(dropped.attempt_to_delete, vec!["uid-parent".to_string()]);
        assert!(graph.node("uid-parent").unwrap().dependents.contains("uid-a"));
        assert!(!graph.node("uid-parent").unwrap().dependents.contains("uid-b"));
    }

    #[test]
    fn an_owner_starting_orphan_deletion_is_queued_for_orphaning() {
        let mut graph = Graph::new();
        graph.observe(object("parent", vec![]));
        graph.observe(object("a", vec![reference("parent", true)]));
        let work = graph.observe(deleting("parent", vec![], ORPHAN));
        assert_eq!(work.attempt_to_orphan, vec!["uid-parent".to_string()]);
        assert!(work.attempt_to_delete.is_empty(), "orphaning deletes nothing");
    }

    #[test]
    fn a_reference_to_an_owner_observed_in_another_namespace_is_reported_and_its_dependent_verified() {
        let mut graph = Graph::new();
        graph.observe(ObjectInfo {
            identity: Identity { namespace: "elsewhere".into(), ..identity("parent") },
            ..object("parent", vec![])
        });
        let work = graph.observe(object("child", vec![reference("parent", false)]));
        assert_eq!(work.attempt_to_delete, vec!["uid-child".to_string()]);
        assert_eq!(work.invalid_namespace.len(), 1);
        assert_eq!(work.invalid_namespace[0].0.name, "child");
    }

    #[test]
    fn a_namespaced_owner_seen_after_a_cluster_scoped_dependent_named_it_is_reported() {
        let mut graph = Graph::new();
        let mut child = object("child", vec![reference("parent", false)]);
        child.identity.namespace = String::new();
        graph.observe(child);
        let work = graph.observe(object("parent", vec![]));
        assert_eq!(work.invalid_namespace.len(), 1);
        assert_eq!(work.invalid_namespace[0].0.name, "child");
        assert!(work.attempt_to_delete.contains(&"uid-child".to_string()));
    }

    #[test]
    fn a_reference_that_matches_its_observed_owner_queues_nothing() {
        let mut graph = Graph::new();
        graph.observe(object("parent", vec![]));
        assert_eq!(graph.observe(object("child", vec![reference("parent", false)])), Work::default());
    }

    #[test]
    fn a_virtual_owner_nobody_names_any_more_is_forgotten() {
        let mut graph = Graph::new();
        graph.observe(object("child", vec![reference("ghost", false)]));
        graph.observe(object("child", vec![]));
        assert!(graph.node("uid-ghost").is_none());
        assert_eq!(graph.len(), 1);
    }
}
