//! CustomResourceDefinitions through the real kubectl: a definition applied, waited for and then used like any
//! built-in kind (`apply`, `get` with its printer columns, `explain`, `scale`, `delete`), and deleted with its
//! objects.

use gantry_e2e::{Output, TestCluster};

const DEFINITION: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: A Widget is a thing made of parts.
        properties:
          spec:
            type: object
            description: What the widget should be.
            properties:
              size:
                type: integer
                minimum: 1
                description: How many parts the widget has.
              color:
                type: string
                enum: [blue, red]
                default: blue
                description: The widget's colour.
          status:
            type: object
            properties:
              ready:
                type: integer
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.size
        statusReplicasPath: .status.ready
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    - name: Color
      type: string
      jsonPath: .spec.color
"#;

fn widget(name: &str, size: i64, color: &str) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n  size: {size}\n  color: {color}\n"
    )
}

fn assert_says(output: &Output, expected: &str) {
    let all = format!("{}{}", output.stdout, output.stderr);
    assert!(all.contains(expected), "`{}` should have said {expected:?}; it said:\n{all}", output.command);
}

fn applied_and_established(cluster: &TestCluster) {
    let created = cluster.kubectl_stdin(&["apply", "-f", "-"], DEFINITION).ok();
    assert_says(&created, "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created");
    cluster.kubectl(&["wait", "--for", "condition=Established", "crd/widgets.example.com", "--timeout=10s"]).ok();
}

#[test]
fn kubectl_works_on_a_custom_resource_as_on_a_built_in_kind() {
    let cluster = TestCluster::start();
    applied_and_established(&cluster);

    let made = cluster.kubectl_stdin(&["apply", "-f", "-"], &widget("small", 2, "blue")).ok();
    assert_says(&made, "widget.example.com/small created");
    let again = cluster.kubectl_stdin(&["apply", "-f", "-"], &widget("small", 2, "blue")).ok();
    assert_says(&again, "widget.example.com/small unchanged");
    let changed = cluster.kubectl_stdin(&["apply", "-f", "-"], &widget("small", 4, "red")).ok();
    assert_says(&changed, "widget.example.com/small configured");

    let table = cluster.kubectl(&["get", "wd"]).ok();
    let lines: Vec<Vec<&str>> = table.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], vec!["NAME", "SIZE", "COLOR"], "{}", table.stdout);
    assert_eq!(lines[1], vec!["small", "4", "red"], "{}", table.stdout);

    let object = cluster.kubectl(&["get", "widget", "small", "-o", "json"]).ok().json();
    assert_eq!(object["spec"]["size"], 4);
    assert_eq!(object["metadata"]["generation"], 2);

    let scaled = cluster.kubectl(&["scale", "widget/small", "--replicas=6"]).ok();
    assert_says(&scaled, "widget.example.com/small scaled");
    let object = cluster.kubectl(&["get", "widget", "small", "-o", "json"]).ok().json();
    assert_eq!(object["spec"]["size"], 6);

    let explained = cluster.kubectl(&["explain", "widgets.spec"]).ok();
    assert_says(&explained, "What the widget should be.");
    assert_says(&explained, "How many parts the widget has.");

    let defaulted = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: plain\nspec:\n  size: 1\n";
    cluster.kubectl_stdin(&["apply", "-f", "-"], defaulted).ok();
    let plain = cluster.kubectl(&["get", "widget", "plain", "-o", "jsonpath={.spec.color}"]).ok();
    assert_eq!(plain.stdout, "blue", "the schema's default is applied");
    let invalid = cluster.kubectl_stdin(&["apply", "-f", "-"], &widget("bad", 0, "green")).fails();
    assert_says(&invalid, "The Widget \"bad\" is invalid");
    assert_says(&invalid, "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1");
    assert_says(&invalid, "spec.color: Unsupported value: \"green\": supported values: \"blue\", \"red\"");
    let unknown =
        cluster.kubectl_stdin(&["apply", "-f", "-"], &format!("{}  shape: round\n", widget("odd", 1, "red"))).fails();
    assert_says(&unknown, "unknown field \"spec.shape\"");
    cluster.kubectl(&["delete", "widget", "plain"]).ok();

    let deleted = cluster.kubectl(&["delete", "widget", "small"]).ok();
    assert_says(&deleted, "widget.example.com \"small\" deleted");
    let listed = cluster.kubectl(&["get", "widgets"]).ok();
    assert_says(&listed, "No resources found in default namespace.");
}

#[test]
fn deleting_the_definition_deletes_its_objects_and_stops_serving_it() {
    let cluster = TestCluster::start();
    applied_and_established(&cluster);
    cluster.kubectl_stdin(&["apply", "-f", "-"], &widget("a", 1, "blue")).ok();
    cluster.kubectl_stdin(&["apply", "-n", "kube-system", "-f", "-"], &widget("b", 1, "blue")).ok();
    let all = cluster.kubectl(&["get", "widgets", "-A", "-o", "name"]).ok();
    assert_eq!(all.stdout.lines().count(), 2, "{}", all.stdout);

    let deleted = cluster.kubectl(&["delete", "crd", "widgets.example.com"]).ok();
    assert_says(&deleted, "customresourcedefinition.apiextensions.k8s.io \"widgets.example.com\" deleted");
    // kubectl still knows the resource from its discovery cache; the server no longer serves it.
    let gone = cluster.kubectl(&["get", "widgets", "-A"]).fails();
    assert_says(&gone, "the server could not find the requested resource");
    let resources = cluster.kubectl(&["api-resources", "--api-group=example.com", "-o", "name"]).ok();
    assert!(resources.stdout.trim().is_empty(), "{}", resources.stdout);
    let crds = cluster.kubectl(&["get", "crd", "-o", "name"]).ok();
    assert!(crds.stdout.trim().is_empty(), "{}", crds.stdout);
}

#[test]
fn deleting_a_namespace_deletes_the_custom_resources_in_it() {
    let cluster = TestCluster::builder().controllers().start();
    applied_and_established(&cluster);
    cluster.kubectl(&["create", "namespace", "workshop"]).ok();
    cluster.kubectl_stdin(&["apply", "-n", "workshop", "-f", "-"], &widget("inside", 1, "blue")).ok();
    cluster.kubectl_stdin(&["apply", "-f", "-"], &widget("outside", 1, "blue")).ok();
    // `kubectl delete namespace` waits until the namespace is gone, which needs its widget gone first.
    cluster.kubectl(&["delete", "namespace", "workshop", "--timeout=20s"]).ok();
    let left = cluster.kubectl(&["get", "widgets", "-A", "-o", "name"]).ok();
    assert_eq!(left.stdout.trim(), "widget.example.com/outside", "{}", left.stdout);
}
