//! Harness for the tests of the Helm chart in `helm/warble`.
//!
//! There is no helm binary here: `tests/render_chart.py` drives the real Helm
//! library (PyPI `helm-python-sdk`) to lint the chart in strict mode and render
//! it with the default values and every value set in `warble/ci/`, validates
//! each rendered object against the Kubernetes schemas (`kubernetes-validate`),
//! tries the values files in `tests/bad-values/`, and prints one JSON report.
//! [`report`] runs it and parses the report; the tests in `tests/chart.rs`
//! assert on it, comparing the env vars the chart sets with the config keys
//! the services read (`warble_mesh::config::keys`).
//!
//! When `python3` or the packages are missing the tests print a notice and
//! pass, except in CI (`CI=true`), where the packages are installed first and
//! their absence is a failure.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

/// Kubernetes versions every rendered object is validated against: the
/// chart's minimum (`kubeVersion` in Chart.yaml) and the newest schemas
/// `kubernetes-validate` ships.
pub const KUBE_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// Exit status of `render_chart.py` when Python packages are missing.
const MISSING_TOOLING: i32 = 3;

/// The `helm/` directory.
pub fn helm_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The chart.
pub fn chart_dir() -> PathBuf {
    helm_dir().join("warble")
}

/// Whether this run is CI, where missing tooling fails instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}

/// What `render_chart.py` found.
#[derive(Debug, Deserialize)]
pub struct Report {
    /// Versions of the Helm library and the schema package used.
    pub tooling: Value,
    /// The default values first, then every `warble/ci/*.yaml`.
    pub value_sets: Vec<ValueSet>,
    /// Every `tests/bad-values/*.yaml`.
    pub bad_values: Vec<BadValues>,
}

/// The chart linted and rendered with one set of values.
#[derive(Debug, Deserialize)]
pub struct ValueSet {
    /// `default` or the values file's stem.
    pub name: String,
    /// The values file, if any.
    pub file: Option<String>,
    /// Strict lint findings.
    pub lint: Lint,
    /// Why rendering failed, if it did.
    pub render_error: Option<String>,
    /// Every rendered object (NOTES.txt excluded).
    pub objects: Vec<Rendered>,
    /// The rendered NOTES.txt.
    pub notes: String,
    /// One entry per object and Kubernetes version.
    pub validation: Vec<Validation>,
}

/// `helm lint --strict` output.
#[derive(Debug, Deserialize)]
pub struct Lint {
    /// Errors that stopped linting.
    pub errors: Vec<String>,
    /// Findings: severity 1 info, 2 warning, 3 error.
    pub messages: Vec<LintMessage>,
}

/// One lint finding.
#[derive(Debug, Deserialize)]
pub struct LintMessage {
    /// 0 unknown, 1 info, 2 warning, 3 error.
    pub severity: u8,
    /// The file it is about.
    pub path: String,
    /// What is wrong.
    pub error: String,
}

/// One rendered object and the template it came from.
#[derive(Debug, Deserialize)]
pub struct Rendered {
    /// Template path, e.g. `warble/templates/tweet-svc.yaml`.
    pub template: String,
    /// The object.
    pub object: Value,
}

/// The schema validation of one object for one Kubernetes version.
#[derive(Debug, Deserialize)]
pub struct Validation {
    /// Object kind.
    pub kind: String,
    /// Object name.
    pub name: String,
    /// Kubernetes version validated against.
    pub kube_version: String,
    /// The first schema violation, if any.
    pub error: Option<String>,
    /// Why it was not validated (no schema: a custom resource).
    pub skipped: Option<String>,
}

/// A values file that must be refused.
#[derive(Debug, Deserialize)]
pub struct BadValues {
    /// File name in `tests/bad-values/`.
    pub file: String,
    /// The schema's complaint.
    pub schema_error: Option<String>,
    /// The template's complaint, when the schema accepted the file.
    pub render_error: Option<String>,
}

/// Runs `render_chart.py` and parses its report. `None` when the tooling is
/// missing outside CI (a notice is printed); panics in CI or on any other failure.
pub fn report() -> Option<Report> {
    let script = helm_dir().join("tests").join("render_chart.py");
    let mut command = Command::new("python3");
    command
        .arg(&script)
        .arg("--chart")
        .arg(chart_dir())
        .arg("--values-dir")
        .arg(chart_dir().join("ci"))
        .arg("--bad-values-dir")
        .arg(helm_dir().join("tests").join("bad-values"));
    for version in KUBE_VERSIONS {
        command.arg("--kube-version").arg(version);
    }
    let output = match command.output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return skip("python3 is not installed");
        }
        Err(error) => panic!("cannot run {}: {error}", script.display()),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(MISSING_TOOLING) {
        return skip(stderr.trim());
    }
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stderr}",
        script.display(),
        output.status
    );
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("{} printed no valid report: {error}", script.display()));
    Some(report)
}

