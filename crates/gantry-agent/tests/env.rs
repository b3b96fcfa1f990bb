//! A container's environment from every source, with ConfigMaps and Secrets in a real API server.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, Container, EnvFromSource, EnvVar, EnvVarSource,
    ObjectFieldSelector, Pod, PodSpec, ResourceFieldSelector, ResourceRequirements, Secret, SecretEnvSource,
    SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio_util::sync::CancellationToken;

use gantry_agent::env::{EnvFacts, command_and_args, container_env};

struct Server {
    shutdown: CancellationToken,
    _server: gantry_apiserver::RunningServer,
    client: kube::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn server() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let shutdown = CancellationToken::new();
    let server = gantry_apiserver::start_loopback(dir.path(), shutdown.clone()).await.expect("server");
    let kubeconfig = Kubeconfig::read_from(dir.path().join("kubeconfig")).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    let client = kube::Client::try_from(config).expect("client");
    Server { shutdown, _server: server, client, _dir: dir }
}

fn pod(container: Container) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web-0".into()),
            namespace: Some("default".into()),
            uid: Some("uid-env".into()),
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            annotations: Some(BTreeMap::from([("note".into(), "hello".into())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node-1".into()),
            service_account_name: Some("builder".into()),
            containers: vec![container],
            ..Default::default()
        }),
        status: None,
    }
}

fn var(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
}

fn from(name: &str, source: EnvVarSource) -> EnvVar {
    EnvVar { name: name.into(), value: None, value_from: Some(source) }
}

fn field(path: &str) -> EnvVarSource {
    EnvVarSource {
        field_ref: Some(ObjectFieldSelector { field_path: path.into(), api_version: None }),
        ..Default::default()
    }
}

fn facts() -> EnvFacts {
    EnvFacts {
        pod_ips: vec!["10.1.0.7".into(), "fd00::7".into()],
        host_ips: vec!["192.168.5.5".into()],
        node_name: "node-1".into(),
        node_allocatable_cpu_millis: 1500,
        node_allocatable_memory_bytes: 2 << 30,
        node_allocatable_ephemeral_storage_bytes: 0,
        service_links: Vec::new(),
    }
}

async fn create_objects(client: &kube::Client) {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = ConfigMap {
        metadata: ObjectMeta { name: Some("env-cm".into()), ..Default::default() },
        data: Some(BTreeMap::from([
            ("MODE".into(), "fast".into()),
            ("LEVEL".into(), "3".into()),
            ("1st.key".into(), "relaxed".into()),
        ])),
        ..Default::default()
    };
    configmaps.create(&PostParams::default(), &cm).await.expect("configmap");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret = Secret {
        metadata: ObjectMeta { name: Some("env-secret".into()), ..Default::default() },
        data: Some(BTreeMap::from([("PASSWORD".into(), ByteString(b"hunter2".to_vec()))])),
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &secret).await.expect("secret");
}

#[tokio::test]
async fn the_environment_comes_from_every_source_in_the_kubelet_order() {
    let s = server().await;
    create_objects(&s.client).await;
    let container = Container {
        name: "app".into(),
        env_from: Some(vec![
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource { name: "env-cm".into(), optional: None }),
                prefix: Some("CFG_".into()),
                secret_ref: None,
            },
            EnvFromSource {
                secret_ref: Some(SecretEnvSource { name: "env-secret".into(), optional: None }),
                ..Default::default()
            },
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource { name: "env-absent".into(), optional: Some(true) }),
                ..Default::default()
            },
        ]),
        env: Some(vec![
            var("GREETING", "mode=$(CFG_MODE) pw=$(PASSWORD) later=$(POD_NAME) $$(CFG_MODE)"),
            from(
                "LEVEL",
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "env-cm".into(),
                        key: "LEVEL".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
            ),
            from(
                "SECRET_PW",
                EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "env-secret".into(),
                        key: "PASSWORD".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
            ),
            from(
                "SKIPPED",
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "env-cm".into(),
                        key: "NOPE".into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                },
            ),
            from("POD_NAME", field("metadata.name")),
            from("POD_NAMESPACE", field("metadata.namespace")),
            from("POD_UID", field("metadata.uid")),
            from("APP", field("metadata.labels['app']")),
            from("NOTE", field("metadata.annotations['note']")),
            from("NODE", field("spec.nodeName")),
            from("SA", field("spec.serviceAccountName")),
            from("HOST_IP", field("status.hostIP")),
            from("HOST_IPS", field("status.hostIPs")),
            from("POD_IP", field("status.podIP")),
            from("POD_IPS", field("status.podIPs")),
            from(
                "MEM_MI",
                EnvVarSource {
                    resource_field_ref: Some(ResourceFieldSelector {
                        resource: "limits.memory".into(),
                        divisor: Some(Quantity("1Mi".into())),
                        container_name: None,
                    }),
                    ..Default::default()
                },
            ),
            from(
                "CPU_LIMIT_M",
                EnvVarSource {
                    resource_field_ref: Some(ResourceFieldSelector {
                        resource: "limits.cpu".into(),
                        divisor: Some(Quantity("1m".into())),
                        container_name: None,
                    }),
                    ..Default::default()
                },
            ),
            var("CFG_MODE", "overridden"),
        ]),
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".into(), Quantity("256Mi".into()))])),
            ..Default::default()
        }),
        command: Some(vec!["/bin/echo".into(), "$(CFG_MODE)".into()]),
        args: Some(vec!["$(POD_IP)".into(), "$(UNSET)".into()]),
        ..Default::default()
    };
    let p = pod(container.clone());
    let env = container_env(&s.client, &p, &container, &facts()).await.expect("env");
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        pairs,
        vec![
            ("CFG_1st.key", "relaxed"),
            ("CFG_LEVEL", "3"),
            ("CFG_MODE", "overridden"),
            ("PASSWORD", "hunter2"),
            ("GREETING", "mode=fast pw=hunter2 later=$(POD_NAME) $(CFG_MODE)"),
            ("LEVEL", "3"),
            ("SECRET_PW", "hunter2"),
            ("POD_NAME", "web-0"),
            ("POD_NAMESPACE", "default"),
            ("POD_UID", "uid-env"),
            ("APP", "web"),
            ("NOTE", "hello"),
            ("NODE", "node-1"),
            ("SA", "builder"),
            ("HOST_IP", "192.168.5.5"),
            ("HOST_IPS", "192.168.5.5"),
            ("POD_IP", "10.1.0.7"),
            ("POD_IPS", "10.1.0.7,fd00::7"),
            ("MEM_MI", "256"),
            ("CPU_LIMIT_M", "1500"),
        ]
    );
    let (command, args) = command_and_args(&container, &env);
    assert_eq!(command, vec!["/bin/echo", "overridden"]);
    assert_eq!(args, vec!["10.1.0.7", "$(UNSET)"]);
}

