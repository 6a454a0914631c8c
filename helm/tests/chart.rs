//! The Helm chart, rendered with the default values and every value set in
//! `helm/warble/ci/`: it lints clean in strict mode, every object passes the
//! Kubernetes schemas, pods are locked down and probed, every component is
//! scraped where it serves /metrics and the alerts and the dashboard query
//! only metrics the services export, and every `WARBLE_*` variable it sets is
//! a config key the service reads and accepts.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use warble_helm_tests::{EnvSource, EnvVar, KUBE_VERSIONS, Report, ValueSet, Workload, report};
use warble_mesh::config::{ServiceConfig, keys, load};

/// The eight workloads, by their `app.kubernetes.io/component` label.
const COMPONENTS: [&str; 8] = [
    "tweet-svc",
    "graph-svc",
    "timeline-svc",
    "fanout-svc",
    "notify-svc",
    "search-svc",
    "media-svc",
    "gateway",
];

/// The services that issue Snowflake ids and so need a unique worker id per pod.
const ID_ISSUERS: [&str; 3] = ["tweet-svc", "graph-svc", "media-svc"];

/// The StatefulSets: the id issuers (stable ordinals), notify-svc and
/// search-svc (a data volume per pod, and a replacement only once its
/// predecessor is gone).
const STATEFUL: [&str; 5] = [
    "tweet-svc",
    "graph-svc",
    "notify-svc",
    "search-svc",
    "media-svc",
];

/// The gRPC service search-svc reports NOT_SERVING until its index has
/// caught up with the event stream.
const SEARCH_SERVICE: &str = "warble.search.v1.SearchService";

/// The services consuming the event streams, each in its own consumer group.
const CONSUMERS: [&str; 3] = ["fanout-svc", "notify-svc", "media-svc"];

/// media-svc's S3 key pair: secrets whose key names the suffix rule
/// (`warble_mesh::config::is_secret_key`) does not catch. Both are `Secret`s
/// in its config, so the service redacts them all the same
/// (`media_svc_redacts_its_s3_key_pair`).
const S3_KEY_PAIR: [&str; 2] = [
    "WARBLE_BLOBS__S3__ACCESS_KEY_ID",
    "WARBLE_BLOBS__S3__SECRET_ACCESS_KEY",
];

/// Whether `workload`'s `data_dir` sits on a volume its StatefulSet claims
/// (a PersistentVolumeClaim per pod) rather than on an `emptyDir`; fails
/// the test when no mounted volume holds it.
fn data_dir_is_claimed(set: &ValueSet, workload: &Workload<'_>, data_dir: &str, at: &str) -> bool {
    let volume = container(set, workload)["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|mount| mount["mountPath"] == data_dir)
        .and_then(|mount| mount["name"].as_str())
        .unwrap_or_else(|| panic!("{at}: {data_dir} is not on a mounted volume"));
    workload.object["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|claim| claim["metadata"]["name"] == volume)
}

/// Where a component's mesh certificate Secret is mounted, and the files in it.
const MESH_TLS_DIR: &str = "/etc/warble/mesh-tls";

/// Whether `workload` runs with mutual TLS (its config turns it on).
fn mutual_tls(set: &ValueSet, workload: &Workload<'_>) -> bool {
    ["WARBLE_SERVER__TLS__ENABLED", "WARBLE_MESH_TLS__ENABLED"]
        .iter()
        .any(|name| env_value(set, workload, name).as_deref() == Some("true"))
}

/// The downward-API path the chart derives worker ids from.
const POD_INDEX_FIELD: &str = "metadata.labels['apps.kubernetes.io/pod-index']";

/// Runs `check` on the report, once every value set has rendered (nothing
/// to check otherwise); does nothing when the tooling is missing outside CI.
fn with_report(check: impl FnOnce(&Report)) {
    let Some(report) = report() else { return };
    for set in &report.value_sets {
        if let Some(error) = &set.render_error {
            panic!("[{}] the chart does not render: {error}", set.name);
        }
    }
    check(&report);
}

/// Every env var `component`'s binary reads.
fn config_env_vars(component: &str) -> BTreeSet<String> {
    let pairs = match component {
        "tweet-svc" => keys::<warble_tweet_svc::TweetSvcConfig>(),
        "graph-svc" => keys::<warble_graph_svc::GraphSvcConfig>(),
        "timeline-svc" => keys::<warble_timeline_svc::TimelineSvcConfig>(),
        "fanout-svc" => keys::<warble_fanout_svc::FanoutSvcConfig>(),
        "notify-svc" => keys::<warble_notify_svc::NotifySvcConfig>(),
        "search-svc" => keys::<warble_search_svc::SearchSvcConfig>(),
        "media-svc" => keys::<warble_media_svc::MediaSvcConfig>(),
        "gateway" => keys::<warble_gateway::GatewayConfig>(),
        other => panic!("unknown component {other}"),
    };
    pairs.into_iter().map(|(_, env)| env).collect()
}

/// Loads `component`'s config exactly as its binary does, from `env` alone.
fn load_config(component: &str, env: &BTreeMap<String, String>) -> Result<(), String> {
    // The closure's error type is figment's, which clippy finds large.
    #[allow(clippy::result_large_err)]
    fn load_as<T: ServiceConfig>(env: &BTreeMap<String, String>) -> Result<(), String> {
        let mut outcome = Ok(());
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            for (name, value) in env {
                jail.set_env(name, value);
            }
            outcome = load::<T>(None).map(drop).map_err(|error| error.to_string());
            Ok(())
        });
        outcome
    }
    match component {
        "tweet-svc" => load_as::<warble_tweet_svc::TweetSvcConfig>(env),
        "graph-svc" => load_as::<warble_graph_svc::GraphSvcConfig>(env),
        "timeline-svc" => load_as::<warble_timeline_svc::TimelineSvcConfig>(env),
        "fanout-svc" => load_as::<warble_fanout_svc::FanoutSvcConfig>(env),
        "notify-svc" => load_as::<warble_notify_svc::NotifySvcConfig>(env),
        "search-svc" => load_as::<warble_search_svc::SearchSvcConfig>(env),
        "media-svc" => load_as::<warble_media_svc::MediaSvcConfig>(env),
        "gateway" => load_as::<warble_gateway::GatewayConfig>(env),
        other => panic!("unknown component {other}"),
    }
}

/// The single container of a workload (every Warble pod runs one).
fn container<'a>(set: &ValueSet, workload: &Workload<'a>) -> &'a Value {
    let containers = workload.containers();
    assert_eq!(
        containers.len(),
        1,
        "[{}] {} should run exactly one container",
        set.name,
        workload.name
    );
    &containers[0]
}

/// The env vars of a workload's container, by name (duplicates are an error).
fn env_by_name(set: &ValueSet, workload: &Workload<'_>) -> BTreeMap<String, EnvVar> {
    let mut by_name = BTreeMap::new();
    for var in set.container_env(container(set, workload)) {
        let name = var.name.clone();
        if let Some(previous) = by_name.insert(name.clone(), var) {
            panic!(
                "[{}] {} sets {name} twice ({:?} and again); which one wins is not obvious",
                set.name, workload.name, previous.source
            );
        }
    }
    by_name
}

fn env_value(set: &ValueSet, workload: &Workload<'_>, name: &str) -> Option<String> {
    env_by_name(set, workload)
        .get(name)
        .and_then(|var| var.value.clone())
}

/// Whether the key behind `name` is secret: by the rule the services redact
/// by, or a `Secret` whose name that rule misses ([`S3_KEY_PAIR`]).
fn is_secret_var(name: &str) -> bool {
    if S3_KEY_PAIR.contains(&name) {
        return true;
    }
    let key = name
        .trim_start_matches("WARBLE_")
        .to_ascii_lowercase()
        .replace("__", ".");
    warble_mesh::config::is_secret_key(&key)
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|selector| selector.iter().all(|(key, value)| &labels[key] == value))
}

fn set_named<'a>(report: &'a Report, name: &str) -> &'a ValueSet {
    report
        .value_sets
        .iter()
        .find(|set| set.name == name)
        .unwrap_or_else(|| panic!("no value set {name}"))
}

#[test]
fn chart_lints_renders_and_passes_the_kubernetes_schemas_with_every_value_set() {
    with_report(|report| {
        assert!(
            report.value_sets.len() >= 4,
            "the default values and at least three value sets"
        );
        assert_eq!(report.value_sets[0].name, "default");
        for set in &report.value_sets {
            assert!(
                set.lint.errors.is_empty(),
                "[{}] lint: {:?}",
                set.name,
                set.lint.errors
            );
            let findings: Vec<_> = set
                .lint
                .messages
                .iter()
                .filter(|message| message.severity >= 2)
                .collect();
            assert!(
                findings.is_empty(),
                "[{}] strict lint findings: {findings:?}",
                set.name
            );
            assert!(
                set.render_error.is_none(),
                "[{}] render failed: {}",
                set.name,
                set.render_error.as_deref().unwrap_or_default()
            );
            assert!(!set.objects.is_empty(), "[{}] rendered nothing", set.name);
            assert_eq!(
                set.validation.len(),
                set.objects.len() * KUBE_VERSIONS.len(),
                "[{}] every object is validated against every Kubernetes version",
                set.name
            );
            for validation in &set.validation {
                assert!(
                    validation.error.is_none(),
                    "[{}] {} {} is invalid for Kubernetes {}: {}",
                    set.name,
                    validation.kind,
                    validation.name,
                    validation.kube_version,
                    validation.error.as_deref().unwrap_or_default()
                );
                if let Some(reason) = &validation.skipped {
                    assert!(
                        ["ServiceMonitor", "PrometheusRule", "Certificate"]
                            .contains(&validation.kind.as_str()),
                        "[{}] only the Prometheus Operator and cert-manager custom resources \
                         may lack a schema (their shape is checked by the tests on metrics \
                         and mutual TLS), not {}: {reason}",
                        set.name,
                        validation.kind
                    );
                }
            }

            let workloads = set.workloads();
            assert_eq!(
                workloads.len(),
                COMPONENTS.len(),
                "[{}] one workload per service",
                set.name
            );
            for component in COMPONENTS {
                let workload = set.workload(component);
                let expected_kind = if STATEFUL.contains(&component) {
                    "StatefulSet"
                } else {
                    "Deployment"
                };
                assert_eq!(workload.kind, expected_kind, "[{}] {component}", set.name);
                let service = set
                    .object("Service", workload.name)
                    .unwrap_or_else(|| panic!("[{}] no Service {}", set.name, workload.name));
                assert!(
                    labels_match(
                        &service["spec"]["selector"],
                        &workload.object["spec"]["template"]["metadata"]["labels"]
                    ),
                    "[{}] Service {} does not select its pods",
                    set.name,
                    workload.name
                );
            }
        }
    });
}