fn skip(reason: &str) -> Option<Report> {
    assert!(
        !in_ci(),
        "CI=true but the chart tooling is unavailable: {reason}. \
         Install it with: python3 -m pip install helm-python-sdk==0.2.2 kubernetes-validate==1.37.0"
    );
    // Straight to the process's stderr: the test harness hides `eprintln!`
    // output of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "NOTICE: skipping the Helm chart checks: {reason}. \
         Install with: python3 -m pip install helm-python-sdk==0.2.2 kubernetes-validate==1.37.0"
    );
    None
}

/// Where an env var of a container gets its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    /// A key of a ConfigMap (through `envFrom` or `configMapKeyRef`).
    ConfigMap(String),
    /// A key of a Secret (through `envFrom` or `secretKeyRef`).
    Secret {
        /// The Secret's name.
        name: String,
        /// The key in it.
        key: String,
        /// Whether the chart renders that Secret (otherwise it is the operator's).
        in_chart: bool,
    },
    /// The downward API (`fieldRef.fieldPath`).
    Field(String),
    /// A literal `value`.
    Literal,
}

/// One env var of a container, resolved against the rendered objects.
#[derive(Debug, Clone)]
pub struct EnvVar {
    /// The variable's name.
    pub name: String,
    /// Its value, when the chart determines it (not for external Secrets or fields).
    pub value: Option<String>,
    /// Where it comes from.
    pub source: EnvSource,
}

/// A Deployment or StatefulSet of the chart.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    /// `Deployment` or `StatefulSet`.
    pub kind: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its `app.kubernetes.io/component` label, e.g. `tweet-svc`.
    pub component: &'a str,
    /// The whole object.
    pub object: &'a Value,
}

impl<'a> Workload<'a> {
    /// The pod template's spec.
    pub fn pod_spec(&self) -> &'a Value {
        &self.object["spec"]["template"]["spec"]
    }

    /// The pod template's annotations.
    pub fn pod_annotations(&self) -> &'a Value {
        &self.object["spec"]["template"]["metadata"]["annotations"]
    }

    /// The containers of the pod template.
    pub fn containers(&self) -> &'a [Value] {
        self.pod_spec()["containers"]
            .as_array()
            .map_or(&[], Vec::as_slice)
    }
}

impl ValueSet {
    /// Every object, of every kind.
    pub fn all_objects(&self) -> impl Iterator<Item = &Value> {
        self.objects.iter().map(|rendered| &rendered.object)
    }

