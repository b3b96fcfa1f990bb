use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::*;
use crate::validation::FieldErrorKind;

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(FieldError::message).collect()
}

/// The CronTab of the Kubernetes documentation, with a status and scale subresource and printer columns.
fn crontab_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                    "image": {"type": "string"},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                },
                "required": ["cronSpec"],
            },
            "status": {
                "type": "object",
                "properties": {"replicas": {"type": "integer"}, "labelSelector": {"type": "string"}},
            },
        },
    })
}

fn crontab_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "listKind": "CronTabList", "shortNames": ["ct"]},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": crontab_schema()},
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.labelSelector"},
                },
                "additionalPrinterColumns": [
                    {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }],
            "conversion": {"strategy": "None"},
        },
    })
}

fn crd_with_schema(schema: Value) -> Value {
    let mut crd = crontab_crd();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = schema;
    crd
}

fn crontab(spec: Value) -> Value {
    json!({
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "my-new-cron-object", "namespace": "default"},
        "spec": spec,
    })
}

#[test]
fn the_documented_crontab_crd_is_valid() {
    let mut crd = crontab_crd();
    default_crd(&mut crd);
    assert_eq!(messages(&validate_crd(&crd)), Vec::<String>::new());
}

#[test]
fn defaulting_a_crd_fills_singular_list_kind_and_conversion() {
    let mut crd = json!({"spec": {"names": {"plural": "crontabs", "kind": "CronTab"}}});
    default_crd(&mut crd);
    assert_eq!(crd["spec"]["names"]["singular"], "crontab");
    assert_eq!(crd["spec"]["names"]["listKind"], "CronTabList");
    assert_eq!(crd["spec"]["conversion"]["strategy"], "None");
}

#[test]
fn a_crd_name_must_be_plural_dot_group() {
    let mut crd = crontab_crd();
    crd["metadata"]["name"] = json!("crontab.stable.example.com");
    assert_eq!(
        messages(&validate_crd(&crd)),
        vec![
            "metadata.name: Invalid value: \"crontab.stable.example.com\": must be spec.names.plural+\".\"+spec.group"
        ]
    );
}

#[test]
fn a_property_without_type_is_not_structural_at_the_lifted_validation_path() {
    let crd =
        crd_with_schema(json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}));
    let errs = validate_crd(&crd);
    assert_eq!(
        messages(&errs),
        vec![
            "spec.validation.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"
        ]
    );
    assert_eq!(errs[0].kind.reason(), "FieldValueRequired");
}

#[test]
fn versions_with_different_schemas_are_reported_per_version() {
    let mut crd = crontab_crd();
    let mut v2 = crd["spec"]["versions"][0].clone();
    v2["name"] = json!("v2");
    v2["storage"] = json!(false);
    v2["schema"]["openAPIV3Schema"] =
        json!({"type": "object", "properties": {"spec": {"type": "object"}, "extra": {}}});
    crd["spec"]["versions"].as_array_mut().unwrap().push(v2);
    assert_eq!(
        messages(&validate_crd(&crd)),
        vec![
            "spec.versions[1].schema.openAPIV3Schema.properties[extra].type: Required value: must not be empty for specified object fields"
        ]
    );
}

#[test]
fn a_missing_schema_is_required() {
    let mut crd = crontab_crd();
    crd["spec"]["versions"][0].as_object_mut().unwrap().remove("schema");
    crd["spec"]["versions"][0].as_object_mut().unwrap().remove("subresources");
    assert_eq!(
        messages(&validate_crd(&crd)),
        vec!["spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"]
    );
}

#[test]
fn spec_group_scope_and_storage_rules_use_kube_messages() {
    let mut crd = crontab_crd();
    crd["metadata"]["name"] = json!("crontabs.example");
    crd["spec"]["group"] = json!("example");
    crd["spec"]["scope"] = json!("Global");
    crd["spec"]["versions"][0]["storage"] = json!(false);
    let msgs = messages(&validate_crd(&crd));
    assert_eq!(msgs[0], "spec.group: Invalid value: \"example\": should be a domain with at least one dot");
    assert_eq!(msgs[1], "spec.scope: Unsupported value: \"Global\": supported values: \"Cluster\", \"Namespaced\"");
    assert!(msgs[2].starts_with("spec.versions: Invalid value: [{"), "{}", msgs[2]);
    assert!(msgs[2].ends_with(": must have exactly one version marked as storage version"), "{}", msgs[2]);
    assert_eq!(msgs.len(), 3);
}

#[test]
fn duplicate_version_names_are_invalid() {
    let mut crd = crontab_crd();
    let v = crd["spec"]["versions"][0].clone();
    let mut v2 = v.clone();
    v2["storage"] = json!(false);
    v2["schema"]["openAPIV3Schema"]["description"] = json!("different");
    crd["spec"]["versions"] = json!([v, v2]);
    let msgs = messages(&validate_crd(&crd));
    assert!(msgs.iter().any(|m| m.ends_with("must contain unique version names")), "{msgs:?}");
}

#[test]
fn names_follow_dns_label_rules_with_mixed_case_kinds() {
    let mut crd = crontab_crd();
    crd["spec"]["names"]["kind"] = json!("Cron_Tab");
    crd["spec"]["names"]["shortNames"] = json!(["CT"]);
    let msgs = messages(&validate_crd(&crd));
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs[0].starts_with("spec.names.kind: Invalid value: \"Cron_Tab\": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-'"),
        "{}",
        msgs[0]
    );
    assert!(msgs[1].starts_with("spec.names.shortNames[0]: Invalid value: \"CT\": a DNS-1035 label"), "{}", msgs[1]);
}

#[test]
fn kind_and_list_kind_may_not_be_the_same() {
    let mut crd = crontab_crd();
    crd["spec"]["names"]["listKind"] = json!("CronTab");
    assert_eq!(
        messages(&validate_crd(&crd)),
        vec!["spec.names.listKind: Invalid value: \"CronTab\": kind and listKind may not be the same"]
    );
}