#[test]
fn every_pod_runs_non_root_read_only_without_privileges() {
    with_report(|report| {
        for set in &report.value_sets {
            let mut pods: Vec<(String, &Value)> = set
                .workloads()
                .iter()
                .map(|workload| (workload.name.to_owned(), workload.pod_spec()))
                .collect();
            pods.extend(set.objects("Pod").map(|pod| {
                (
                    pod["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    &pod["spec"],
                )
            }));
            assert!(
                pods.len() > COMPONENTS.len(),
                "[{}] the helm test pod is rendered",
                set.name
            );
            for (name, pod) in pods {
                let at = format!("[{}] {name}", set.name);
                let pod_security = &pod["securityContext"];
                assert_eq!(pod_security["runAsNonRoot"], true, "{at}: pod runAsNonRoot");
                assert_eq!(
                    pod_security["seccompProfile"]["type"], "RuntimeDefault",
                    "{at}: pod seccomp profile"
                );
                assert_ne!(pod_security["runAsUser"], 0, "{at}: pod runs as root");
                assert_eq!(
                    pod["automountServiceAccountToken"], false,
                    "{at}: API token mounted"
                );
                assert_eq!(
                    pod["enableServiceLinks"], false,
                    "{at}: service links inject env vars"
                );
                assert!(
                    pod["hostNetwork"] != true && pod["hostPID"] != true,
                    "{at}: host namespaces"
                );

                let tmp_volumes: BTreeSet<&str> = pod["volumes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|volume| volume["emptyDir"].is_object())
                    .filter_map(|volume| volume["name"].as_str())
                    .collect();
                let containers = pod["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain(pod["initContainers"].as_array().into_iter().flatten());
                for container in containers {
                    let at = format!("{at}/{}", container["name"].as_str().unwrap_or_default());
                    let security = &container["securityContext"];
                    assert_eq!(
                        security["allowPrivilegeEscalation"], false,
                        "{at}: privilege escalation"
                    );
                    assert_eq!(
                        security["readOnlyRootFilesystem"], true,
                        "{at}: writable root filesystem"
                    );
                    assert_ne!(security["privileged"], true, "{at}: privileged");
                    assert_ne!(security["runAsUser"], 0, "{at}: runs as root");
                    let drops: Vec<_> = security["capabilities"]["drop"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    assert!(drops.contains(&"ALL"), "{at}: capabilities not all dropped");
                    assert!(
                        security["capabilities"]["add"]
                            .as_array()
                            .is_none_or(Vec::is_empty),
                        "{at}: capabilities added"
                    );
                    assert!(
                        security["runAsNonRoot"] == true
                            || (security["runAsNonRoot"].is_null()
                                && pod_security["runAsNonRoot"] == true),
                        "{at}: runAsNonRoot"
                    );
                    let seccomp = if security["seccompProfile"].is_null() {
                        &pod_security["seccompProfile"]
                    } else {
                        &security["seccompProfile"]
                    };
                    assert_eq!(seccomp["type"], "RuntimeDefault", "{at}: seccomp profile");
                    let tmp = container["volumeMounts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|mount| mount["mountPath"] == "/tmp");
                    assert!(
                        tmp.and_then(|mount| mount["name"].as_str())
                            .is_some_and(|volume| tmp_volumes.contains(volume)),
                        "{at}: /tmp is not a writable emptyDir"
                    );
                    assert!(
                        container["resources"]["requests"]["memory"].is_string()
                            && container["resources"]["limits"]["memory"].is_string(),
                        "{at}: memory request and limit"
                    );
                }
            }
        }
    });
}

#[test]
fn probes_are_native_distinct_and_aimed_at_the_serving_port() {
    let readiness_service = BTreeMap::from([
        ("tweet-svc", "warble.tweet.v1.TweetService"),
        ("graph-svc", "warble.graph.v1.GraphService"),
        ("timeline-svc", "warble.timeline.v1.TimelineService"),
        ("fanout-svc", "warble.fanout.v1.FanoutService"),
        ("notify-svc", "warble.notify.v1.NotifyService"),
        ("search-svc", SEARCH_SERVICE),
        ("media-svc", "warble.media.v1.MediaService"),
    ]);
    let budget = |probe: &Value| {
        probe["periodSeconds"].as_u64().unwrap_or(10)
            * probe["failureThreshold"].as_u64().unwrap_or(3)
    };
    with_report(|report| {
        for set in &report.value_sets {
            for workload in set.workloads() {
                let at = format!("[{}] {}", set.name, workload.name);
                let container = container(set, &workload);
                let [startup, readiness, liveness] =
                    ["startupProbe", "readinessProbe", "livenessProbe"].map(|probe| {
                        let value = &container[probe];
                        assert!(value.is_object(), "{at}: no {probe}");
                        value
                    });
                assert_ne!(
                    readiness, liveness,
                    "{at}: readiness and liveness are the same probe"
                );
                assert!(
                    budget(liveness) > budget(readiness),
                    "{at}: liveness must tolerate longer outages than readiness"
                );
                assert!(
                    budget(startup) >= 30,
                    "{at}: startup allows under 30s to start"
                );
                let port = &container["ports"][0];
                if workload.component == "gateway" {
                    assert_eq!(port["name"], "http", "{at}");
                    for probe in [startup, readiness, liveness] {
                        assert_eq!(probe["httpGet"]["port"], "http", "{at}: HTTP probe port");
                    }
                    assert_eq!(readiness["httpGet"]["path"], "/readyz", "{at}");
                    assert_eq!(liveness["httpGet"]["path"], "/healthz", "{at}");
                    assert_eq!(startup["httpGet"]["path"], "/healthz", "{at}");
                } else {
                    assert_eq!(port["name"], "grpc", "{at}");
                    // Kubernetes' gRPC probes cannot speak TLS: with mutual
                    // TLS they ask the plaintext health listener, which the
                    // service is told to open on that port.
                    let probed = if mutual_tls(set, &workload) {
                        let health = &container["ports"][1];
                        assert_eq!(health["name"], "health", "{at}");
                        assert_eq!(
                            env_value(set, &workload, "WARBLE_SERVER__HEALTH_LISTEN_ADDR"),
                            Some(format!("0.0.0.0:{}", health["containerPort"])),
                            "{at}: the health listener is where the probes go"
                        );
                        health
                    } else {
                        port
                    };
                    for probe in [startup, readiness, liveness] {
                        assert_eq!(
                            probe["grpc"]["port"], probed["containerPort"],
                            "{at}: native gRPC probe on the serving (or health) port"
                        );
                    }
                    assert_eq!(
                        readiness["grpc"]["service"], readiness_service[workload.component],
                        "{at}: readiness asks about the service's own API"
                    );
                    assert_eq!(
                        liveness["grpc"]["service"], "",
                        "{at}: liveness asks about the server"
                    );
                    assert_eq!(
                        startup["grpc"]["service"], "",
                        "{at}: startup asks about the server"
                    );
                }
            }
        }
    });
}

#[test]
fn termination_grace_period_outlasts_the_drain() {
    with_report(|report| {
        for set in &report.value_sets {
            for workload in set.workloads() {
                let at = format!("[{}] {}", set.name, workload.name);
                let drain_var = if workload.component == "gateway" {
                    "WARBLE_DRAIN_TIMEOUT_SECS"
                } else {
                    "WARBLE_SERVER__DRAIN_TIMEOUT_SECS"
                };
                let drain: u64 = env_value(set, &workload, drain_var)
                    .unwrap_or_else(|| panic!("{at}: {drain_var} is not set"))
                    .parse()
                    .unwrap_or_else(|error| panic!("{at}: {drain_var}: {error}"));
                let pre_stop =
                    container(set, &workload)["lifecycle"]["preStop"]["sleep"]["seconds"]
                        .as_u64()
                        .unwrap_or(0);
                let grace = workload.pod_spec()["terminationGracePeriodSeconds"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{at}: terminationGracePeriodSeconds is not set"));
                assert!(
                    grace > pre_stop + drain,
                    "{at}: grace period {grace}s does not outlast preStop {pre_stop}s + drain {drain}s"
                );
            }
        }
    });
}

#[test]
fn every_warble_variable_is_a_config_key_its_service_reads() {
    with_report(|report| {
        for set in &report.value_sets {
            for workload in set.workloads() {
                let at = format!("[{}] {}", set.name, workload.name);
                let known = config_env_vars(workload.component);
                let env = env_by_name(set, &workload);
                assert!(!env.is_empty(), "{at}: no configuration at all");
                for (name, var) in &env {
                    assert!(
                        name.starts_with("WARBLE_"),
                        "{at}: sets {name}, which no Warble service reads"
                    );
                    assert!(
                        known.contains(name),
                        "{at}: sets {name}, which is not a config key of {} (see `{} --print-config-keys`)",
                        workload.component,
                        workload.component
                    );
                    match &var.source {
                        EnvSource::ConfigMap(map) => {
                            assert!(
                                !is_secret_var(name),
                                "{at}: secret {name} comes from ConfigMap {map}"
                            );
                            assert_eq!(
                                map, workload.name,
                                "{at}: {name} comes from another service's ConfigMap"
                            );
                        }
                        EnvSource::Secret { .. } => {
                            assert!(
                                is_secret_var(name),
                                "{at}: {name} is not secret but comes from a Secret"
                            )
                        }
                        EnvSource::Field(_) | EnvSource::Literal => {
                            assert!(
                                !is_secret_var(name),
                                "{at}: secret {name} is set in the pod spec"
                            )
                        }
                    }
                }
            }
        }
    });
}

#[test]
fn every_service_accepts_the_config_the_chart_gives_it() {
    with_report(|report| {
        for set in &report.value_sets {
            for workload in set.workloads() {
                let at = format!("[{}] {}", set.name, workload.name);
                let mut env = BTreeMap::new();
                for (name, var) in env_by_name(set, &workload) {
                    let value = match (&var.source, var.value) {
                        (_, Some(value)) => value,
                        (EnvSource::Field(path), None) if path == POD_INDEX_FIELD => workload
                            .object["spec"]["ordinals"]["start"]
                            .as_u64()
                            .unwrap_or(0)
                            .to_string(),
                        (EnvSource::Field(path), None) if path == "metadata.name" => {
                            format!("{}-0", workload.name)
                        }
                        // A credential kept in the operator's own Secret.
                        (
                            EnvSource::Secret {
                                in_chart: false, ..
                            },
                            None,
                        ) => "from-an-existing-secret-0123456789abcdef".to_owned(),
                        (source, None) => {
                            panic!("{at}: cannot tell the value of {name} ({source:?})")
                        }
                    };
                    env.insert(name, value);
                }
                // The trusted-documents manifest comes from a ConfigMap the
                // release does not own: it must be mounted where the
                // variable points; its content is the frontend's.
                let manifest_dir = tempfile::tempdir().unwrap();
                if let Some(path) = env.get_mut("WARBLE_TRUSTED_DOCUMENTS_FILE")
                    && !path.is_empty()
                {
                    let mounts = workload.object["spec"]["template"]["spec"]["containers"][0]
                        ["volumeMounts"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    assert!(
                        mounts
                            .iter()
                            .any(|mount| path
                                .starts_with(mount["mountPath"].as_str().unwrap_or("\0"))),
                        "{at}: {path} is not on a mounted volume"
                    );
                    let manifest = manifest_dir.path().join("manifest.json");
                    std::fs::write(&manifest, "{}").unwrap();
                    *path = manifest.display().to_string();
                }
                // With mutual TLS, the certificate files come from a Secret
                // mounted where the variables point; the test's own CA
                // stands in for the mesh's.
                let test_ca = warble_testkit::tls::MeshPki::new("chart test CA");
                let test_cert = test_ca.issue(workload.component);
                for (suffix, file) in [
                    ("CERT_FILE", &test_cert.cert_file),
                    ("KEY_FILE", &test_cert.key_file),
                    ("CA_FILE", &test_cert.ca_file),
                ] {
                    for prefix in ["WARBLE_SERVER__TLS__", "WARBLE_MESH_TLS__"] {
                        if let Some(path) = env.get_mut(&format!("{prefix}{suffix}")) {
                            assert!(
                                path.starts_with(MESH_TLS_DIR),
                                "{at}: {path} is not in the mounted certificate Secret"
                            );
                            *path = file.display().to_string();
                        }
                    }
                }
                if let Err(error) = load_config(workload.component, &env) {
                    panic!("{at} refuses the chart's config: {error}\n{env:#?}");
                }
            }
        }
    });
}

#[test]
fn services_are_wired_to_each_other_and_to_one_redis() {
    with_report(|report| {
        for set in &report.value_sets {
            // Every *_SERVICE_ADDR names a rendered Service and its port.
            for workload in set.workloads() {
                for (name, var) in env_by_name(set, &workload) {
                    if !name.ends_with("_SERVICE_ADDR") {
                        continue;
                    }
                    let value = var.value.expect("service address");
                    let (host, port) = value.rsplit_once(':').expect("host:port");
                    let service = set.object("Service", host).unwrap_or_else(|| {
                        panic!("[{}] {name}={value}: no such Service", set.name)
                    });
                    assert_eq!(
                        service["spec"]["ports"][0]["port"].to_string(),
                        port,
                        "[{}] {name}={value}: wrong port",
                        set.name
                    );
                }
            }
            // Every service reads and writes the events in the Redis
            // fanout-svc consumes them from; the timeline cache is there too
            // unless it has its own (fanout-svc's `timeline_cache.redis.*`,
            // which timeline-svc must read: see
            // `the_timeline_cache_can_have_its_own_redis`). notify-svc
            // publishes the live notifications the gateway tails from its
            // events Redis.
            let redis = |component: &str, prefix: &str| {
                let workload = set.workload(component);
                ["MODE", "URL", "CLUSTER_NODES"]
                    .map(|key| env_value(set, &workload, &format!("{prefix}{key}")))
            };
            let cache = redis("fanout-svc", "WARBLE_REDIS__");
            assert!(cache[0].is_some(), "[{}] fanout-svc has no Redis", set.name);
            let timeline_cache = if set.name.contains("cache-redis") {
                redis("fanout-svc", "WARBLE_TIMELINE_CACHE__REDIS__")
            } else {
                cache.clone()
            };
            assert_eq!(
                redis("timeline-svc", "WARBLE_REDIS__"),
                timeline_cache,
                "[{}] timeline-svc",
                set.name
            );
            assert_eq!(
                redis("tweet-svc", "WARBLE_EVENTS__REDIS__"),
                cache,
                "[{}] tweet-svc events",
                set.name
            );
            assert_eq!(
                redis("graph-svc", "WARBLE_EVENTS__REDIS__"),
                cache,
                "[{}] graph-svc events",
                set.name
            );
            assert_eq!(
                redis("gateway", "WARBLE_EVENTS__REDIS__"),
                cache,
                "[{}] gateway events",
                set.name
            );
            assert_eq!(
                redis("notify-svc", "WARBLE_REDIS__"),
                cache,
                "[{}] notify-svc events and live notifications",
                set.name
            );
            assert_eq!(
                redis("search-svc", "WARBLE_REDIS__"),
                cache,
                "[{}] search-svc events, replica registry and trends",
                set.name
            );
            // The credential too: same Secret and key as fanout-svc's.
            let password = |component: &str, name: &str| {
                env_by_name(set, &set.workload(component))
                    .get(name)
                    .map(|var| var.source.clone())
            };
            assert_eq!(
                password("notify-svc", "WARBLE_REDIS__PASSWORD"),
                password("fanout-svc", "WARBLE_REDIS__PASSWORD"),
                "[{}] notify-svc's Redis password",
                set.name
            );
            assert_eq!(
                password("notify-svc", "WARBLE_REDIS__PASSWORD"),
                password("gateway", "WARBLE_EVENTS__REDIS__PASSWORD"),
                "[{}] the gateway tails the notifications with its events password",
                set.name
            );
            assert_eq!(
                password("search-svc", "WARBLE_REDIS__PASSWORD"),
                password("fanout-svc", "WARBLE_REDIS__PASSWORD"),
                "[{}] search-svc's Redis password",
                set.name
            );
            // media-svc consumes the events from, and keeps its metadata in,
            // the release's Redis, with its credential.
            assert_eq!(
                redis("media-svc", "WARBLE_REDIS__"),
                cache,
                "[{}] media-svc events",
                set.name
            );
            assert_eq!(
                redis("media-svc", "WARBLE_STORE__REDIS__"),
                cache,
                "[{}] media-svc metadata store",
                set.name
            );
            for name in ["WARBLE_REDIS__PASSWORD", "WARBLE_STORE__REDIS__PASSWORD"] {
                assert_eq!(
                    password("media-svc", name),
                    password("fanout-svc", "WARBLE_REDIS__PASSWORD"),
                    "[{}] media-svc's {name}",
                    set.name
                );
            }
            assert_eq!(
                env_value(set, &set.workload("media-svc"), "WARBLE_STORE__BACKEND").as_deref(),
                Some("redis"),
                "[{}] media-svc: the embedded metadata store cannot be shared across pods",
                set.name
            );
            // The callers of notify-svc and graph-svc reach them.
            let notify = set.workload("notify-svc");
            assert_eq!(
                env_value(set, &set.workload("gateway"), "WARBLE_NOTIFY_SERVICE_ADDR"),
                Some(format!("{}:50055", notify.name)),
                "[{}] the gateway calls notify-svc",
                set.name
            );
            assert_eq!(
                env_value(set, &notify, "WARBLE_GRAPH_SERVICE_ADDR"),
                Some(format!("{}:50052", set.workload("graph-svc").name)),
                "[{}] notify-svc calls graph-svc",
                set.name
            );
            // The gateway calls search-svc; search-svc backfills from
            // tweet-svc and graph-svc.
            let search = set.workload("search-svc");
            assert_eq!(
                env_value(set, &set.workload("gateway"), "WARBLE_SEARCH_SERVICE_ADDR"),
                Some(format!("{}:50056", search.name)),
                "[{}] the gateway calls search-svc",
                set.name
            );
            // The gateway calls media-svc, through its Service like the others.
            let media = set.workload("media-svc");
            assert_eq!(
                env_value(set, &set.workload("gateway"), "WARBLE_MEDIA_SERVICE_ADDR"),
                Some(format!("{}:50057", media.name)),
                "[{}] the gateway calls media-svc",
                set.name
            );
            assert_eq!(
                env_value(set, &search, "WARBLE_TWEET_SERVICE_ADDR"),
                Some(format!("{}:50051", set.workload("tweet-svc").name)),
                "[{}] search-svc calls tweet-svc",
                set.name
            );
            assert_eq!(
                env_value(set, &search, "WARBLE_GRAPH_SERVICE_ADDR"),
                Some(format!("{}:50052", set.workload("graph-svc").name)),
                "[{}] search-svc calls graph-svc",
                set.name
            );
            for component in ["tweet-svc", "graph-svc", "gateway"] {
                let workload = set.workload(component);
                assert_eq!(
                    env_value(set, &workload, "WARBLE_EVENTS__BACKEND").as_deref(),
                    Some("redis"),
                    "[{}] {component}: the event streams must be Redis Streams, shared across processes",
                    set.name
                );
            }
            for component in ["timeline-svc", "fanout-svc"] {
                let workload = set.workload(component);
                assert_eq!(
                    env_value(set, &workload, "WARBLE_BACKEND").as_deref(),
                    Some("redis"),
                    "[{}] {component}: the embedded cache cannot be shared across pods",
                    set.name
                );
            }
            assert_eq!(
                env_value(
                    set,
                    &set.workload("timeline-svc"),
                    "WARBLE_CELEBRITY_THRESHOLD"
                ),
                env_value(
                    set,
                    &set.workload("fanout-svc"),
                    "WARBLE_FANOUT__CELEBRITY_THRESHOLD"
                ),
                "[{}] timeline-svc and fanout-svc disagree on the celebrity threshold",
                set.name
            );
        }
    });
}

#[test]
fn snowflake_worker_ids_are_unique_per_running_pod() {
    with_report(|report| {
        for set in &report.value_sets {
            let mut ranges = Vec::new();
            for workload in set.workloads() {
                let at = format!("[{}] {}", set.name, workload.name);
                let worker_id = env_by_name(set, &workload).remove("WARBLE_WORKER_ID");
                if !ID_ISSUERS.contains(&workload.component) {
                    assert!(
                        worker_id.is_none(),
                        "{at}: replicas of a Deployment would share a worker id"
                    );
                    continue;
                }
                assert_eq!(
                    workload.kind, "StatefulSet",
                    "{at}: worker ids need stable pod ordinals"
                );
                let worker_id =
                    worker_id.unwrap_or_else(|| panic!("{at}: WARBLE_WORKER_ID is not set"));
                assert_eq!(
                    worker_id.source,
                    EnvSource::Field(POD_INDEX_FIELD.to_owned()),
                    "{at}: the worker id must be the pod's ordinal"
                );
                let start = workload.object["spec"]["ordinals"]["start"]
                    .as_u64()
                    .unwrap_or(0);
                let end = start + set.max_pods(&workload) - 1;
                assert!(end <= 1023, "{at}: worker ids {start}..={end} pass 1023");
                ranges.push((workload.component, start, end));
            }
            assert_eq!(ranges.len(), ID_ISSUERS.len(), "[{}]", set.name);
            for (index, &(a, a_start, a_end)) in ranges.iter().enumerate() {
                for &(b, b_start, b_end) in &ranges[index + 1..] {
                    assert!(
                        a_end < b_start || b_end < a_start,
                        "[{}] worker ids overlap: {a} {a_start}..={a_end}, {b} {b_start}..={b_end}",
                        set.name
                    );
                }
            }
        }
    });
    // On a cluster without the pod-index label the variable is empty: the
    // service must refuse to start rather than fall back to a shared default.
    let env = BTreeMap::from([("WARBLE_WORKER_ID".to_owned(), String::new())]);
    for component in ID_ISSUERS {
        assert!(
            load_config(component, &env).is_err(),
            "{component} starts with an empty WARBLE_WORKER_ID"
        );
    }
}

#[test]
fn network_policies_admit_only_each_services_callers() {
    let callers = BTreeMap::from([
        (
            "tweet-svc",
            vec!["fanout-svc", "gateway", "search-svc", "timeline-svc"],
        ),
        (
            "graph-svc",
            vec![
                "fanout-svc",
                "gateway",
                "notify-svc",
                "search-svc",
                "timeline-svc",
            ],
        ),
        ("timeline-svc", vec!["gateway"]),
        ("fanout-svc", vec![]),
        ("notify-svc", vec!["gateway"]),
        ("search-svc", vec!["gateway"]),
        ("media-svc", vec!["gateway"]),
    ]);
    // Whether an ingress rule lets traffic onto the named port (a rule
    // naming no ports covers them all).
    let admits_port = |rule: &Value, port: &str| {
        rule["ports"]
            .as_array()
            .is_none_or(|ports| ports.iter().any(|entry| entry["port"] == port))
    };
    let is_open = |rule: &Value| rule["from"].as_array().is_none_or(Vec::is_empty);
    with_report(|report| {
        let mut checked = 0;
        let mut restricted_scrapers = false;
        for set in &report.value_sets {
            let policies: Vec<_> = set.objects("NetworkPolicy").collect();
            if policies.is_empty() {
                continue;
            }
            checked += 1;
            assert_eq!(
                policies.len(),
                COMPONENTS.len(),
                "[{}] one policy per workload",
                set.name
            );
            // The peers each gRPC service lets onto its `metrics` port (null:
            // any source), and the gateway's rules.
            let mut scrapers = BTreeSet::new();
            let mut gateway_rules: &[Value] = &[];
            for workload in set.workloads() {
                let at = format!("[{}] {}", set.name, workload.name);
                let policy = policies
                    .iter()
                    .find(|policy| {
                        labels_match(
                            &policy["spec"]["podSelector"]["matchLabels"],
                            &workload.object["spec"]["template"]["metadata"]["labels"],
                        )
                    })
                    .unwrap_or_else(|| panic!("{at}: no NetworkPolicy selects it"));
                assert!(
                    policy["spec"]["policyTypes"]
                        .as_array()
                        .is_some_and(|types| types.iter().any(|kind| kind == "Ingress")),
                    "{at}: the policy does not restrict ingress"
                );
                let rules = policy["spec"]["ingress"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let serving_port = if workload.component == "gateway" {
                    gateway_rules = rules;
                    "http"
                } else {
                    // Callers reach the gRPC port, scrapers the metrics port:
                    // a rule for any port would let one in through the other.
                    assert!(
                        rules
                            .iter()
                            .all(|rule| rule["ports"].as_array().is_some_and(|p| !p.is_empty())),
                        "{at}: a rule admits every port"
                    );
                    let metrics_rules: Vec<_> = rules
                        .iter()
                        .filter(|rule| admits_port(rule, "metrics"))
                        .collect();
                    assert!(
                        !metrics_rules.is_empty(),
                        "{at}: Prometheus cannot reach the metrics port"
                    );
                    scrapers.extend(metrics_rules.iter().map(|rule| rule["from"].to_string()));
                    "grpc"
                };
                let rules: Vec<_> = rules
                    .iter()
                    .filter(|rule| admits_port(rule, serving_port))
                    .collect();
                let open = rules.iter().any(|rule| is_open(rule));
                let mut admitted = BTreeSet::new();
                for peer in rules
                    .iter()
                    .flat_map(|rule| rule["from"].as_array().into_iter().flatten())
                {
                    let selector = &peer["podSelector"];
                    if peer["namespaceSelector"].is_object() || peer["ipBlock"].is_object() {
                        continue; // operator-supplied extraFrom peers
                    }
                    assert_eq!(
                        selector["matchLabels"]["app.kubernetes.io/instance"], "warble",
                        "{at}: a peer outside the release: {peer}"
                    );
                    for expression in selector["matchExpressions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        assert_eq!(expression["operator"], "In", "{at}");
                        admitted.extend(
                            expression["values"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(Value::as_str),
                        );
                    }
                    if let Some(component) =
                        selector["matchLabels"]["app.kubernetes.io/component"].as_str()
                    {
                        admitted.insert(component);
                    }
                }
                if workload.component == "gateway" {
                    assert!(
                        open || admitted.contains("test"),
                        "{at}: the gateway must take outside traffic (or at least the helm test pod)"
                    );
                } else {
                    assert!(!open, "{at}: accepts traffic from anywhere");
                    let admitted: Vec<_> = admitted.into_iter().collect();
                    assert_eq!(
                        admitted, callers[workload.component],
                        "{at}: admitted callers"
                    );
                }
            }

            // One scraper policy (metrics.networkPolicy.from) for every
            // service, and the gateway's /metrics reachable by those scrapers
            // too, whatever gateway.networkPolicy.from keeps out.
            assert_eq!(
                scrapers.len(),
                1,
                "[{}] the services admit different scrapers: {scrapers:?}",
                set.name
            );
            let scrapers: Value =
                serde_json::from_str(scrapers.first().expect("one")).expect("peers");
            let Some(scrapers) = scrapers.as_array() else {
                continue; // any source: the gateway's open rule (if any) was checked above
            };
            restricted_scrapers = true;
            let gateway_http: Vec<_> = gateway_rules
                .iter()
                .filter(|rule| admits_port(rule, "http"))
                .collect();
            for scraper in scrapers {
                assert!(
                    gateway_http.iter().any(|rule| is_open(rule)
                        || rule["from"]
                            .as_array()
                            .is_some_and(|peers| peers.contains(scraper))),
                    "[{}] the gateway keeps out the scraper {scraper}, so its /metrics goes unscraped",
                    set.name
                );
            }
        }
        assert!(
            checked >= 3,
            "NetworkPolicies are checked in several value sets"
        );
        assert!(
            restricted_scrapers,
            "no value set covers metrics.networkPolicy.from"
        );
    });
}

#[test]
fn notify_svc_store_and_scaling_follow_its_backend() {
    with_report(|report| {
        let mut backends = BTreeSet::new();
        for set in &report.value_sets {
            let notify = set.workload("notify-svc");
            let at = format!("[{}] {}", set.name, notify.name);
            let env = env_by_name(set, &notify);
            let value = |name: &str| env.get(name).and_then(|var| var.value.clone());
            let backend =
                value("WARBLE_STORE__BACKEND").unwrap_or_else(|| panic!("{at}: no store backend"));
            backends.insert(backend.clone());

            // `data_dir` is the pod's data volume, whatever the backend.
            let data_dir = value("WARBLE_DATA_DIR")
                .unwrap_or_else(|| panic!("{at}: WARBLE_DATA_DIR is not set"));
            let claimed = data_dir_is_claimed(set, &notify, &data_dir, &at);
            let scylla_vars = |env: &BTreeMap<String, EnvVar>| {
                env.iter()
                    .filter(|(name, _)| name.starts_with("WARBLE_STORE__SCYLLA__"))
                    .map(|(name, var)| {
                        // Each service has its own ConfigMap; a Secret is shared.
                        let source = match &var.source {
                            EnvSource::ConfigMap(_) => EnvSource::ConfigMap(String::new()),
                            source => source.clone(),
                        };
                        (name.clone(), (var.value.clone(), source))
                    })
                    .collect::<BTreeMap<_, _>>()
            };
            match backend.as_str() {
                "embedded" => {
                    // The redb file cannot be shared.
                    set.assert_one_pod_on_a_claim(&notify, claimed, &at, "the embedded store");
                    assert!(
                        scylla_vars(&env).is_empty(),
                        "{at}: ScyllaDB settings without the scylla backend"
                    );
                }
                "scylla" => {
                    assert!(!claimed, "{at}: a volume claim nothing uses");
                    let scylla = scylla_vars(&env);
                    for key in ["NODES", "KEYSPACE", "LOCAL_DATACENTER"] {
                        assert!(
                            scylla.contains_key(&format!("WARBLE_STORE__SCYLLA__{key}")),
                            "{at}: WARBLE_STORE__SCYLLA__{key} is not set"
                        );
                    }
                    // The cluster, keyspace and credentials tweet-svc uses.
                    let tweet = set.workload("tweet-svc");
                    if env_value(set, &tweet, "WARBLE_STORE__BACKEND").as_deref() == Some("scylla")
                    {
                        assert_eq!(
                            scylla,
                            scylla_vars(&env_by_name(set, &tweet)),
                            "{at}: ScyllaDB settings differ from tweet-svc's"
                        );
                    }
                }
                other => panic!("{at}: unknown store backend {other}"),
            }
        }
        assert_eq!(
            backends,
            BTreeSet::from(["embedded".to_owned(), "scylla".to_owned()]),
            "the value sets cover both notify-svc stores"
        );
        let defaults = set_named(report, "default");
        assert_eq!(
            env_value(
                defaults,
                &defaults.workload("notify-svc"),
                "WARBLE_STORE__BACKEND"
            )
            .as_deref(),
            Some("scylla"),
            "the defaults describe production: notify-svc on ScyllaDB, autoscaled"
        );
    });
}

#[test]
fn every_consumer_has_its_own_group_and_a_name_per_pod() {
    with_report(|report| {
        for set in &report.value_sets {
            let mut groups = BTreeMap::new();
            let mut key_sets = BTreeMap::new();
            for component in CONSUMERS {
                let workload = set.workload(component);
                let at = format!("[{}] {}", set.name, workload.name);
                let env = env_by_name(set, &workload);
                assert_eq!(
                    env.get("WARBLE_CONSUMER__NAME").map(|var| &var.source),
                    Some(&EnvSource::Field("metadata.name".to_owned())),
                    "{at}: every replica must consume under its own pod name"
                );
                let group = env
                    .get("WARBLE_CONSUMER__GROUP")
                    .and_then(|var| var.value.clone())
                    .unwrap_or_else(|| panic!("{at}: WARBLE_CONSUMER__GROUP is not set"));
                if let Some(other) = groups.insert(group.clone(), component) {
                    panic!(
                        "{at}: shares consumer group {group} with {other}, so each would see only part of the events"
                    );
                }
                key_sets.insert(
                    component,
                    env.keys()
                        .filter(|name| name.starts_with("WARBLE_CONSUMER__"))
                        .cloned()
                        .collect::<BTreeSet<_>>(),
                );
            }
            for component in ["notify-svc", "media-svc"] {
                assert_eq!(
                    key_sets[component], key_sets["fanout-svc"],
                    "[{}] {component}'s consumer settings are fanout-svc's keys",
                    set.name
                );
            }
        }
        let defaults = set_named(report, "default");
        assert_eq!(
            env_value(
                defaults,
                &defaults.workload("notify-svc"),
                "WARBLE_CONSUMER__GROUP"
            )
            .as_deref(),
            Some("notify"),
            "notify-svc's default group"
        );
        assert_eq!(
            env_value(
                defaults,
                &defaults.workload("media-svc"),
                "WARBLE_CONSUMER__GROUP"
            )
            .as_deref(),
            Some("media"),
            "media-svc's default group (the service's own default)"
        );
        // Operators can be let in to call GetStatus, as for fanout-svc.
        let extra_peers = report.value_sets.iter().any(|set| {
            let notify = set.workload("notify-svc");
            set.object("NetworkPolicy", notify.name)
                .is_some_and(|policy| {
                    policy["spec"]["ingress"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|rule| rule["from"].as_array().into_iter().flatten())
                        .any(|peer| peer["namespaceSelector"].is_object())
                })
        });
        assert!(
            extra_peers,
            "no value set covers notifySvc.networkPolicy.extraFrom"
        );
    });
}

#[test]
fn optional_resources_follow_their_switches() {
    with_report(|report| {
        for set in &report.value_sets {
            for workload in set.workloads() {
                let at = format!("[{}] {}", set.name, workload.name);
                let hpas = set
                    .objects("HorizontalPodAutoscaler")
                    .filter(|hpa| hpa["spec"]["scaleTargetRef"]["name"] == workload.name)
                    .count();
                let fixed = workload.object["spec"]["replicas"].is_u64();
                assert!(
                    (hpas == 1) != fixed,
                    "{at}: either an HPA ({hpas}) or a fixed replica count ({fixed}), not both or neither"
                );
                let checksum = workload.pod_annotations()["checksum/config"]
                    .as_str()
                    .unwrap_or_default();
                assert!(
                    checksum.len() == 64 && checksum.chars().all(|c| c.is_ascii_hexdigit()),
                    "{at}: checksum/config annotation missing so config changes would not roll pods"
                );
            }
            for hpa in set.objects("HorizontalPodAutoscaler") {
                let target = &hpa["spec"]["scaleTargetRef"];
                assert!(
                    set.object(
                        target["kind"].as_str().unwrap_or_default(),
                        target["name"].as_str().unwrap_or_default()
                    )
                    .is_some(),
                    "[{}] HPA targets a missing workload: {target}",
                    set.name
                );
            }
            for pdb in set.objects("PodDisruptionBudget") {
                assert!(
                    set.workloads().iter().any(|workload| labels_match(
                        &pdb["spec"]["selector"]["matchLabels"],
                        &workload.object["spec"]["template"]["metadata"]["labels"]
                    )),
                    "[{}] PDB {} selects no workload",
                    set.name,
                    pdb["metadata"]["name"]
                );
            }
            let gateway = set.workload("gateway");
            for ingress in set.objects("Ingress") {
                for rule in ingress["spec"]["rules"].as_array().into_iter().flatten() {
                    for path in rule["http"]["paths"].as_array().into_iter().flatten() {
                        assert_eq!(
                            path["backend"]["service"]["name"], gateway.name,
                            "[{}] Ingress",
                            set.name
                        );
                        assert_eq!(
                            path["backend"]["service"]["port"]["name"], "http",
                            "[{}] Ingress",
                            set.name
                        );
                    }
                }
            }
            // The `helm test` hook queries the gateway.
            let test_pod = set
                .objects("Pod")
                .find(|pod| pod["metadata"]["annotations"]["helm.sh/hook"] == "test")
                .unwrap_or_else(|| panic!("[{}] no helm test hook", set.name));
            let script = test_pod["spec"]["containers"][0]["command"].to_string();
            assert!(
                script.contains("__typename")
                    && script.contains(&format!("http://{}:", gateway.name)),
                "[{}] the test hook does not query the gateway: {script}",
                set.name
            );
            let address = set
                .objects("Ingress")
                .next()
                .and_then(|ingress| ingress["spec"]["rules"][0]["host"].as_str())
                .unwrap_or(gateway.name);
            assert!(
                set.notes.contains(address) && set.notes.contains("helm test"),
                "[{}] NOTES.txt does not say how to reach the gateway ({address}):\n{}",
                set.name,
                set.notes
            );
        }

        // The value sets cover every switch the issue names.
        let sets = &report.value_sets;
        let covered = |what: &str, found: bool| assert!(found, "no value set covers {what}");
        covered(
            "an Ingress",
            sets.iter()
                .any(|set| set.objects("Ingress").next().is_some()),
        );
        for kind in ["ServiceMonitor", "PrometheusRule"] {
            covered(
                kind,
                sets.iter().any(|set| set.objects(kind).next().is_some()),
            );
        }
        covered(
            "the Grafana dashboard",
            sets.iter().any(|set| dashboard(set).is_some()),
        );
        covered(
            "autoscaling off",
            sets.iter()
                .any(|set| set.objects("HorizontalPodAutoscaler").next().is_none()),
        );
        let redis_modes: BTreeSet<_> = sets
            .iter()
            .filter_map(|set| env_value(set, &set.workload("fanout-svc"), "WARBLE_REDIS__MODE"))
            .collect();
        assert_eq!(
            redis_modes,
            BTreeSet::from(["cluster".to_owned(), "single".to_owned()]),
            "single-node Redis and Redis Cluster"
        );
        let defaults = set_named(report, "default");
        assert!(
            defaults.objects("Ingress").next().is_none(),
            "no Ingress by default"
        );
        // The Prometheus Operator's kinds need its CRDs, and the dashboard
        // Grafana's sidecar: none of them unless asked for.
        for kind in ["ServiceMonitor", "PrometheusRule"] {
            assert_eq!(defaults.objects(kind).count(), 0, "no {kind} by default");
        }
        assert!(dashboard(defaults).is_none(), "no dashboard by default");
        // Every workload is autoscaled by default but search-svc, whose new
        // replicas serve only after a full backfill.
        let autoscaled: BTreeSet<&str> = defaults
            .workloads()
            .iter()
            .filter(|workload| {
                defaults
                    .objects("HorizontalPodAutoscaler")
                    .any(|hpa| hpa["spec"]["scaleTargetRef"]["name"] == workload.name)
            })
            .map(|workload| workload.component)
            .collect();
        assert_eq!(
            autoscaled,
            COMPONENTS
                .into_iter()
                .filter(|component| *component != "search-svc")
                .collect(),
            "the default HorizontalPodAutoscalers"
        );
        assert_eq!(
            defaults.objects("HorizontalPodAutoscaler").count(),
            COMPONENTS.len() - 1
        );
        assert_eq!(
            defaults.objects("PodDisruptionBudget").count(),
            COMPONENTS.len()
        );
    });
}

#[test]
fn config_changes_roll_the_pods() {
    with_report(|report| {
        // (component, checksum) -> the config it was computed from, across
        // every value set: two different configs must never share a checksum.
        // (Secret values are left out: a generated HS256 secret differs on
        // every render but deliberately does not roll the gateway.)
        let mut configs: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
        for set in &report.value_sets {
            for workload in set.workloads() {
                let config = env_by_name(set, &workload)
                    .into_values()
                    .map(|var| match var.source {
                        EnvSource::Secret { .. } => format!("{} from {:?}", var.name, var.source),
                        // The ConfigMap's name follows the release, not the config.
                        EnvSource::ConfigMap(_) => {
                            format!("{}={:?} from a ConfigMap", var.name, var.value)
                        }
                        source => format!("{}={:?} from {source:?}", var.name, var.value),
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                let checksum = workload.pod_annotations()["checksum/config"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let key = (workload.component.to_owned(), checksum);
                if let Some((other_set, other)) =
                    configs.insert(key, (set.name.clone(), config.clone()))
                {
                    assert_eq!(
                        other, config,
                        "{}: value sets {other_set} and {} configure it differently but share a \
                         checksum/config, so the change would not roll its pods",
                        workload.component, set.name
                    );
                }
            }
        }
    });
}

#[test]
fn bad_values_are_refused_with_a_readable_error() {
    // file -> (refused by the schema?, fragments the message must contain)
    let expected = BTreeMap::from([
        (
            "redis-mode.yaml",
            (true, vec!["/redis/mode", "'single', 'cluster'"]),
        ),
        (
            "embedded-replicas.yaml",
            (
                true,
                vec!["/tweetSvc/replicas", "/tweetSvc/autoscaling/enabled"],
            ),
        ),
        (
            "typo.yaml",
            (true, vec!["/gateway", "'replicaCount' not allowed"]),
        ),
        (
            "short-hs256-secret.yaml",
            (true, vec!["/gateway/auth/hs256Secret", "want 32"]),
        ),
        (
            "no-token-audience.yaml",
            (true, vec!["/gateway/auth/audience", "minLength"]),
        ),
        (
            "cors-origin-with-path.yaml",
            (
                true,
                vec!["/gateway/corsAllowedOrigins/0", "does not match pattern"],
            ),
        ),
        (
            "notify-embedded-replicas.yaml",
            (
                true,
                vec!["/notifySvc/replicas", "/notifySvc/autoscaling/enabled"],
            ),
        ),
        (
            "search-writer-heap.yaml",
            (
                false,
                vec!["searchSvc.index.writerHeapMb (30)", "at least 60"],
            ),
        ),
        (
            "shared-consumer-group.yaml",
            (
                false,
                vec!["notifySvc.consumer.group and consumer.group", "\"fanout\""],
            ),
        ),
        (
            "overlapping-worker-ids.yaml",
            (false, vec!["worker ids overlap", "graph-svc 4..11"]),
        ),
        (
            "cache-redis-without-url.yaml",
            (false, vec!["cacheRedis.url"]),
        ),
        (
            "mesh-tls-cert-manager-without-issuer.yaml",
            (false, vec!["meshTls.certManager.issuerRef.name"]),
        ),
        (
            "grace-period.yaml",
            (
                false,
                vec!["terminationGracePeriodSeconds (30) must be greater"],
            ),
        ),
        (
            "media-filesystem-replicas.yaml",
            (
                true,
                vec![
                    "/mediaSvc/replicas",
                    "/mediaSvc/autoscaling/enabled",
                    "/mediaSvc/persistence/enabled",
                    "/mediaSvc/urls/mode",
                ],
            ),
        ),
        (
            "media-no-bucket.yaml",
            (true, vec!["/mediaSvc/blobs/s3/bucket"]),
        ),
        (
            "media-plain-http.yaml",
            (true, vec!["/mediaSvc/blobs/s3/allowHttp", "must be true"]),
        ),
        (
            "media-half-credentials.yaml",
            (
                false,
                vec!["mediaSvc.blobs.s3.accessKeyId and mediaSvc.blobs.s3.secretAccessKey"],
            ),
        ),
        (
            "media-overlapping-worker-ids.yaml",
            (
                false,
                vec![
                    "worker ids overlap",
                    "graph-svc uses 512..519",
                    "media-svc 515..520",
                ],
            ),
        ),
        (
            "media-shared-consumer-group.yaml",
            (
                false,
                vec![
                    "mediaSvc.consumer.group and notifySvc.consumer.group",
                    "\"notify\"",
                ],
            ),
        ),
        (
            "gateway-service-monitor-moved.yaml",
            (
                false,
                vec!["gateway.metrics.serviceMonitor has moved to metrics.serviceMonitor"],
            ),
        ),
    ]);
    with_report(|report| {
        let files: BTreeSet<_> = report
            .bad_values
            .iter()
            .map(|bad| bad.file.as_str())
            .collect();
        assert_eq!(
            files,
            expected.keys().copied().collect(),
            "every bad values file has an expectation"
        );
        for bad in &report.bad_values {
            let (by_schema, fragments) = &expected[bad.file.as_str()];
            let message = if *by_schema {
                bad.schema_error.as_deref().unwrap_or_else(|| {
                    panic!(
                        "{}: the schema accepted it (render error: {:?})",
                        bad.file, bad.render_error
                    )
                })
            } else {
                assert!(
                    bad.schema_error.is_none(),
                    "{}: {:?}",
                    bad.file,
                    bad.schema_error
                );
                bad.render_error
                    .as_deref()
                    .unwrap_or_else(|| panic!("{}: the chart rendered it", bad.file))
            };
            for fragment in fragments {
                assert!(
                    message.contains(fragment),
                    "{}: the error does not mention {fragment:?}:\n{message}",
                    bad.file
                );
            }
        }
    });
}

/// Bytes in a Kubernetes memory quantity such as `512Mi`, `1Gi`, `2G` or
/// `1048576` (the forms a values file would use for memory).
fn memory_bytes(quantity: &Value) -> u64 {
    if let Some(bytes) = quantity.as_u64() {
        return bytes;
    }
    let text = quantity
        .as_str()
        .unwrap_or_else(|| panic!("memory quantity {quantity}"));
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .unwrap_or_else(|error| panic!("memory quantity {text}: {error}"));
    let scale: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        other => panic!("memory quantity {text}: unit {other} not handled here"),
    };
    number * scale
}

#[test]
fn search_svc_keeps_a_full_index_per_replica_on_its_own_volume() {
    // Beyond the writer heap, what a search-svc process needs: the searchers'
    // caches, the gRPC server, the Redis and gRPC clients.
    const HEADROOM: u64 = 256 << 20;
    with_report(|report| {
        let (mut claimed_sets, mut ephemeral_sets, mut autoscaled_sets) = (0, 0, 0);
        for set in &report.value_sets {
            let search = set.workload("search-svc");
            let at = format!("[{}] {}", set.name, search.name);
            assert_eq!(search.kind, "StatefulSet", "{at}");
            let env = env_by_name(set, &search);
            let value = |name: &str| env.get(name).and_then(|var| var.value.clone());

            // Stable pod names through a governing headless Service; the
            // gateway calls the ordinary one (checked with the wiring).
            let governing = search.object["spec"]["serviceName"]
                .as_str()
                .unwrap_or_else(|| panic!("{at}: no serviceName"));
            let headless = set
                .object("Service", governing)
                .unwrap_or_else(|| panic!("{at}: no governing Service {governing}"));
            assert_eq!(headless["spec"]["clusterIP"], "None", "{at}: {governing}");
            assert!(
                labels_match(
                    &headless["spec"]["selector"],
                    &search.object["spec"]["template"]["metadata"]["labels"]
                ),
                "{at}: {governing} does not select the pods"
            );
            let service = set.object("Service", search.name).expect("search Service");
            assert_eq!(service["spec"]["type"], "ClusterIP", "{at}");
            assert_eq!(service["spec"]["ports"][0]["port"], 50056, "{at}");

            // `data_dir` is a volume of the pod's own: a claim per ordinal, or
            // (persistence off) an emptyDir.
            let data_dir =
                value("WARBLE_DATA_DIR").unwrap_or_else(|| panic!("{at}: no WARBLE_DATA_DIR"));
            let volume = container(set, &search)["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|mount| mount["mountPath"] == data_dir.as_str())
                .and_then(|mount| mount["name"].as_str())
                .unwrap_or_else(|| panic!("{at}: {data_dir} is not on a mounted volume"));
            let claim = search.object["spec"]["volumeClaimTemplates"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|claim| claim["metadata"]["name"] == volume);
            let pod_volume = search.pod_spec()["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|candidate| candidate["name"] == volume);
            match (claim, pod_volume) {
                (Some(claim), None) => {
                    claimed_sets += 1;
                    assert_eq!(
                        claim["spec"]["accessModes"],
                        serde_json::json!(["ReadWriteOnce"]),
                        "{at}: each replica writes its own index"
                    );
                    let size = &claim["spec"]["resources"]["requests"]["storage"];
                    let class = &claim["spec"]["storageClassName"];
                    match set.name.as_str() {
                        "default" => {
                            assert_eq!(size, "10Gi", "{at}: default claim size");
                            assert!(class.is_null(), "{at}: the cluster's default class");
                        }
                        "no-autoscaling-values" => {
                            assert_eq!(size, "50Gi", "{at}: searchSvc.persistence.size");
                            assert_eq!(
                                class, "fast-ssd",
                                "{at}: searchSvc.persistence.storageClassName"
                            );
                        }
                        _ => assert!(size.is_string(), "{at}: claim size"),
                    }
                }
                (None, Some(pod_volume)) => {
                    ephemeral_sets += 1;
                    assert!(
                        pod_volume["emptyDir"].is_object(),
                        "{at}: the index volume without persistence: {pod_volume}"
                    );
                    assert!(
                        set.notes.contains("searchSvc.persistence.enabled is false"),
                        "{at}: NOTES.txt does not warn that every start is a full backfill"
                    );
                }
                (claim, pod_volume) => panic!(
                    "{at}: volume {volume} should be a claim or a pod volume, not {claim:?} and {pod_volume:?}"
                ),
            }

            // Readiness waits for the index to catch up; a long backfill must
            // never fail startup or liveness, which ask about the whole server.
            let probe = |name: &str| container(set, &search)[name]["grpc"]["service"].clone();
            assert_eq!(probe("readinessProbe"), SEARCH_SERVICE, "{at}: readiness");
            assert_eq!(probe("livenessProbe"), "", "{at}: liveness");
            assert_eq!(probe("startupProbe"), "", "{at}: startup");

            // The replica's name (its pin in the stream) is HOSTNAME, the pod's
            // name: the chart must neither set it nor change the hostname.
            assert!(
                !env.contains_key("WARBLE_INDEX__REPLICA"),
                "{at}: index.replica is set; HOSTNAME (the pod's name) should name the replica"
            );
            for field in ["hostname", "setHostnameAsFQDN", "hostNetwork", "subdomain"] {
                assert!(
                    search.pod_spec()[field].is_null(),
                    "{at}: pod spec sets {field}, so HOSTNAME would not be the pod's name"
                );
            }

            // Trend counts are shared by every replica: only Redis can do that.
            assert_eq!(
                value("WARBLE_TRENDS__BACKEND").as_deref(),
                Some("redis"),
                "{at}: trends.backend"
            );
            for name in [
                "WARBLE_TRENDS__KEY_PREFIX",
                "WARBLE_RETENTION__REGISTRY_KEY",
                "WARBLE_RETENTION__REPLICA_TIMEOUT_SECS",
                "WARBLE_INDEX__BATCH_EVENTS",
            ] {
                assert!(value(name).is_some(), "{at}: {name} is not set");
            }

            // tantivy's writer heap fits in the memory limit.
            let heap_mb: u64 = value("WARBLE_INDEX__WRITER_HEAP_MB")
                .unwrap_or_else(|| panic!("{at}: no WARBLE_INDEX__WRITER_HEAP_MB"))
                .parse()
                .expect("writer heap");
            let limit = memory_bytes(&container(set, &search)["resources"]["limits"]["memory"]);
            assert!(
                (heap_mb << 20) + HEADROOM <= limit,
                "{at}: a {heap_mb} MiB writer heap plus {} MiB leaves no room in a {} MiB limit",
                HEADROOM >> 20,
                limit >> 20
            );

            if set.objects("HorizontalPodAutoscaler").any(|hpa| {
                hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
                    && hpa["spec"]["scaleTargetRef"]["name"] == search.name
            }) {
                autoscaled_sets += 1;
            }
        }
        assert!(claimed_sets >= 2, "value sets with index claims");
        assert!(
            ephemeral_sets >= 1,
            "no value set covers searchSvc.persistence.enabled=false"
        );
        assert!(
            autoscaled_sets >= 1,
            "no value set covers searchSvc.autoscaling"
        );
        let defaults = set_named(report, "default");
        let search = defaults.workload("search-svc");
        assert_eq!(
            search.object["spec"]["replicas"], 2,
            "two replicas by default"
        );
        assert_eq!(
            env_value(defaults, &search, "WARBLE_INDEX__WRITER_HEAP_MB").as_deref(),
            Some("64"),
            "the service's own default writer heap"
        );
    });
}

#[test]
fn media_svc_blobs_credentials_and_urls_follow_its_mode() {
    with_report(|report| {
        let mut backends = BTreeSet::new();
        let mut url_modes = BTreeSet::new();
        let mut key_sources = BTreeSet::new();
        for set in &report.value_sets {
            let media = set.workload("media-svc");
            let at = format!("[{}] {}", set.name, media.name);
            let env = env_by_name(set, &media);
            let value = |name: &str| env.get(name).and_then(|var| var.value.clone());
            let backend =
                value("WARBLE_BLOBS__BACKEND").unwrap_or_else(|| panic!("{at}: no blobs backend"));
            backends.insert(backend.clone());

            let mode = value("WARBLE_URLS__MODE").unwrap_or_else(|| panic!("{at}: no urls.mode"));
            url_modes.insert(mode.clone());
            match mode.as_str() {
                "base" => {
                    let base = value("WARBLE_URLS__BASE_URL")
                        .unwrap_or_else(|| panic!("{at}: base URLs without urls.base_url"));
                    assert!(
                        !base.is_empty() && !base.ends_with('/'),
                        "{at}: urls.base_url {base:?}"
                    );
                }
                "presigned" => assert_eq!(backend, "s3", "{at}: presigned URLs need a bucket"),
                other => panic!("{at}: unknown urls.mode {other}"),
            }

            // `data_dir` is the pod's data volume; claimed only when the files are on it.
            let data_dir = value("WARBLE_DATA_DIR")
                .unwrap_or_else(|| panic!("{at}: WARBLE_DATA_DIR is not set"));
            let claimed = data_dir_is_claimed(set, &media, &data_dir, &at);
            let s3_vars: Vec<&String> = env
                .keys()
                .filter(|name| name.starts_with("WARBLE_BLOBS__S3__"))
                .collect();
            match backend.as_str() {
                "filesystem" => {
                    // One pod's volume holds the only copy of every file.
                    set.assert_one_pod_on_a_claim(&media, claimed, &at, "filesystem mode");
                    assert!(
                        s3_vars.is_empty(),
                        "{at}: S3 settings in filesystem mode: {s3_vars:?}"
                    );
                    assert!(
                        set.notes.contains("/media route"),
                        "{at}: NOTES.txt does not say where filesystem-mode URLs must lead"
                    );
                }
                "s3" => {
                    assert!(!claimed, "{at}: a volume claim nothing uses");
                    for name in ["WARBLE_BLOBS__S3__BUCKET", "WARBLE_BLOBS__S3__REGION"] {
                        assert!(
                            value(name).is_some_and(|value| !value.is_empty()),
                            "{at}: {name} is not set"
                        );
                    }
                    let [key_id, secret_key] = S3_KEY_PAIR.map(|name| env.get(name));
                    match (key_id, secret_key) {
                        // The node's instance role.
                        (None, None) => {
                            key_sources.insert("instance role");
                        }
                        (Some(key_id), Some(secret_key)) => {
                            let secret_of = |var: &EnvVar| match &var.source {
                                EnvSource::Secret { name, in_chart, .. } => {
                                    (name.clone(), *in_chart)
                                }
                                source => panic!(
                                    "{at}: {} does not come from a Secret but {source:?}",
                                    var.name
                                ),
                            };
                            let (name, in_chart) = secret_of(key_id);
                            assert_eq!(
                                secret_of(secret_key),
                                (name.clone(), in_chart),
                                "{at}: the key pair comes from two Secrets"
                            );
                            key_sources.insert(if in_chart {
                                "the chart's Secret"
                            } else {
                                "an existing Secret"
                            });
                        }
                        pair => panic!("{at}: half a key pair: {pair:?}"),
                    }
                }
                other => panic!("{at}: unknown blobs backend {other}"),
            }

            // The gateway lets through every file media-svc would take, so
            // media-svc is the one that names the reason for a refusal.
            let limit = |name: &str| -> u64 {
                value(name)
                    .unwrap_or_else(|| panic!("{at}: {name} is not set"))
                    .parse()
                    .unwrap_or_else(|error| panic!("{at}: {name}: {error}"))
            };
            let largest = limit("WARBLE_LIMITS__MAX_IMAGE_BYTES")
                .max(limit("WARBLE_LIMITS__MAX_VIDEO_BYTES"));
            let upload: u64 = env_value(
                set,
                &set.workload("gateway"),
                "WARBLE_LIMITS__MAX_UPLOAD_BYTES",
            )
            .unwrap_or_else(|| panic!("[{}] the gateway has no upload limit", set.name))
            .parse()
            .expect("upload limit");
            assert!(
                upload >= largest + (1 << 20),
                "[{}] the gateway refuses uploads over {upload} bytes, below media-svc's {largest}",
                set.name
            );
        }
        assert_eq!(
            backends,
            BTreeSet::from(["filesystem".to_owned(), "s3".to_owned()]),
            "the value sets cover both blob backends"
        );
        assert_eq!(
            url_modes,
            BTreeSet::from(["base".to_owned(), "presigned".to_owned()]),
            "the value sets cover both URL modes"
        );
        assert_eq!(
            key_sources,
            BTreeSet::from(["instance role", "the chart's Secret", "an existing Secret"]),
            "the value sets cover every source of the S3 key pair"
        );

        // The defaults describe production: a bucket, presigned URLs, autoscaled.
        let defaults = set_named(report, "default");
        let media = defaults.workload("media-svc");
        let value = |name: &str| env_value(defaults, &media, name);
        assert_eq!(value("WARBLE_BLOBS__BACKEND").as_deref(), Some("s3"));
        assert_eq!(value("WARBLE_URLS__MODE").as_deref(), Some("presigned"));
        assert!(defaults.max_pods(&media) > 1, "several replicas by default");
        assert_eq!(
            env_value(
                defaults,
                &defaults.workload("gateway"),
                "WARBLE_LIMITS__MAX_UPLOAD_BYTES"
            )
            .as_deref(),
            Some("68222976"),
            "with the default limits, the gateway's own default upload limit"
        );

        // Existing Secrets are referenced by the names and keys given.
        let expected = [
            (
                "redis-cluster-values",
                "warble-media",
                ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
            ),
            (
                "no-autoscaling-values",
                "warble-r2",
                ["access-key-id", "secret-access-key"],
            ),
        ];
        for (set_name, secret, keys) in expected {
            let set = set_named(report, set_name);
            let env = env_by_name(set, &set.workload("media-svc"));
            for (name, key) in S3_KEY_PAIR.into_iter().zip(keys) {
                assert_eq!(
                    env.get(name).map(|var| var.source.clone()),
                    Some(EnvSource::Secret {
                        name: secret.to_owned(),
                        key: key.to_owned(),
                        in_chart: false
                    }),
                    "[{set_name}] {name}"
                );
            }
        }
    });
}

#[test]
fn credentials_given_in_values_appear_only_in_the_charts_secret() {
    with_report(|report| {
        let mut checked = 0;
        for set in &report.value_sets {
            for workload in set.workloads() {
                for var in env_by_name(set, &workload).into_values() {
                    let EnvSource::Secret {
                        name: secret,
                        in_chart: true,
                        ..
                    } = &var.source
                    else {
                        continue;
                    };
                    let value = var.value.clone().expect("a value from the chart's Secret");
                    if S3_KEY_PAIR.contains(&var.name.as_str()) {
                        checked += 1;
                    }
                    for object in set.all_objects() {
                        let is_the_secret = object["kind"] == "Secret"
                            && object["metadata"]["name"] == secret.as_str();
                        assert!(
                            is_the_secret || !object.to_string().contains(&value),
                            "[{}] {}'s {} is written out in {} {}",
                            set.name,
                            workload.name,
                            var.name,
                            object["kind"],
                            object["metadata"]["name"]
                        );
                    }
                    assert!(
                        !set.notes.contains(&value),
                        "[{}] NOTES.txt prints {}",
                        set.name,
                        var.name
                    );
                }
            }
        }
        assert!(
            checked >= 2,
            "no value set gives media-svc's S3 key pair in values"
        );
    });
}

// The closure's error type is figment's, which clippy finds large.
#[allow(clippy::result_large_err)]
#[test]
fn media_svc_redacts_its_s3_key_pair() {
    const SENTINEL: &str = "chart-test-sentinel-0123456789";
    let mut loaded = None;
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("WARBLE_BLOBS__BACKEND", "s3");
        jail.set_env("WARBLE_BLOBS__S3__BUCKET", "media");
        for name in S3_KEY_PAIR {
            jail.set_env(name, SENTINEL);
        }
        loaded =
            Some(load::<warble_media_svc::MediaSvcConfig>(None).map_err(|error| error.to_string()));
        Ok(())
    });
    let config = loaded
        .expect("loaded")
        .unwrap_or_else(|error| panic!("media-svc refuses the key pair: {error}"));
    assert_eq!(config.blobs.s3.access_key_id.expose(), SENTINEL);
    assert_eq!(config.blobs.s3.secret_access_key.expose(), SENTINEL);
    let shown = warble_mesh::config::redacted_json(&config);
    assert!(
        !shown.contains(SENTINEL),
        "media-svc prints its S3 key pair: {shown}"
    );
}

#[test]
fn mutual_tls_mounts_each_components_certificate_and_cert_manager_issues_it() {
    with_report(|report| {
        for set in &report.value_sets {
            let on = set.name.contains("mesh-tls");
            for workload in set.workloads() {
                let at = format!("[{}] {}", set.name, workload.name);
                assert_eq!(mutual_tls(set, &workload), on, "{at}: mutual TLS switch");
                let pod = &workload.object["spec"]["template"]["spec"];
                let volume = pod["volumes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|volume| volume["name"] == "mesh-tls");
                let mounted = container(set, &workload)["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|mount| mount["name"] == "mesh-tls" && mount["mountPath"] == MESH_TLS_DIR);
                if !on {
                    assert!(
                        volume.is_none() && !mounted,
                        "{at}: a certificate with TLS off"
                    );
                    continue;
                }
                assert!(
                    mounted,
                    "{at}: the certificate is not mounted at {MESH_TLS_DIR}"
                );
                let secret = volume.expect("a mesh-tls volume")["secret"]["secretName"]
                    .as_str()
                    .expect("a Secret volume");
                // cert-manager issues exactly that Secret, for the names the
                // callers dial and the identity the peer rules name.
                let certificate = set
                    .objects("Certificate")
                    .find(|certificate| certificate["spec"]["secretName"] == secret)
                    .unwrap_or_else(|| panic!("{at}: no Certificate writes {secret}"));
                let dns: Vec<&str> = certificate["spec"]["dnsNames"]
                    .as_array()
                    .expect("dnsNames")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                assert!(
                    dns.contains(&workload.name),
                    "{at}: {dns:?} lacks the Service name"
                );
                assert_eq!(
                    certificate["spec"]["uris"],
                    serde_json::json!([format!("spiffe://warble/{}", workload.component)]),
                    "{at}: the identity"
                );
                let usages = &certificate["spec"]["usages"];
                for usage in ["server auth", "client auth"] {
                    assert!(
                        usages
                            .as_array()
                            .is_some_and(|all| all.iter().any(|u| u == usage)),
                        "{at}: {usage} missing from {usages}"
                    );
                }
                assert_eq!(
                    certificate["spec"]["issuerRef"]["name"], "warble-mesh-ca",
                    "{at}"
                );
            }
            // Every address a service is given names a host its callee's
            // certificate covers.
            for workload in set.workloads() {
                for (name, var) in env_by_name(set, &workload) {
                    let (Some(addr), true) = (var.value, on && name.ends_with("_SERVICE_ADDR"))
                    else {
                        continue;
                    };
                    let host = addr
                        .rsplit_once(':')
                        .map_or(addr.as_str(), |(host, _)| host);
                    assert!(
                        set.objects("Certificate").any(|certificate| {
                            certificate["spec"]["dnsNames"]
                                .as_array()
                                .is_some_and(|names| names.iter().any(|dns| dns == host))
                        }),
                        "[{}] {}: no certificate covers {host} ({name})",
                        set.name,
                        workload.name
                    );
                }
            }
            if on {
                let search = set
                    .workloads()
                    .into_iter()
                    .find(|workload| workload.component == "search-svc")
                    .expect("search-svc");
                assert_eq!(
                    env_value(set, &search, "WARBLE_SERVER__ALLOW_PEERS").as_deref(),
                    Some("warble.search.v1.SearchService/*=gateway; *=*"),
                    "meshTls.allowPeers reaches the service"
                );
            } else {
                assert_eq!(set.objects("Certificate").count(), 0, "[{}]", set.name);
            }
        }
    });
}

#[test]
fn the_timeline_cache_can_have_its_own_redis() {
    with_report(|report| {
        for set in &report.value_sets {
            let separate = set.name.contains("cache-redis");
            let workload = |component: &str| {
                set.workloads()
                    .into_iter()
                    .find(|workload| workload.component == component)
                    .expect("the workload")
            };
            let (timeline, fanout) = (workload("timeline-svc"), workload("fanout-svc"));
            let events = env_value(set, &fanout, "WARBLE_REDIS__URL");
            let cache = env_value(set, &timeline, "WARBLE_REDIS__URL");
            if separate {
                let own = Some("redis://warble-cache-redis-master:6379/0".to_owned());
                assert_eq!(
                    cache, own,
                    "[{}] timeline-svc reads the cache's Redis",
                    set.name
                );
                assert_eq!(
                    env_value(set, &fanout, "WARBLE_TIMELINE_CACHE__SEPARATE").as_deref(),
                    Some("true")
                );
                assert_eq!(
                    env_value(set, &fanout, "WARBLE_TIMELINE_CACHE__REDIS__URL"),
                    own,
                    "[{}] fan-out writes where timeline-svc reads",
                    set.name
                );
                assert_ne!(events, cache, "[{}] the event log stays apart", set.name);
                let password = &env_by_name(set, &timeline)["WARBLE_REDIS__PASSWORD"];
                assert!(
                    matches!(
                        &password.source,
                        EnvSource::Secret {
                            in_chart: false,
                            ..
                        }
                    ),
                    "[{}] the cache's password comes from its own Secret: {:?}",
                    set.name,
                    password.source
                );
            } else {
                assert_eq!(cache, events, "[{}] one Redis for both roles", set.name);
                assert_eq!(
                    env_value(set, &fanout, "WARBLE_TIMELINE_CACHE__SEPARATE"),
                    None
                );
            }
        }
    });
}

/// Every series the services and the gateway export (README "Metrics and
/// alerts"), by base name: the only names a dashboard panel or an alert may
/// query, so a renamed metric cannot leave an empty panel or a silent alert.
const METRICS: [&str; 16] = [
    "warble_grpc_server_requests_total",
    "warble_grpc_server_request_duration_seconds",
    "warble_grpc_server_requests_shed_total",
    "warble_graphql_requests_total",
    "warble_graphql_request_duration_seconds",
    "warble_gateway_requests_shed_total",
    "warble_gateway_in_flight_limit",
    "warble_gateway_downstream_calls_total",
    "warble_consumer_lag_events",
    "warble_consumer_oldest_unacked_age_seconds",
    "warble_consumer_events_processed_total",
    "warble_consumer_retries_total",
    "warble_consumer_dead_letters_total",
    "warble_consumer_groups_vanished_total",
    "warble_timeline_cache_requests_total",
    "warble_timeline_rebuilds_total",
];

/// The histograms among [`METRICS`]: their series are `<name>_bucket`,
/// `<name>_sum` and `<name>_count`.
const HISTOGRAMS: [&str; 2] = [
    "warble_grpc_server_request_duration_seconds",
    "warble_graphql_request_duration_seconds",
];

/// The namespace `render_chart.py` installs the release in.
const NAMESPACE: &str = "warble";

/// The alerts the PrometheusRule carries.
const ALERTS: [&str; 7] = [
    "WarbleConsumerLagging",
    "WarbleDeadLetters",
    "WarbleConsumerGroupVanished",
    "WarbleGrpcErrorRatio",
    "WarbleGraphqlErrorRatio",
    "WarbleGrpcLatencyHigh",
    "WarbleGraphqlLatencyHigh",
];

/// The [`METRICS`] entry a series name belongs to, if any.
fn metric_of(series: &str) -> Option<&'static str> {
    METRICS
        .into_iter()
        .find(|metric| *metric == series)
        .or_else(|| {
            HISTOGRAMS.into_iter().find(|histogram| {
                series
                    .strip_prefix(histogram)
                    .is_some_and(|suffix| ["_bucket", "_sum", "_count"].contains(&suffix))
            })
        })
}

/// The metrics a PromQL expression queries. Asserts that it queries at
/// least one, that every `warble_*` series in it is a known metric's, and
/// that each selector starts with `{<scope>` (the release's namespace).
fn queried_metrics(expr: &str, scope: &str, at: &str) -> BTreeSet<&'static str> {
    let mut metrics = BTreeSet::new();
    for (start, _) in expr.match_indices("warble_") {
        let part_of_a_longer_name = expr[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if part_of_a_longer_name {
            continue;
        }
        let rest = &expr[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let (series, after) = rest.split_at(end);
        let metric = metric_of(series)
            .unwrap_or_else(|| panic!("{at}: queries {series}, which nothing exports: {expr}"));
        assert!(
            after.starts_with(&format!("{{{scope}")),
            "{at}: {series} is not scoped to {scope}: {expr}"
        );
        metrics.insert(metric);
    }
    assert!(
        !metrics.is_empty(),
        "{at}: queries no Warble metric: {expr}"
    );
    metrics
}

/// The Grafana dashboard's ConfigMap, when the value set renders it.
fn dashboard(set: &ValueSet) -> Option<&Value> {
    set.objects("ConfigMap")
        .find(|map| map["data"]["warble.json"].is_string())
}

/// The port of a container or Service named `name`.
fn named_port<'a>(ports: &'a Value, name: &str) -> Option<&'a Value> {
    ports
        .as_array()
        .into_iter()
        .flatten()
        .find(|port| port["name"] == name)
}

#[test]
fn every_component_is_scraped_where_it_serves_metrics() {
    with_report(|report| {
        let mut monitored = 0;
        for set in &report.value_sets {
            let monitors: Vec<_> = set.objects("ServiceMonitor").collect();
            if !monitors.is_empty() {
                monitored += 1;
                assert_eq!(
                    monitors.len(),
                    COMPONENTS.len(),
                    "[{}] a ServiceMonitor per component",
                    set.name
                );
            }
            for workload in set.workloads() {
                let at = format!("[{}] {}", set.name, workload.name);
                let service = set
                    .object("Service", workload.name)
                    .unwrap_or_else(|| panic!("{at}: no Service"));
                let listen = env_value(set, &workload, "WARBLE_SERVER__METRICS_LISTEN_ADDR");
                let scraped_port = if workload.component == "gateway" {
                    // /metrics is on its HTTP listener.
                    assert_eq!(listen, None, "{at}: the gateway has no metrics listener");
                    "http"
                } else {
                    // The service listens where its pods and Service say the
                    // metrics are, and nowhere a caller's gRPC goes.
                    let port = named_port(&container(set, &workload)["ports"], "metrics")
                        .unwrap_or_else(|| panic!("{at}: no container port named metrics"));
                    assert_eq!(
                        listen,
                        Some(format!("0.0.0.0:{}", port["containerPort"])),
                        "{at}: WARBLE_SERVER__METRICS_LISTEN_ADDR"
                    );
                    let service_port = named_port(&service["spec"]["ports"], "metrics")
                        .unwrap_or_else(|| panic!("{at}: its Service has no metrics port"));
                    assert!(
                        service_port["targetPort"] == "metrics"
                            || service_port["targetPort"] == port["containerPort"],
                        "{at}: the Service's metrics port leads elsewhere: {service_port}"
                    );
                    "metrics"
                };
                if monitors.is_empty() {
                    continue;
                }
                let selecting: Vec<_> = monitors
                    .iter()
                    .filter(|monitor| {
                        labels_match(
                            &monitor["spec"]["selector"]["matchLabels"],
                            &service["metadata"]["labels"],
                        )
                    })
                    .collect();
                assert_eq!(selecting.len(), 1, "{at}: ServiceMonitors selecting it");
                let monitor = selecting[0];
                assert_eq!(
                    monitor["spec"]["namespaceSelector"]["matchNames"],
                    serde_json::json!([NAMESPACE]),
                    "{at}"
                );
                let endpoints = monitor["spec"]["endpoints"].as_array().expect("endpoints");
                assert_eq!(endpoints.len(), 1, "{at}: one endpoint");
                let endpoint = &endpoints[0];
                assert_eq!(endpoint["port"], scraped_port, "{at}: scraped port");
                assert_eq!(endpoint["path"], "/metrics", "{at}");
                assert_eq!(
                    endpoint["honorLabels"], true,
                    "{at}: the series' own `service` label must survive the scrape"
                );
                // Each pod is scraped once: of the Services the selector
                // matches (a StatefulSet's headless one too), only this one
                // has the port.
                let scraped: Vec<_> = set
                    .objects("Service")
                    .filter(|candidate| {
                        labels_match(
                            &monitor["spec"]["selector"]["matchLabels"],
                            &candidate["metadata"]["labels"],
                        ) && named_port(&candidate["spec"]["ports"], scraped_port).is_some()
                    })
                    .filter_map(|candidate| candidate["metadata"]["name"].as_str())
                    .collect();
                assert_eq!(scraped, [workload.name], "{at}: Services scraped");
                if set.name == "redis-cluster-values" {
                    assert_eq!(
                        monitor["metadata"]["labels"]["release"], "kube-prometheus-stack",
                        "{at}: metrics.serviceMonitor.labels"
                    );
                }
            }
        }
        assert!(monitored >= 1, "no value set renders the ServiceMonitors");
    });
}

#[test]
fn alerts_watch_lag_dead_letters_errors_and_p99_on_known_metrics() {
    // (value set, alert) -> what its values make of it: the threshold the
    // expression ends with, how long it must hold (`for`) and the severity.
    let expected = BTreeMap::from([
        (
            ("redis-cluster-values", "WarbleConsumerLagging"),
            ("> 300", Some("10m"), "warning"),
        ),
        (
            ("redis-cluster-values", "WarbleDeadLetters"),
            ("> 0", None, "warning"),
        ),
        (
            ("redis-cluster-values", "WarbleConsumerGroupVanished"),
            ("> 0", None, "critical"),
        ),
        (
            ("redis-cluster-values", "WarbleGrpcErrorRatio"),
            ("> 0.05", Some("10m"), "critical"),
        ),
        (
            ("redis-cluster-values", "WarbleGrpcLatencyHigh"),
            ("> 1", Some("10m"), "warning"),
        ),
        (
            ("redis-cluster-values", "WarbleGraphqlLatencyHigh"),
            ("> 2", Some("10m"), "warning"),
        ),
        (
            ("ingress-values", "WarbleConsumerLagging"),
            ("> 120", Some("5m"), "critical"),
        ),
        (
            ("ingress-values", "WarbleGrpcErrorRatio"),
            ("> 0.01", Some("5m"), "critical"),
        ),
        (
            ("ingress-values", "WarbleGrpcLatencyHigh"),
            ("> 0.5", Some("15m"), "warning"),
        ),
    ]);
    let scope = format!("namespace=\"{NAMESPACE}\"");
    with_report(|report| {
        let mut checked = BTreeSet::new();
        for set in &report.value_sets {
            let rules: Vec<_> = set.objects("PrometheusRule").collect();
            let Some(rule) = rules.first() else { continue };
            assert_eq!(rules.len(), 1, "[{}] one PrometheusRule", set.name);
            let mut alerts = BTreeMap::new();
            for group in rule["spec"]["groups"].as_array().expect("groups") {
                for alert in group["rules"].as_array().expect("rules") {
                    let name = alert["alert"].as_str().expect("alert name");
                    assert!(
                        alerts.insert(name, alert).is_none(),
                        "[{}] {name} twice",
                        set.name
                    );
                }
            }
            assert_eq!(
                alerts.keys().copied().collect::<BTreeSet<_>>(),
                BTreeSet::from(ALERTS),
                "[{}] the alerts",
                set.name
            );
            for (name, alert) in &alerts {
                let at = format!("[{}] {name}", set.name);
                let expr = alert["expr"].as_str().expect("expr");
                queried_metrics(expr, &scope, &at);
                let threshold = expr.rsplit_once("> ").map(|(_, value)| value.trim());
                assert!(
                    threshold.is_some_and(|value| value.parse::<f64>().is_ok()),
                    "{at}: no numeric threshold at the end of {expr}"
                );
                assert!(
                    alert["labels"]["severity"]
                        .as_str()
                        .is_some_and(|severity| !severity.is_empty()),
                    "{at}: no severity"
                );
                for annotation in ["summary", "description"] {
                    assert!(
                        alert["annotations"][annotation]
                            .as_str()
                            .is_some_and(|text| !text.trim().is_empty()),
                        "{at}: no {annotation}"
                    );
                }
                if let Some((suffix, hold, severity)) = expected.get(&(set.name.as_str(), *name)) {
                    assert!(
                        expr.ends_with(suffix),
                        "{at}: {expr} should end with {suffix}"
                    );
                    assert_eq!(alert["for"].as_str(), *hold, "{at}: for");
                    assert_eq!(alert["labels"]["severity"], *severity, "{at}: severity");
                    checked.insert((set.name.as_str(), *name));
                }
            }
            // Only server faults count against a service: a caller's
            // NOT_FOUND or INVALID_ARGUMENT is not the service failing.
            let grpc_errors = alerts["WarbleGrpcErrorRatio"]["expr"]
                .as_str()
                .expect("expr");
            for code in [
                "INTERNAL",
                "UNAVAILABLE",
                "UNKNOWN",
                "DEADLINE_EXCEEDED",
                "DATA_LOSS",
            ] {
                assert!(
                    grpc_errors.contains(code),
                    "[{}] {code} is not a server fault in {grpc_errors}",
                    set.name
                );
            }
            assert!(
                !grpc_errors.contains("NOT_FOUND") && !grpc_errors.contains("INVALID_ARGUMENT"),
                "[{}] client errors counted as server faults: {grpc_errors}",
                set.name
            );
            if set.name == "ingress-values" {
                // metrics.prometheusRule.rateWindow
                assert!(
                    grpc_errors.contains("[10m]"),
                    "[{}] rate window: {grpc_errors}",
                    set.name
                );
            }
        }
        let missing: Vec<_> = expected
            .keys()
            .filter(|key| !checked.contains(*key))
            .collect();
        assert!(missing.is_empty(), "alerts not rendered: {missing:?}");
    });
}

#[test]
fn the_grafana_dashboard_reaches_the_sidecar_and_queries_known_metrics() {
    let scope = "namespace=\"$namespace\"";
    let datasource = serde_json::json!("${datasource}");
    with_report(|report| {
        let mut rendered = 0;
        for set in &report.value_sets {
            let Some(map) = dashboard(set) else { continue };
            rendered += 1;
            let at = format!("[{}] dashboard", set.name);
            // What the sidecar looks for, and where.
            let (label, value, namespace) = match set.name.as_str() {
                "ingress-values" => ("grafana.example.com/dashboard", "warble", Some("grafana")),
                _ => ("grafana_dashboard", "1", None),
            };
            assert_eq!(
                map["metadata"]["labels"][label], value,
                "{at}: the sidecar label"
            );
            assert_eq!(
                map["metadata"]["namespace"].as_str(),
                namespace,
                "{at}: namespace"
            );
            let json = map["data"]["warble.json"].as_str().expect("dashboard JSON");
            let board: Value = serde_json::from_str(json)
                .unwrap_or_else(|error| panic!("{at}: not JSON: {error}"));
            assert!(board["uid"].is_string(), "{at}: no uid");

            let variables = board["templating"]["list"].as_array().expect("templating");
            let variable = |name: &str| {
                variables
                    .iter()
                    .find(|variable| variable["name"] == name)
                    .unwrap_or_else(|| panic!("{at}: no ${name} variable"))
            };
            assert_eq!(variable("datasource")["type"], "datasource", "{at}");
            assert_eq!(variable("datasource")["query"], "prometheus", "{at}");
            let namespaces = variable("namespace");
            assert_eq!(namespaces["datasource"]["uid"], datasource, "{at}");
            let query = namespaces["query"]["query"].as_str().expect("query");
            assert!(
                query
                    .strip_prefix("label_values(")
                    .and_then(|rest| rest.split_once(','))
                    .and_then(|(series, _)| metric_of(series))
                    .is_some(),
                "{at}: $namespace comes from no known metric: {query}"
            );

            let mut queried = BTreeSet::new();
            let mut ids = BTreeSet::new();
            for panel in board["panels"].as_array().expect("panels") {
                let title = panel["title"].as_str().unwrap_or_default();
                let at = format!("{at} panel {title:?}");
                assert!(ids.insert(panel["id"].to_string()), "{at}: id taken");
                if panel["type"] == "row" {
                    continue;
                }
                assert_eq!(panel["datasource"]["uid"], datasource, "{at}");
                let targets = panel["targets"].as_array().expect("targets");
                assert!(!targets.is_empty(), "{at}: no query");
                for target in targets {
                    assert_eq!(target["datasource"]["uid"], datasource, "{at}");
                    let expr = target["expr"].as_str().expect("expr");
                    queried.extend(queried_metrics(expr, scope, &at));
                }
            }
            let unseen: Vec<_> = METRICS
                .into_iter()
                .filter(|metric| !queried.contains(metric))
                .collect();
            assert!(unseen.is_empty(), "{at}: no panel shows {unseen:?}");
        }
        assert!(rendered >= 2, "value sets rendering the dashboard");
    });
}