    /// Every object of `kind`.
    pub fn objects<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a Value> + use<'a> {
        let kind = kind.to_owned();
        self.all_objects()
            .filter(move |object| object["kind"].as_str() == Some(kind.as_str()))
    }

    /// The object of `kind` named `name`.
    pub fn object(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects(kind)
            .find(|object| object["metadata"]["name"].as_str() == Some(name))
    }

    /// Every Deployment and StatefulSet.
    pub fn workloads(&self) -> Vec<Workload<'_>> {
        self.all_objects()
            .filter_map(|object| {
                let kind = object["kind"].as_str()?;
                if kind != "Deployment" && kind != "StatefulSet" {
                    return None;
                }
                Some(Workload {
                    kind,
                    name: object["metadata"]["name"].as_str()?,
                    component: object["metadata"]["labels"]["app.kubernetes.io/component"]
                        .as_str()?,
                    object,
                })
            })
            .collect()
    }

    /// The workload of `component` (e.g. `tweet-svc`).
    pub fn workload(&self, component: &str) -> Workload<'_> {
        self.workloads()
            .into_iter()
            .find(|workload| workload.component == component)
            .unwrap_or_else(|| panic!("[{}] no workload for {component}", self.name))
    }

    /// The most pods of `workload` that can run at once: its HPA's
    /// maxReplicas, or its replica count.
    pub fn max_pods(&self, workload: &Workload<'_>) -> u64 {
        let hpa = self.objects("HorizontalPodAutoscaler").find(|hpa| {
            hpa["spec"]["scaleTargetRef"]["kind"].as_str() == Some(workload.kind)
                && hpa["spec"]["scaleTargetRef"]["name"].as_str() == Some(workload.name)
        });
        match hpa {
            Some(hpa) => hpa["spec"]["maxReplicas"]
                .as_u64()
                .expect("HPA maxReplicas"),
            None => workload.object["spec"]["replicas"]
                .as_u64()
                .unwrap_or_else(|| panic!("{} has neither an HPA nor replicas", workload.name)),
        }
    }

    /// Asserts that `workload` keeps its data where only one pod can use it
    /// (`why`): one pod at most, never autoscaled, and its data on a
    /// PersistentVolumeClaim (`claimed`) that outlives the pod. `at` names
    /// the values file, for messages.
    pub fn assert_one_pod_on_a_claim(
        &self,
        workload: &Workload<'_>,
        claimed: bool,
        at: &str,
        why: &str,
    ) {
        assert_eq!(self.max_pods(workload), 1, "{at}: {why} allows one pod");
        assert!(
            self.objects("HorizontalPodAutoscaler")
                .all(|hpa| hpa["spec"]["scaleTargetRef"]["name"] != workload.name),
            "{at}: autoscaled although {why} allows one pod"
        );
        assert!(claimed, "{at}: {why} is not on a PersistentVolumeClaim");
    }

    /// The data of a Secret the chart renders, decoded.
    pub fn secret_data(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let secret = self.object("Secret", name)?;
        let mut data = BTreeMap::new();
        if let Some(encoded) = secret["data"].as_object() {
            for (key, value) in encoded {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(value.as_str().unwrap_or_default())
                    .unwrap_or_else(|error| panic!("Secret {name} key {key}: {error}"));
                data.insert(key.clone(), String::from_utf8(bytes).expect("UTF-8 secret"));
            }
        }
        if let Some(plain) = secret["stringData"].as_object() {
            for (key, value) in plain {
                data.insert(key.clone(), value.as_str().unwrap_or_default().to_owned());
            }
        }
        Some(data)
    }

    /// Every env var of `container`, from `envFrom` and `env`, resolved
    /// against the rendered ConfigMaps and Secrets. Panics on a reference to
    /// a ConfigMap the chart does not render, or on `envFrom` of a Secret the
    /// chart does not render (its variable names would be unknowable).
    pub fn container_env(&self, container: &Value) -> Vec<EnvVar> {
        let mut vars = Vec::new();
        for source in container["envFrom"].as_array().into_iter().flatten() {
            if let Some(name) = source["configMapRef"]["name"].as_str() {
                let map = self.object("ConfigMap", name).unwrap_or_else(|| {
                    panic!("[{}] envFrom ConfigMap {name} is not rendered", self.name)
                });
                for (key, value) in map["data"].as_object().into_iter().flatten() {
                    vars.push(EnvVar {
                        name: key.clone(),
                        value: value.as_str().map(str::to_owned),
                        source: EnvSource::ConfigMap(name.to_owned()),
                    });
                }
            } else if let Some(name) = source["secretRef"]["name"].as_str() {
                let data = self.secret_data(name).unwrap_or_else(|| {
                    panic!(
                        "[{}] envFrom Secret {name} is not rendered by the chart",
                        self.name
                    )
                });
                for (key, value) in data {
                    vars.push(EnvVar {
                        name: key.clone(),
                        value: Some(value),
                        source: EnvSource::Secret {
                            name: name.to_owned(),
                            key,
                            in_chart: true,
                        },
                    });
                }
            } else {
                panic!("[{}] unsupported envFrom entry {source}", self.name);
            }
        }
        for entry in container["env"].as_array().into_iter().flatten() {
            let name = entry["name"].as_str().expect("env name").to_owned();
            let from = &entry["valueFrom"];
            let (value, source) = if let Some(value) = entry["value"].as_str() {
                (Some(value.to_owned()), EnvSource::Literal)
            } else if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
                (None, EnvSource::Field(path.to_owned()))
            } else if from["secretKeyRef"].is_object() {
                let secret = from["secretKeyRef"]["name"].as_str().expect("secret name");
                let key = from["secretKeyRef"]["key"].as_str().expect("secret key");
                let data = self.secret_data(secret);
                (
                    data.as_ref().and_then(|data| data.get(key).cloned()),
                    EnvSource::Secret {
                        name: secret.to_owned(),
                        key: key.to_owned(),
                        in_chart: data.is_some(),
                    },
                )
            } else if from["configMapKeyRef"].is_object() {
                let map = from["configMapKeyRef"]["name"]
                    .as_str()
                    .expect("configmap name");
                let key = from["configMapKeyRef"]["key"]
                    .as_str()
                    .expect("configmap key");
                let value = self
                    .object("ConfigMap", map)
                    .and_then(|object| object["data"][key].as_str())
                    .map(str::to_owned);
                (value, EnvSource::ConfigMap(map.to_owned()))
            } else {
                (None, EnvSource::Literal)
            };
            vars.push(EnvVar {
                name,
                value,
                source,
            });
        }
        vars
    }
}