#[test]
fn additional_properties_beside_properties_and_refs_are_forbidden() {
    let crd = crd_with_schema(json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"$ref": "#/definitions/x", "type": "string"}},
        "additionalProperties": {"type": "string"},
    }}}));
    let msgs = messages(&validate_crd(&crd));
    assert!(msgs.contains(&"spec.validation.openAPIV3Schema.properties[spec].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive".to_string()), "{msgs:?}");
    assert!(
        msgs.contains(
            &"spec.validation.openAPIV3Schema.properties[spec].properties[b].$ref: Forbidden: $ref is not supported"
                .to_string()
        ),
        "{msgs:?}"
    );
}

#[test]
fn additional_properties_at_the_root_are_forbidden() {
    let crd = crd_with_schema(json!({"type": "object", "additionalProperties": {"type": "string"}}));
    let msgs = messages(&validate_crd(&crd));
    assert!(
        msgs.contains(
            &"spec.validation.openAPIV3Schema.additionalProperties: Forbidden: must not be used at the root"
                .to_string()
        ),
        "{msgs:?}"
    );
}

#[test]
fn root_metadata_may_only_restrict_name_and_generate_name() {
    let allowed = crd_with_schema(json!({"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}},
    }}));
    assert_eq!(messages(&validate_crd(&allowed)), Vec::<String>::new());
    let forbidden = crd_with_schema(json!({"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
    }}));
    assert_eq!(
        messages(&validate_crd(&forbidden)),
        vec![
            "spec.validation.openAPIV3Schema.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
        ]
    );
}

#[test]
fn value_validations_may_not_specify_structure() {
    let crd = crd_with_schema(json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "anyOf": [{"properties": {"b": {"type": "string"}}}],
    }}}));
    assert_eq!(
        messages(&validate_crd(&crd)),
        vec![
            "spec.validation.openAPIV3Schema.properties[spec].anyOf[0].properties[b].type: Forbidden: must be empty to be structural"
        ]
    );
}

#[test]
fn root_value_validations_may_only_name_specified_fields() {
    let mut crd = crd_with_schema(json!({
        "type": "object",
        "properties": {"spec": {"type": "object"}},
        "anyOf": [{"required": ["spec"]}, {"properties": {"other": {"minProperties": 1}}}],
    }));
    crd["spec"]["versions"][0].as_object_mut().unwrap().remove("subresources");
    assert_eq!(
        messages(&validate_crd(&crd)),
        vec![
            "spec.validation.openAPIV3Schema.properties[other]: Required value: because it is defined in spec.validation.openAPIV3Schema.anyOf[1].properties[other]"
        ]
    );
}

#[test]
fn int_or_string_needs_no_type() {
    let crd = crd_with_schema(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "raw": {"x-kubernetes-preserve-unknown-fields": true},
    }}}}));
    assert_eq!(messages(&validate_crd(&crd)), Vec::<String>::new());
}

#[test]
fn defaults_must_validate_against_their_schema() {
    let crd = crd_with_schema(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "replicas": {"type": "integer", "default": "three"},
    }}}}));
    let errs = validate_crd(&crd);
    assert_eq!(
        messages(&errs),
        vec![
            "spec.validation.openAPIV3Schema.properties[spec].properties[replicas].default: Invalid value: \"string\":  in body must be of type integer: \"string\""
        ]
    );
    assert_eq!(errs[0].kind, FieldErrorKind::FieldValueTypeInvalid);
}

#[test]
fn defaults_must_be_pruned() {
    let crd = crd_with_schema(json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "default": {"replicas": 1, "unknown": true},
        "properties": {"replicas": {"type": "integer"}},
    }}}));
    assert_eq!(
        messages(&validate_crd(&crd)),
        vec![
            "spec.validation.openAPIV3Schema.properties[spec].default: Invalid value: {\"replicas\":1,\"unknown\":true}: must not have unknown fields"
        ]
    );
}

#[test]
fn defaults_in_top_level_metadata_are_forbidden() {
    let crd = crd_with_schema(json!({"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "default": "x"}}},
    }}));
    assert_eq!(
        messages(&validate_crd(&crd)),
        vec![
            "spec.validation.openAPIV3Schema.properties[metadata].properties[name].default: Forbidden: must not be set in top-level metadata"
        ]
    );
}

#[test]
fn unique_items_and_null_types_are_forbidden() {
    let crd = crd_with_schema(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "tags": {"type": "array", "uniqueItems": true, "items": {"type": "string"}},
        "nothing": {"type": "null"},
    }}}}));
    let msgs = messages(&validate_crd(&crd));
    assert!(msgs.contains(&"spec.validation.openAPIV3Schema.properties[spec].properties[tags].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic".to_string()), "{msgs:?}");
    assert!(msgs.contains(&"spec.validation.openAPIV3Schema.properties[spec].properties[nothing].type: Forbidden: type cannot be set to null, use nullable as an alternative".to_string()), "{msgs:?}");
}

#[test]
fn list_map_keys_must_be_required_or_defaulted() {
    let crd = crd_with_schema(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "ports": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}}},
        },
    }}}}));
    assert_eq!(
        messages(&validate_crd(&crd)),
        vec![
            "spec.validation.openAPIV3Schema.properties[spec].properties[ports].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"
        ]
    );
}

#[test]
fn status_subresource_restricts_the_root_schema() {
    let crd = crd_with_schema(
        json!({"type": "object", "properties": {"spec": {"type": "object"}}, "anyOf": [{"required": ["spec"]}]}),
    );
    let msgs = messages(&validate_crd(&crd));
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].starts_with("spec.validation.openAPIV3Schema: Invalid value: {"), "{}", msgs[0]);
    assert!(
        msgs[0].ends_with("fields are allowed at the root of the schema if the status subresource is enabled"),
        "{}",
        msgs[0]
    );
}

#[test]
fn scale_paths_must_point_under_spec_and_status() {
    let mut crd = crontab_crd();
    crd["spec"]["versions"][0]["subresources"]["scale"] =
        json!({"specReplicasPath": ".status.replicas", "statusReplicasPath": "status.replicas"});
    assert_eq!(
        messages(&validate_crd(&crd)),
        vec![
            "spec.subresources.scale.specReplicasPath: Invalid value: \".status.replicas\": should be a json path under .spec",
            "spec.subresources.scale.statusReplicasPath: Invalid value: \"status.replicas\": must be a simple json path starting with .",
        ]
    );
}

