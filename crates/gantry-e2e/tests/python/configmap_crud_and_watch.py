"""CRUD of a ConfigMap and a watch, with the Python `kubernetes` client against a Gantry API server.

Usage: configmap_crud_and_watch.py KUBECONFIG PATIENCE_SECONDS
Exits 0 and prints "ok" when every check passed; otherwise raises with what differed.
"""

import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

kubeconfig, patience = sys.argv[1], int(sys.argv[2])
config.load_kube_config(config_file=kubeconfig)
core = client.CoreV1Api()
ns = "default"
name = "py-crud"

# The list's resourceVersion anchors the watch, so it sees every later event whenever the thread gets going.
listed = core.list_namespaced_config_map(ns)
assert listed.metadata.resource_version, "the list has no resourceVersion"
assert all(cm.metadata.name != name for cm in listed.items), "the ConfigMap exists before the test made it"

events = []
watching = threading.Event()


def watch_events():
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map,
        ns,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=patience,
        _request_timeout=patience + 5,
    ):
        obj = event["object"]
        if obj.metadata.name != name:
            continue
        events.append((event["type"], dict(obj.data or {})))
        if event["type"] == "DELETED":
            w.stop()


watcher = threading.Thread(target=watch_events, daemon=True)
watcher.start()

created = core.create_namespaced_config_map(
    ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels={"app": "py"}), data={"k": "v1"})
)
assert created.metadata.uid, "created object has no uid"
assert created.metadata.resource_version, "created object has no resourceVersion"

got = core.read_namespaced_config_map(name, ns)
assert got.data == {"k": "v1"}, got.data
assert got.metadata.labels == {"app": "py"}, got.metadata.labels

try:
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name)))
    raise AssertionError("a second create succeeded")
except ApiException as e:
    assert e.status == 409, e.status

got.data["k"] = "v2"
replaced = core.replace_namespaced_config_map(name, ns, got)
assert replaced.data == {"k": "v2"}, replaced.data
assert replaced.metadata.resource_version != created.metadata.resource_version

patched = core.patch_namespaced_config_map(name, ns, {"data": {"extra": "x"}})
assert patched.data == {"k": "v2", "extra": "x"}, patched.data

selected = core.list_namespaced_config_map(ns, label_selector="app=py")
assert [cm.metadata.name for cm in selected.items] == [name], selected.items

core.delete_namespaced_config_map(name, ns)
try:
    core.read_namespaced_config_map(name, ns)
    raise AssertionError("the ConfigMap is still there after delete")
except ApiException as e:
    assert e.status == 404, e.status

watcher.join(timeout=patience)
assert not watcher.is_alive(), f"the watch did not see the deletion; it saw {events}"
types = [t for t, _ in events]
assert types == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"], events
assert events[0][1] == {"k": "v1"}, events
assert events[1][1] == {"k": "v2"}, events
print("ok")