#[tokio::test]
async fn missing_objects_and_keys_fail_in_the_kubelet_words() {
    let s = server().await;
    create_objects(&s.client).await;
    let check = |env: Vec<EnvVar>, env_from: Vec<EnvFromSource>| {
        let container =
            Container { name: "app".into(), env: Some(env), env_from: Some(env_from), ..Default::default() };
        let client = s.client.clone();
        async move {
            let p = pod(container.clone());
            container_env(&client, &p, &container, &facts()).await.map_err(|e| e.to_string())
        }
    };
    let cm_key = |name: &str, key: &str| EnvVarSource {
        config_map_key_ref: Some(ConfigMapKeySelector { name: name.into(), key: key.into(), optional: None }),
        ..Default::default()
    };
    let secret_key = |name: &str, key: &str| EnvVarSource {
        secret_key_ref: Some(SecretKeySelector { name: name.into(), key: key.into(), optional: None }),
        ..Default::default()
    };
    assert_eq!(
        check(vec![from("X", cm_key("nope-cm", "k"))], vec![]).await,
        Err("configmap \"nope-cm\" not found".into())
    );
    assert_eq!(
        check(vec![from("X", cm_key("env-cm", "k"))], vec![]).await,
        Err("couldn't find key k in ConfigMap default/env-cm".into())
    );
    assert_eq!(
        check(vec![from("X", secret_key("nope-s", "k"))], vec![]).await,
        Err("secret \"nope-s\" not found".into())
    );
    assert_eq!(
        check(vec![from("X", secret_key("env-secret", "k"))], vec![]).await,
        Err("couldn't find key k in Secret default/env-secret".into())
    );
    let missing_from = EnvFromSource {
        secret_ref: Some(SecretEnvSource { name: "nope-s".into(), optional: Some(false) }),
        ..Default::default()
    };
    assert_eq!(check(vec![], vec![missing_from]).await, Err("secret \"nope-s\" not found".into()));
    let optional = EnvVarSource {
        secret_key_ref: Some(SecretKeySelector { name: "nope-s".into(), key: "k".into(), optional: Some(true) }),
        ..Default::default()
    };
    assert_eq!(check(vec![from("X", optional), var("Y", "y")], vec![]).await, Ok(vec![("Y".into(), "y".into())]));
    assert_eq!(
        check(vec![from("X", field("metadata.labels"))], vec![]).await,
        Err("unsupported fieldPath: metadata.labels".into())
    );
}

#[tokio::test]
async fn service_links_come_last_may_be_referred_to_and_never_replace_the_containers_own() {
    let s = server().await;
    let container = Container {
        name: "app".into(),
        env: Some(vec![
            EnvVar {
                name: "BACKEND".into(),
                value: Some("http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)".into()),
                ..Default::default()
            },
            EnvVar { name: "WEB_SERVICE_PORT".into(), value: Some("mine".into()), ..Default::default() },
        ]),
        ..Default::default()
    };
    let p = pod(container.clone());
    let mut facts = facts();
    facts.service_links =
        vec![("WEB_SERVICE_HOST".into(), "10.43.0.20".into()), ("WEB_SERVICE_PORT".into(), "80".into())];
    let env = container_env(&s.client, &p, &container, &facts).await.expect("env");
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        pairs,
        vec![("BACKEND", "http://10.43.0.20:80"), ("WEB_SERVICE_PORT", "mine"), ("WEB_SERVICE_HOST", "10.43.0.20")]
    );
}