#[test]
fn printer_columns_need_a_known_type_and_a_json_path() {
    let mut crd = crontab_crd();
    crd["spec"]["versions"][0]["additionalPrinterColumns"] = json!([{"name": "When", "type": "time", "jsonPath": ""}, {"name": "N", "type": "integer", "format": "uint", "jsonPath": ".spec.n"}]);
    assert_eq!(
        messages(&validate_crd(&crd)),
        vec![
            "spec.additionalPrinterColumns[0].type: Invalid value: \"time\": must be one of boolean,date,integer,number,string",
            "spec.additionalPrinterColumns[0].JSONPath: Required value",
            "spec.additionalPrinterColumns[1].format: Invalid value: \"uint\": must be one of byte,date,date-time,double,float,int32,int64,password",
        ]
    );
}

#[test]
fn webhook_conversion_is_refused_with_a_clear_message() {
    let mut crd = crontab_crd();
    crd["spec"]["conversion"] = json!({"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"]}});
    let msgs = messages(&validate_crd(&crd));
    assert_eq!(msgs.len(), 1);
    assert!(
        msgs[0].starts_with("spec.conversion.strategy: Forbidden: Webhook conversion is not supported"),
        "{}",
        msgs[0]
    );
}

#[test]
fn protected_groups_need_the_approval_annotation() {
    let mut crd = crontab_crd();
    crd["spec"]["group"] = json!("things.k8s.io");
    crd["metadata"]["name"] = json!("crontabs.things.k8s.io");
    let msgs = messages(&validate_crd(&crd));
    assert_eq!(msgs.len(), 1);
    assert!(
        msgs[0].starts_with("metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups"),
        "{}",
        msgs[0]
    );
    crd["metadata"]["annotations"] = json!({"api-approved.kubernetes.io": "unapproved, experimental"});
    assert!(validate_crd(&crd).is_empty());
}

#[test]
fn updating_a_crd_keeps_group_and_plural_and_once_established_scope_and_kind() {
    let mut old = crontab_crd();
    old["metadata"]["resourceVersion"] = json!("5");
    old["status"] = json!({"conditions": [{"type": "Established", "status": "True"}], "storedVersions": ["v1"]});
    let mut new = old.clone();
    new["spec"]["scope"] = json!("Cluster");
    new["spec"]["names"]["kind"] = json!("CronJob");
    new["spec"]["names"]["listKind"] = json!("CronJobList");
    assert_eq!(
        messages(&validate_crd_update(&new, &old)),
        vec![
            "spec.scope: Invalid value: \"Cluster\": field is immutable",
            "spec.names.kind: Invalid value: \"CronJob\": field is immutable",
        ]
    );
    let mut regrouped = old.clone();
    regrouped["spec"]["group"] = json!("other.example.com");
    let msgs = messages(&validate_crd_update(&regrouped, &old));
    assert!(
        msgs.contains(&"spec.group: Invalid value: \"other.example.com\": field is immutable".to_string()),
        "{msgs:?}"
    );
}

#[test]
fn stored_versions_must_stay_in_spec_versions() {
    let mut crd = crontab_crd();
    crd["status"] = json!({"storedVersions": ["v1", "v1beta1"]});
    assert_eq!(
        messages(&validate_crd(&crd)),
        vec![
            "status.storedVersions[1]: Invalid value: \"v1beta1\": missing from spec.versions; v1beta1 was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in v1beta1 and removes v1beta1 from status.storedVersions"
        ]
    );
}

#[test]
fn custom_resources_get_kube_type_messages() {
    let crd = crontab_crd();
    let errs = validate_custom_resource(&crd, "v1", &crontab(json!({"cronSpec": "* * * * */5", "replicas": "three"})));
    // kube's scale check reads the same field and reports it too.
    assert_eq!(
        messages(&errs),
        vec![
            "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
            ".spec.replicas: Invalid value: 0: .spec.replicas accessor error: three is of the type string, expected int64",
        ]
    );
    assert_eq!(errs[0].kind.reason(), "FieldValueTypeInvalid");
}

#[test]
fn the_documented_pattern_and_maximum_failures_read_as_kube_prints_them() {
    let crd = crontab_crd();
    let errs = validate_custom_resource(&crd, "v1", &crontab(json!({"cronSpec": "* * * *", "replicas": 15})));
    assert_eq!(
        messages(&errs),
        vec![
            "spec.cronSpec: Invalid value: \"* * * *\": spec.cronSpec in body should match '^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'",
            "spec.replicas: Invalid value: 15: spec.replicas in body should be less than or equal to 10",
        ]
    );
}

#[test]
fn required_fields_enums_lengths_and_item_counts_and_property_counts() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "maxLength": 5, "minLength": 2},
        "mode": {"type": "string", "enum": ["a", "b"]},
        "tags": {"type": "array", "maxItems": 2, "minItems": 1, "items": {"type": "string"}},
        "n": {"type": "number", "multipleOf": 0.5, "exclusiveMinimum": true, "minimum": 0},
    }}}});
    let obj = json!({"spec": {"mode": "x", "tags": ["a", "b", "c"], "n": 0.3}});
    assert_eq!(
        messages(&validate_against_schema(&schema, &obj)),
        vec![
            "spec.mode: Unsupported value: \"x\": supported values: \"a\", \"b\"",
            "spec.n: Invalid value: 0.3: spec.n in body should be a multiple of 0.5",
            "spec.tags: Too many: 3: must have at most 2 items",
            "spec.name: Required value",
        ]
    );
    let long = json!({"spec": {"name": "abcdefg", "tags": [], "n": 0}});
    assert_eq!(
        messages(&validate_against_schema(&schema, &long)),
        vec![
            "spec.n: Invalid value: 0: spec.n in body should be greater than 0",
            "spec.name: Too long: may not be more than 5 bytes",
            "spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items",
        ]
    );
    let counted = json!({"type": "object", "properties": {
        "labels": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}},
        "selector": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}},
    }});
    assert_eq!(
        messages(&validate_against_schema(&counted, &json!({"labels": {"a": "1", "b": 2}, "selector": {}}))),
        vec![
            "labels: Too many: 2: must have at most 1 item",
            "selector: Invalid value: 0: selector in body should have at least 1 properties",
        ]
    );
}

#[test]
fn formats_nullable_and_int_or_string() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "when": {"type": "string", "format": "date-time"},
        "id": {"type": "string", "format": "uuid"},
        "note": {"type": "string", "nullable": true},
        "name": {"type": "string"},
        "port": {"x-kubernetes-int-or-string": true},
    }}}});
    let ok = json!({"spec": {"when": "2024-05-01T10:00:00Z", "id": "0b7f1a7e-3c52-4a7b-9f0e-2f4d8c1a5b6e", "note": null, "port": "http"}});
    assert_eq!(messages(&validate_against_schema(&schema, &ok)), Vec::<String>::new());
    let bad = json!({"spec": {"when": "yesterday", "name": null, "port": true}});
    assert_eq!(
        messages(&validate_against_schema(&schema, &bad)),
        vec![
            "spec.name: Invalid value: \"null\": spec.name in body must be of type string: \"null\"",
            "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
            "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"",
        ]
    );
}

#[test]
fn junctors_report_like_kube_with_a_nil_path() {
    let schema = json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
    }}});
    let none = json!({"spec": {}});
    assert_eq!(
        messages(&validate_against_schema(&schema, &none)),
        vec![
            "<nil>: Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found none valid",
            "spec.a: Required value",
        ]
    );
    let two = json!({"spec": {"a": "x", "b": "y"}});
    assert_eq!(
        messages(&validate_against_schema(&schema, &two)),
        vec![
            "<nil>: Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found 2 valid alternatives"
        ]
    );
    let one = json!({"spec": {"a": "x"}});
    assert!(validate_against_schema(&schema, &one).is_empty());
}

#[test]
fn list_type_sets_and_maps_reject_duplicates() {
    let mut crd = crd_with_schema(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
    }}}}));
    crd["spec"]["versions"][0].as_object_mut().unwrap().remove("subresources");
    let obj = crontab(
        json!({"tags": ["a", "b", "a"], "ports": [{"name": "http", "port": 80}, {"name": "http", "port": 8080}]}),
    );
    let errs = validate_custom_resource(&crd, "v1", &obj);
    assert_eq!(
        messages(&errs),
        vec!["spec.ports[1]: Duplicate value: {\"name\":\"http\"}", "spec.tags[2]: Duplicate value: \"a\""]
    );
}

#[test]
fn embedded_resources_need_api_version_and_kind() {
    let mut crd = crd_with_schema(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
    }}}}));
    crd["spec"]["versions"][0].as_object_mut().unwrap().remove("subresources");
    let obj = crontab(json!({"template": {"kind": "Pod_", "metadata": {"name": "bad/name", "labels": {"ok": "yes"}}}}));
    let msgs = messages(&validate_custom_resource(&crd, "v1", &obj));
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert_eq!(msgs[0], "spec.template.apiVersion: Required value");
    assert!(msgs[1].starts_with("spec.template.kind: Invalid value: \"Pod_\": may have mixed case"), "{}", msgs[1]);
    assert_eq!(msgs[2], "spec.template.metadata.name: Invalid value: \"bad/name\": may not contain '/'");
}

#[test]
fn custom_resources_check_type_meta_metadata_and_scale() {
    let crd = crontab_crd();
    let mut wrong_kind = crontab(json!({"cronSpec": "* * * * *"}));
    wrong_kind["kind"] = json!("CronJob");
    assert_eq!(
        messages(&validate_custom_resource(&crd, "v1", &wrong_kind)),
        vec!["kind: Invalid value: \"CronJob\": must be CronTab"]
    );
    let mut no_namespace = crontab(json!({"cronSpec": "* * * * *"}));
    no_namespace["metadata"].as_object_mut().unwrap().remove("namespace");
    assert_eq!(
        messages(&validate_custom_resource(&crd, "v1", &no_namespace)),
        vec!["metadata.namespace: Required value"]
    );
    let mut negative_status = crontab(json!({"cronSpec": "* * * * *"}));
    negative_status["status"] = json!({"replicas": -1});
    assert_eq!(
        messages(&validate_custom_resource(&crd, "v1", &negative_status)),
        vec![".status.replicas: Invalid value: -1: should be a non-negative integer"]
    );
}

#[test]
fn updates_of_custom_resources_keep_the_name() {
    let crd = crontab_crd();
    let mut old = crontab(json!({"cronSpec": "* * * * *"}));
    old["metadata"]["resourceVersion"] = json!("3");
    let mut new = old.clone();
    new["metadata"]["name"] = json!("renamed");
    assert_eq!(
        messages(&validate_custom_resource_update(&crd, "v1", &new, &old)),
        vec!["metadata.name: Invalid value: \"renamed\": field is immutable"]
    );
}

#[test]
fn defaulting_fills_missing_fields_recursively_and_non_nullable_nulls() {
    let schema = json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "default": {},
        "properties": {
            "replicas": {"type": "integer", "default": 1},
            "mode": {"type": "string", "default": "auto"},
            "note": {"type": "string", "nullable": true, "default": "n"},
            "ports": {"type": "array", "items": {"type": "object", "properties": {"protocol": {"type": "string", "default": "TCP"}}}},
            "labels": {"type": "object", "additionalProperties": {"type": "string", "default": "x"}},
            "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        },
    }}});
    let mut empty = json!({});
    default(&schema, &mut empty);
    assert_eq!(empty, json!({"spec": {"replicas": 1, "mode": "auto", "note": "n"}}));

    let mut obj = json!({"spec": {"mode": null, "note": null, "ports": [{}, {"protocol": "UDP"}], "labels": {"a": null}, "raw": {"anything": {}}}});
    default(&schema, &mut obj);
    assert_eq!(
        obj,
        json!({"spec": {"replicas": 1, "mode": "auto", "note": null, "ports": [{"protocol": "TCP"}, {"protocol": "UDP"}], "labels": {"a": "x"}, "raw": {"anything": {}}}})
    );
}

#[test]
fn non_nullable_nulls_without_defaults_are_dropped() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "a": {"type": "string"}, "b": {"type": "string", "nullable": true},
    }}}});
    let mut obj = json!({"spec": {"a": null, "b": null}});
    prune_non_nullable_nulls(&schema, &mut obj);
    assert_eq!(obj, json!({"spec": {"b": null}}));
    let defaulted = json!({"type": "object", "properties": {"a": {"type": "string", "default": "d"}}});
    let mut kept = json!({"a": null});
    prune_non_nullable_nulls(&defaulted, &mut kept);
    assert_eq!(kept, json!({"a": null}));
    assert!(prune_and_default(&defaulted, &mut kept).is_empty());
    assert_eq!(kept, json!({"a": "d"}));
}

#[test]
fn pruning_drops_and_reports_unknown_fields() {
    let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"typed": {"type": "object", "properties": {}}}},
            "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
        }},
    }});
    let mut obj = json!({
        "apiVersion": "stable.example.com/v1",
        "kind": "CronTab",
        "metadata": {"name": "x", "bogus": 1},
        "spec": {
            "foo": 1,
            "items": [{"name": "a", "extra": true}],
            "raw": {"kept": {"deep": 1}, "typed": {"gone": 1}},
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "nope": 2}, "spec": {}, "other": 3},
        },
        "status": {"x": 1},
    });
    let pruned = prune(&schema, &mut obj);
    assert_eq!(
        pruned,
        vec![
            "metadata.bogus",
            "spec.foo",
            "spec.items[0].extra",
            "spec.raw.typed.gone",
            "spec.template.metadata.nope",
            "spec.template.other",
            "status",
        ]
    );
    assert_eq!(
        obj,
        json!({
            "apiVersion": "stable.example.com/v1",
            "kind": "CronTab",
            "metadata": {"name": "x"},
            "spec": {
                "items": [{"name": "a"}],
                "raw": {"kept": {"deep": 1}, "typed": {}},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
            },
        })
    );
}

#[test]
fn items_of_a_preserving_list_keep_unknown_fields() {
    let schema = json!({"type": "object", "properties": {"list": {
        "type": "array",
        "x-kubernetes-preserve-unknown-fields": true,
        "items": {"type": "object", "properties": {"known": {"type": "object", "properties": {}}}},
    }}});
    let mut obj = json!({"list": [{"free": 1, "known": {"gone": 2}}]});
    assert_eq!(prune(&schema, &mut obj), vec!["list[0].known.gone"]);
    assert_eq!(obj, json!({"list": [{"free": 1, "known": {}}]}));
}

#[test]
fn prune_and_default_prunes_before_defaulting() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "replicas": {"type": "integer", "default": 2},
    }}}});
    let mut obj = json!({"spec": {"unknown": 1}});
    assert_eq!(prune_and_default(&schema, &mut obj), vec!["spec.unknown"]);
    assert_eq!(obj, json!({"spec": {"replicas": 2}}));
}

#[test]
fn json_path_covers_the_kubectl_subset() {
    let obj = json!({
        "metadata": {"name": "a", "annotations": {"x.y/z": "dotted"}},
        "spec": {"ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]},
    });
    let find = |p: &str| -> Vec<Value> { JsonPath::parse(p).unwrap().find(&obj).into_iter().cloned().collect() };
    assert_eq!(find(".metadata.name"), vec![json!("a")]);
    assert_eq!(find("{.spec.ports[1].port}"), vec![json!(443)]);
    assert_eq!(find(".spec.ports[-1].name"), vec![json!("https")]);
    assert_eq!(find(".spec.ports[*].name"), vec![json!("http"), json!("https")]);
    assert_eq!(find(".spec.ports[0:1].port"), vec![json!(80)]);
    assert_eq!(find(".metadata.annotations['x.y/z']"), vec![json!("dotted")]);
    assert_eq!(find(".status.conditions[?(@.type==\"Ready\")].status"), vec![json!("True")]);
    assert_eq!(find(".spec.ports[?(@.port > 100)].name"), vec![json!("https")]);
    assert_eq!(find("..port"), vec![json!(80), json!(443)]);
    assert_eq!(find(".spec.missing.deeper"), Vec::<Value>::new());
    assert!(JsonPath::parse(".spec[abc]").is_err());
    assert!(JsonPath::parse(".spec['open").is_err());
}

#[test]
fn crd_tables_show_name_then_the_declared_columns() {
    let crd = crontab_crd();
    let table = CrdTable::new(version(&crd, "v1").unwrap()).unwrap();
    let cols: Vec<(String, String)> = table.columns().into_iter().map(|c| (c.name, c.type_)).collect();
    assert_eq!(
        cols,
        vec![
            ("Name".to_string(), "string".to_string()),
            ("Spec".to_string(), "string".to_string()),
            ("Replicas".to_string(), "integer".to_string()),
            ("Age".to_string(), "date".to_string()),
        ]
    );
    assert_eq!(
        table.columns()[1].description,
        "Custom resource definition column (in JSONPath format): .spec.cronSpec"
    );
    let now: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
    let created = now.checked_sub(SignedDuration::from_secs(3 * 3600 + 5 * 60)).unwrap();
    let mut obj = crontab(json!({"cronSpec": "* * * * */5", "replicas": 3}));
    obj["metadata"]["creationTimestamp"] = json!(created.to_string());
    assert_eq!(
        table.row_cells(&obj, now),
        vec![json!("my-new-cron-object"), json!("* * * * */5"), json!(3), json!("3h5m")]
    );
    let bare = crontab(json!({}));
    assert_eq!(table.row_cells(&bare, now), vec![json!("my-new-cron-object"), Value::Null, Value::Null, Value::Null]);
}

#[test]
fn crd_tables_default_to_age_and_format_cells_by_type() {
    let table = CrdTable::new(&json!({"name": "v1"})).unwrap();
    let names: Vec<String> = table.columns().into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec!["Name", "Age"]);

    let typed = CrdTable::new(&json!({"name": "v1", "additionalPrinterColumns": [
        {"name": "Ports", "type": "string", "jsonPath": ".spec.ports", "priority": 1},
        {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio"},
        {"name": "Ready", "type": "boolean", "jsonPath": ".status.ready"},
        {"name": "Count", "type": "integer", "jsonPath": ".spec.ratio"},
        {"name": "When", "type": "date", "jsonPath": ".spec.when"},
    ]}))
    .unwrap();
    assert_eq!(typed.columns()[1].priority, 1);
    let now = Timestamp::UNIX_EPOCH;
    let obj = json!({"metadata": {"name": "n"}, "spec": {"ports": [80, 443], "ratio": 1.5, "when": "soon"}, "status": {"ready": "yes"}});
    assert_eq!(
        typed.row_cells(&obj, now),
        vec![json!("n"), json!("[80,443]"), json!(1.5), Value::Null, json!(1), json!("<invalid>")]
    );
}

#[test]
fn scale_reads_and_writes_the_declared_paths() {
    let crd = crontab_crd();
    let paths = ScalePaths::from_version(version(&crd, "v1").unwrap()).unwrap();
    let mut obj = crontab(json!({"cronSpec": "* * * * *", "replicas": 3}));
    obj["metadata"]["uid"] = json!("u1");
    obj["status"] = json!({"replicas": 2, "labelSelector": "app=cron"});
    assert_eq!(
        scale_of(&obj, &paths).unwrap(),
        json!({
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": "my-new-cron-object", "namespace": "default", "uid": "u1"},
            "spec": {"replicas": 3},
            "status": {"replicas": 2, "selector": "app=cron"},
        })
    );
    set_spec_replicas(&mut obj, &paths, 5).unwrap();
    assert_eq!(obj["spec"]["replicas"], 5);
    let mut fresh = json!({"metadata": {"name": "x"}});
    set_spec_replicas(&mut fresh, &paths, 1).unwrap();
    assert_eq!(fresh["spec"], json!({"replicas": 1}));
    let bad = crontab(json!({"replicas": "3"}));
    assert_eq!(
        scale_of(&bad, &paths).unwrap_err().to_string(),
        ".spec.replicas accessor error: 3 is of the type string, expected int64"
    );
    let mut scalar_spec = json!({"spec": 1});
    assert!(matches!(set_spec_replicas(&mut scalar_spec, &paths, 1), Err(ScaleError::NotAnObject { .. })));
}

#[test]
fn custom_resource_documents_carry_patch_operations_and_schemas() {
    let crd = crontab_crd();
    let doc = crate::openapi::custom_resource_document(std::slice::from_ref(&crd), "stable.example.com", "v1").unwrap();
    let patch = &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "stable.example.com", "version": "v1", "kind": "CronTab"})
    );
    let params: Vec<&str> = patch["parameters"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(params.contains(&"fieldValidation"), "{params:?}");
    assert!(
        doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/scale"]["patch"].is_object()
    );
    assert!(
        doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/status"]["put"].is_object()
    );

    let schemas = &doc["components"]["schemas"];
    let kind = &schemas["com.example.stable.v1.CronTab"];
    assert_eq!(
        kind["x-kubernetes-group-version-kind"],
        json!([{"group": "stable.example.com", "version": "v1", "kind": "CronTab"}])
    );
    assert_eq!(
        kind["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert_eq!(kind["properties"]["spec"]["properties"]["replicas"]["maximum"], json!(10));
    assert_eq!(kind["properties"]["kind"]["type"], "string");
    assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
    assert!(schemas["io.k8s.api.autoscaling.v1.Scale"].is_object());
    let list = &schemas["com.example.stable.v1.CronTabList"];
    assert_eq!(list["properties"]["items"]["items"]["$ref"], "#/components/schemas/com.example.stable.v1.CronTab");
    assert_eq!(list["x-kubernetes-group-version-kind"][0]["kind"], "CronTabList");

    assert!(crate::openapi::custom_resource_document(std::slice::from_ref(&crd), "stable.example.com", "v2").is_none());
}

#[test]
fn the_openapi_index_lists_custom_group_versions() {
    let crd = crontab_crd();
    let registry = crate::registry::Registry::built_in();
    let built = crate::openapi::OpenApiV3::build_with_custom_resources(&registry, std::slice::from_ref(&crd));
    assert!(built.document("apis/stable.example.com/v1").is_some());
    assert!(built.document("apis/stable.example.com").is_some());
    assert!(built.document("apis/apps/v1").is_some());
    let index: Value = serde_json::from_slice(built.index().bytes()).unwrap();
    assert!(index["paths"]["apis/stable.example.com/v1"]["serverRelativeURL"].as_str().unwrap().contains("?hash="));
}

#[test]
fn custom_resource_schema_unfolds_embedded_resources() {
    let crd = crd_with_schema(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
    }}}}));
    let schema = crate::openapi::custom_resource_schema(&crd, "v1").unwrap();
    let template = &schema["properties"]["spec"]["properties"]["template"]["properties"];
    assert_eq!(template["apiVersion"], json!({"type": "string"}));
    assert_eq!(template["metadata"], json!({"type": "object"}));
}

/// A CRD shaped like the ones controller-gen writes for widely used projects: two versions with different
/// descriptions, a status defaulted with a pending condition, list-map conditions, escaped patterns,
/// immutability rules and a filtered printer column.
fn generated_style_crd() -> Value {
    let schema = |description: &str| {
        json!({
            "description": description,
            "type": "object",
            "required": ["spec"],
            "properties": {
                "apiVersion": {"type": "string", "description": "APIVersion of the object."},
                "kind": {"type": "string", "description": "Kind of the object."},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "required": ["controllerName"],
                    "properties": {
                        "controllerName": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 253,
                            "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\\/[A-Za-z0-9\\/\\-._~%!$&'()*+,;=:]+$",
                            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "Value is immutable"}],
                        },
                        "parametersRef": {
                            "type": "object",
                            "required": ["group", "kind", "name"],
                            "properties": {
                                "group": {"type": "string", "maxLength": 253, "pattern": "^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                                "kind": {"type": "string", "minLength": 1, "maxLength": 63},
                                "name": {"type": "string", "minLength": 1},
                            },
                        },
                    },
                },
                "status": {
                    "type": "object",
                    "default": {"conditions": [{"lastTransitionTime": "1970-01-01T00:00:00Z", "message": "Waiting", "reason": "Pending", "status": "Unknown", "type": "Accepted"}]},
                    "properties": {
                        "conditions": {
                            "type": "array",
                            "maxItems": 8,
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["type"],
                            "items": {
                                "type": "object",
                                "required": ["lastTransitionTime", "message", "reason", "status", "type"],
                                "properties": {
                                    "lastTransitionTime": {"type": "string", "format": "date-time"},
                                    "message": {"type": "string", "maxLength": 32768},
                                    "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                                    "reason": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"},
                                    "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                                    "type": {"type": "string", "maxLength": 316},
                                },
                            },
                        },
                    },
                },
            },
        })
    };
    let version = |name: &str, storage: bool, description: &str| {
        json!({
            "name": name,
            "served": true,
            "storage": storage,
            "schema": {"openAPIV3Schema": schema(description)},
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Controller", "type": "string", "jsonPath": ".spec.controllerName"},
                {"name": "Accepted", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Accepted\")].status"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
        })
    };
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "portalclasses.net.example.io"},
        "spec": {
            "group": "net.example.io",
            "scope": "Cluster",
            "names": {"plural": "portalclasses", "singular": "portalclass", "kind": "PortalClass", "listKind": "PortalClassList", "categories": ["portals"], "shortNames": ["pc"]},
            "versions": [version("v1", true, "A class of portals."), version("v1beta1", false, "A class of portals (beta).")],
        },
    })
}

#[test]
fn a_generated_style_crd_and_its_objects_pass() {
    let mut crd = generated_style_crd();
    default_crd(&mut crd);
    assert_eq!(messages(&validate_crd(&crd)), Vec::<String>::new());

    let schema = version_schema(version(&crd, "v1").unwrap()).unwrap();
    let mut obj = json!({
        "apiVersion": "net.example.io/v1",
        "kind": "PortalClass",
        "metadata": {"name": "internal"},
        "spec": {"controllerName": "example.net/portal-controller", "unknown": true},
    });
    assert_eq!(prune_and_default(schema, &mut obj), vec!["spec.unknown"]);
    assert_eq!(obj["status"]["conditions"][0]["reason"], "Pending");
    assert_eq!(messages(&validate_custom_resource(&crd, "v1", &obj)), Vec::<String>::new());

    let table = CrdTable::new(version(&crd, "v1").unwrap()).unwrap();
    let cells = table.row_cells(&obj, Timestamp::UNIX_EPOCH);
    assert_eq!(cells[..3], [json!("internal"), json!("example.net/portal-controller"), json!("Unknown")]);

    obj["spec"]["controllerName"] = json!("no-slash");
    obj["status"]["conditions"][0]["status"] = json!("Maybe");
    assert_eq!(
        messages(&validate_custom_resource(&crd, "v1", &obj)),
        vec![
            "spec.controllerName: Invalid value: \"no-slash\": spec.controllerName in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\\/[A-Za-z0-9\\/\\-._~%!$&'()*+,;=:]+$'",
            "status.conditions[0].status: Unsupported value: \"Maybe\": supported values: \"True\", \"False\", \"Unknown\"",
        ]
    );
}

#[test]
fn selectable_fields_must_name_scalar_fields_outside_metadata() {
    let mut crd = crontab_crd();
    crd["spec"]["versions"][0]["selectableFields"] = json!([
        {"jsonPath": ".spec.image"},
        {"jsonPath": ".spec.missing"},
        {"jsonPath": ".spec"},
        {"jsonPath": ".spec.image"},
    ]);
    assert_eq!(
        messages(&validate_crd(&crd)),
        vec![
            "spec.selectableFields[1].jsonPath: Invalid value: \".spec.missing\": is an invalid path: does not refer to a field in the schema",
            "spec.selectableFields[2].jsonPath: Invalid value: \".spec\": must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
            "spec.selectableFields[3].jsonPath: Duplicate value: \".spec.image\"",
        ]
    );
}

#[test]
fn served_and_storage_versions_are_read_from_spec_versions() {
    let crd = generated_style_crd();
    assert_eq!(served_versions(&crd), vec!["v1", "v1beta1"]);
    assert_eq!(storage_version(&crd), Some("v1"));
}

#[test]
fn formats_accept_what_the_schema_validator_accepts() {
    let check = |format: &str, value: &str| {
        let schema = json!({"type": "object", "properties": {"v": {"type": "string", "format": format}}});
        validate_against_schema(&schema, &json!({"v": value})).is_empty()
    };
    for (format, value) in [
        ("date-time", "2024-05-01T10:00:00.123+02:00"),
        ("date-time", "2024-05-01T10:00:00"),
        ("date", "2024-02-29"),
        ("byte", "aGVsbG8="),
        ("uri", "https://example.com/a?b=c"),
        ("uri", "/absolute/path"),
        ("email", "Ann <ann@example.com>"),
        ("duration", "1h30m"),
        ("duration", "3 days"),
        ("ipv4", "10.0.0.1"),
        ("cidr", "10.0.0.0/8"),
        ("mac", "01:23:45:67:89:ab"),
        ("hostname", "my-host.example.com"),
        ("uuid4", "0b7f1a7e-3c52-4a7b-9f0e-2f4d8c1a5b6e"),
        ("int32", "not checked on strings"),
        ("unknown-format", "anything"),
    ] {
        assert!(check(format, value), "{format} rejects {value:?}");
    }
    for (format, value) in [
        ("date-time", "yesterday"),
        ("date", "2023-02-29"),
        ("byte", "not base64!"),
        ("uri", "relative/path"),
        ("duration", "soon"),
        ("ipv4", "10.0.0.256"),
        ("cidr", "10.0.0.0/33"),
        ("uuid", "0b7f1a7e"),
    ] {
        assert!(!check(format, value), "{format} accepts {value:?}");
    }
}

#[test]
fn updates_ratchet_errors_on_unchanged_values() {
    let crd = crontab_crd();
    let mut old = crontab(json!({"cronSpec": "bad", "replicas": 15, "image": "a"}));
    old["metadata"]["resourceVersion"] = json!("3");
    let mut new = old.clone();
    new["spec"]["image"] = json!("b");
    // cronSpec and replicas were already invalid and are unchanged: the update may keep them.
    assert_eq!(messages(&validate_custom_resource_update(&crd, "v1", &new, &old)), Vec::<String>::new());
    new["spec"]["replicas"] = json!(20);
    assert_eq!(
        messages(&validate_custom_resource_update(&crd, "v1", &new, &old)),
        vec!["spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10"]
    );
}

#[test]
fn preparing_crds_records_stored_versions_and_generations() {
    let mut crd = crontab_crd();
    crd["status"] = json!({"acceptedNames": {"kind": "Forged"}});
    prepare_crd_for_create(&mut crd);
    assert_eq!(crd["status"], json!({"storedVersions": ["v1"]}));
    assert_eq!(crd["metadata"]["generation"], 1);
    assert!(validate_crd(&crd).is_empty());

    let old = crd.clone();
    let mut new = crd.clone();
    let mut v2 = new["spec"]["versions"][0].clone();
    v2["name"] = json!("v2");
    new["spec"]["versions"][0]["storage"] = json!(false);
    new["spec"]["versions"].as_array_mut().unwrap().push(v2);
    new["status"] = json!({});
    prepare_crd_for_update(&mut new, &old);
    assert_eq!(new["status"]["storedVersions"], json!(["v1", "v2"]));
    assert_eq!(new["metadata"]["generation"], 2);

    let mut unchanged = old.clone();
    prepare_crd_for_update(&mut unchanged, &old);
    assert_eq!(unchanged["metadata"]["generation"], 1);
}

#[test]
fn versions_may_differ_in_schema_subresources_and_columns() {
    let mut crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gizmos.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "gizmos", "kind": "Gizmo", "shortNames": ["gz"], "categories": ["all"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                     "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                     "status": {"type": "object", "properties": {"ready": {"type": "integer"}, "selector": {"type": "string"}}}}}},
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.ready", "labelSelectorPath": ".status.selector"}},
                 "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]},
                {"name": "v1beta1", "served": true, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
            ],
        },
    });
    default_crd(&mut crd);
    prepare_crd_for_create(&mut crd);
    assert_eq!(messages(&validate_crd(&crd)), Vec::<String>::new());
    crd["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] = json!("spec.size");
    assert_eq!(
        messages(&validate_crd(&crd)),
        vec![
            "spec.versions[0].subresources.scale.specReplicasPath: Invalid value: \"spec.size\": must be a simple json path starting with ."
        ]
    );
}

fn rule_crd(rules: Value) -> Value {
    let mut crd = crd_with_schema(json!({"type": "object", "properties": {"spec": {
        "type": "object",
        "x-kubernetes-validations": rules,
        "properties": {
            "min": {"type": "integer"},
            "max": {"type": "integer"},
            "name": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "Value is immutable"}]},
            "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-validations": [{"rule": "self.all(t, t.size() <= 3)"}]},
        },
    }}}));
    crd["spec"]["versions"][0].as_object_mut().unwrap().remove("subresources");
    crd
}

#[test]
fn cel_rules_reject_values_that_evaluate_to_false() {
    let crd = rule_crd(json!([
        {"rule": "self.min <= self.max", "message": "min must not exceed max"},
        {"rule": "!has(self.name) || self.name.startsWith('x')", "fieldPath": ".name", "reason": "FieldValueForbidden"},
        {"rule": "self.min >= 0", "messageExpression": "'min is ' + string(self.min)"},
    ]));
    assert!(validate_crd(&crd).is_empty(), "{:?}", messages(&validate_crd(&crd)));
    let ok = crontab(json!({"min": 1, "max": 2, "name": "xy", "tags": ["a", "bcd"]}));
    assert_eq!(messages(&validate_custom_resource(&crd, "v1", &ok)), Vec::<String>::new());
    let bad = crontab(json!({"min": -3, "max": -4, "name": "yz", "tags": ["long"]}));
    assert_eq!(
        messages(&validate_custom_resource(&crd, "v1", &bad)),
        vec![
            "spec: Invalid value: \"object\": min must not exceed max",
            "spec.name: Forbidden: failed rule: !has(self.name) || self.name.startsWith('x')",
            "spec: Invalid value: \"object\": min is -3",
            "spec.tags: Invalid value: \"array\": failed rule: self.all(t, t.size() <= 3)",
        ]
    );
}

#[test]
fn cel_transition_rules_run_on_updates_only_and_unknown_functions_are_skipped() {
    let crd = rule_crd(json!([{"rule": "url(self.name).getScheme() == 'https'"}]));
    let mut old = crontab(json!({"name": "a"}));
    assert_eq!(messages(&validate_custom_resource(&crd, "v1", &old)), Vec::<String>::new());
    old["metadata"]["resourceVersion"] = json!("1");
    let mut new = old.clone();
    new["spec"]["name"] = json!("b");
    assert_eq!(
        messages(&validate_custom_resource_update(&crd, "v1", &new, &old)),
        vec!["spec.name: Invalid value: \"string\": Value is immutable"]
    );
}

#[test]
fn defaults_must_satisfy_cel_rules() {
    let crd = crd_with_schema(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "worker": {
            "type": "object",
            "default": {"min": 5, "max": 2},
            "x-kubernetes-validations": [{"rule": "self.min <= self.max", "message": "min must not exceed max"}],
            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
        },
    }}}}));
    assert_eq!(
        messages(&validate_crd(&crd)),
        vec![
            "spec.validation.openAPIV3Schema.properties[spec].properties[worker].default: Invalid value: \"object\": min must not exceed max"
        ]
    );
}
