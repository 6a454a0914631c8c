//! Layered configuration: defaults in code < an optional TOML file < `WARBLE_*`
//! environment variables.
//!
//! Nested keys use a double underscore in env vars: the key
//! `telemetry.log_format` is set by `WARBLE_TELEMETRY__LOG_FORMAT`. The file
//! comes from `--config <path>` or `WARBLE_CONFIG`. Every service validates
//! its config at start and fails naming the offending key; the effective
//! config is logged with secrets redacted.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Prefix of every environment variable Warble reads.
pub const ENV_PREFIX: &str = "WARBLE_";
/// Env var naming a config file, used when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "WARBLE_CONFIG";

/// A service's configuration: defaults come from `Default`, validation names the failing key.
pub trait ServiceConfig: Serialize + DeserializeOwned + Default {
    /// Checks values that types alone cannot (ranges, relationships).
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value is present but unacceptable.
    #[error("invalid config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    /// The file or an env var could not be parsed into the expected shape
    /// (figment's message names the key and the source).
    #[error("cannot read config: {0}")]
    Parse(#[from] Box<figment::Error>),
    /// The named config file does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(key: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Refuses `backend = "embedded"` in a service that shares the timeline
/// cache with `peer` across processes: the embedded cache lives in one
/// process's memory, where the peer cannot reach it.
pub fn refuse_embedded_timeline_cache(peer: &str) -> ConfigError {
    ConfigError::invalid(
        "backend",
        format!(
            "\"embedded\" keeps the timeline cache in this process's memory, where {peer} \
             cannot reach it. Run the single-process stack (`warble dev`) or set \
             WARBLE_BACKEND=redis"
        ),
    )
}

/// Validates a service's downstream addresses (`(key, host:port)` pairs)
/// and its per-call deadline, naming the failing key.
pub fn validate_downstreams(
    addrs: &[(&str, &str)],
    request_timeout_ms: u64,
) -> Result<(), ConfigError> {
    for (key, addr) in addrs {
        if addr.trim().is_empty() {
            return Err(ConfigError::invalid(key, "must be a host:port address"));
        }
    }
    if request_timeout_ms == 0 {
        return Err(ConfigError::invalid(
            "request_timeout_ms",
            "must be at least 1",
        ));
    }
    Ok(())
}

/// Loads `T` from defaults, then `file` (if any), then `WARBLE_*` env vars, and validates it.
pub fn load<T: ServiceConfig>(file: Option<&Path>) -> Result<T, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = file {
        if !file.exists() {
            return Err(ConfigError::MissingFile(file.to_owned()));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    figment = figment.merge(EnvStrings(
        Env::prefixed(ENV_PREFIX).ignore(&["CONFIG"]).split("__"),
    ));
    // Lossy: an env var's text becomes a number or bool only where the key is one.
    let config: T = figment.extract_lossy().map_err(Box::new)?;
    config.validate()?;
    Ok(config)
}

/// `WARBLE_*` variables with their values kept as text. figment's own `Env`
/// parses values, so an all-digit password would arrive as a number and fail
/// to load into a string key; with text values, `extract_lossy` converts only
/// where the key's type asks for a number or a bool.
struct EnvStrings(Env);

impl figment::Provider for EnvStrings {
    fn metadata(&self) -> figment::Metadata {
        self.0.metadata()
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut dict = figment::value::Dict::new();
        for (key, value) in self.0.iter() {
            let nested = figment::util::nest(key.as_str(), figment::value::Value::from(value))
                .into_dict()
                .unwrap_or_default();
            merge_into(&mut dict, nested);
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

/// Merges `from` into `into`, descending into nested tables.
fn merge_into(into: &mut figment::value::Dict, from: figment::value::Dict) {
    use figment::value::Value;
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Dict(_, existing)), Value::Dict(_, nested)) => {
                merge_into(existing, nested)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// The effective config as pretty JSON with secrets replaced by `"[redacted]"`
/// (see [`is_secret_key`]) and URL credentials hidden
/// ([`redact_url`](crate::secret::redact_url)).
pub fn redacted_json<T: Serialize>(config: &T) -> String {
    let mut value = serde_json::to_value(config).unwrap_or(serde_json::Value::Null);
    redact(&mut value);
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// Whether a config key holds a secret: its last segment ends in the word
/// `password`, `secret`, `token` or `private_key` (`auth.hs256_secret`,
/// `redis.password`), as opposed to merely mentioning one
/// (`auth.dev_token_ttl_secs`). Printing redacts these; deployments must
/// supply them from a secret store.
pub fn is_secret_key(key: &str) -> bool {
    let leaf = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    ["password", "secret", "token", "private_key"]
        .iter()
        .any(|marker| leaf == *marker || leaf.ends_with(&format!("_{marker}")))
}

/// Belt and braces on top of [`Secret`](crate::secret::Secret), which
/// already serializes redacted: a plain string under a secret-looking key is
/// hidden too, and every URL loses the password in its user info.
fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if is_secret_key(key) && !child.is_object() {
                    if !(child.is_null() || child.as_str() == Some("")) {
                        *child = serde_json::Value::String(crate::secret::REDACTED.into());
                    }
                } else {
                    redact(child);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        serde_json::Value::String(text) => {
            if let std::borrow::Cow::Owned(redacted) = crate::secret::redact_url(text) {
                *text = redacted;
            }
        }
        _ => {}
    }
}

/// Every key `T` reads, as `(dotted.key, WARBLE_ENV_VAR)` pairs, sorted. Lets
/// deployment tooling check it only sets variables a service understands.
pub fn keys<T: ServiceConfig>() -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    let dotted = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&dotted, child, out);
                }
            }
            _ => {
                let env = format!("{ENV_PREFIX}{}", prefix.replace('.', "__").to_uppercase());
                out.push((prefix.to_owned(), env));
            }
        }
    }
    let mut out = Vec::new();
    walk(
        "",
        &serde_json::to_value(T::default()).unwrap_or(serde_json::Value::Null),
        &mut out,
    );
    out.sort();
    out
}

/// What a service binary was asked to do on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the service.
    Run,
    /// Print the effective config (secrets redacted) and exit.
    PrintConfig,
    /// Print every config key and its env var and exit.
    PrintConfigKeys,
}

/// Parsed command line of a service binary: `[--config <file>] [--print-config | --print-config-keys]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    /// The config file, from `--config` or `WARBLE_CONFIG`.
    pub config_file: Option<PathBuf>,
    /// What to do.
    pub command: Command,
}

impl Cli {
    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut config_file = std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from);
        let mut command = Command::Run;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--config" => {
                    config_file = Some(args.next().ok_or("--config needs a file path")?.into())
                }
                "--print-config" => command = Command::PrintConfig,
                "--print-config-keys" => command = Command::PrintConfigKeys,
                "-h" | "--help" => {
                    return Err(
                        "usage: [--config <file.toml>] [--print-config | --print-config-keys]\n\
                         Config layers: defaults < file < WARBLE_* env vars (nested keys use `__`)."
                            .into(),
                    );
                }
                other => return Err(format!("unknown argument `{other}` (try --help)")),
            }
        }
        Ok(Self {
            config_file,
            command,
        })
    }
}

/// The standard `main` prologue (see [`crate::scaffold::main`]): parse
/// `args`, load and validate the config, handle the print commands. Returns
/// `None` when the process should exit successfully without running; exits
/// with status 2 on bad arguments or config, naming the problem.
pub fn load_for_main_with_args<T: ServiceConfig>(
    service: &str,
    args: impl IntoIterator<Item = String>,
) -> Option<T> {
    let cli = match Cli::parse(args) {
        Ok(cli) => cli,
        Err(message) => {
            eprintln!("{service}: {message}");
            std::process::exit(2);
        }
    };
    if cli.command == Command::PrintConfigKeys {
        for (key, env) in keys::<T>() {
            println!("{key}\t{env}");
        }
        return None;
    }
    let config = match load::<T>(cli.config_file.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{service}: {error}");
            std::process::exit(2);
        }
    };
    if cli.command == Command::PrintConfig {
        println!("{}", redacted_json(&config));
        return None;
    }
    Some(config)
}

#[cfg(test)]
// figment's test jail returns its own large error type; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Sample {
        port: u16,
        name: String,
        jwt_secret: crate::secret::Secret,
        cache_url: String,
        nested: Nested,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq, Default)]
    #[serde(default)]
    struct Nested {
        level: String,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                port: 1,
                name: "default".into(),
                jwt_secret: crate::secret::Secret::default(),
                cache_url: "redis://127.0.0.1:6379".into(),
                nested: Nested {
                    level: "info".into(),
                },
            }
        }
    }

    impl ServiceConfig for Sample {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.port == 0 {
                return Err(ConfigError::invalid("port", "must not be 0"));
            }
            Ok(())
        }
    }

    #[test]
    fn layers_apply_in_order_and_nested_env_keys_work() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("warble.toml", "port = 7\nname = \"from-file\"")?;
            jail.set_env("WARBLE_NAME", "from-env");
            jail.set_env("WARBLE_NESTED__LEVEL", "debug");
            let config: Sample = load(Some(Path::new("warble.toml"))).unwrap();
            assert_eq!(config.port, 7);
            assert_eq!(config.name, "from-env");
            assert_eq!(config.nested.level, "debug");
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("WARBLE_PORT", "0");
            let error = load::<Sample>(None).unwrap_err().to_string();
            assert!(error.contains("`port`"), "{error}");
            jail.set_env("WARBLE_PORT", "not-a-number");
            let error = load::<Sample>(None).unwrap_err().to_string();
            assert!(error.to_lowercase().contains("key \"port\""), "{error}");
            Ok(())
        });
    }

    #[test]
    fn all_digit_values_load_into_string_keys() {
        figment::Jail::expect_with(|jail| {
            // An all-digit password must not be read as a number.
            jail.set_env("WARBLE_JWT_SECRET", "123456");
            jail.set_env("WARBLE_NAME", "true");
            jail.set_env("WARBLE_PORT", "8080");
            let config: Sample = load(None).unwrap();
            assert_eq!(config.jwt_secret.expose(), "123456");
            assert_eq!(config.name, "true");
            assert_eq!(config.port, 8080);
            Ok(())
        });
    }

    #[test]
    fn missing_file_is_an_error() {
        assert!(matches!(
            load::<Sample>(Some(Path::new("/nonexistent/warble.toml"))),
            Err(ConfigError::MissingFile(_))
        ));
    }

    #[test]
    fn secrets_are_redacted_and_keys_listed() {
        let config = Sample {
            jwt_secret: "hunter2".into(),
            cache_url: "redis://app:pa55word@cache:6379/0".into(),
            ..Sample::default()
        };
        let printed = redacted_json(&config);
        assert!(
            !printed.contains("hunter2") && !printed.contains("pa55word"),
            "{printed}"
        );
        assert!(
            printed.contains("redis://app:[redacted]@cache:6379/0"),
            "{printed}"
        );
        assert!(printed.contains("[redacted]"));
        assert!(is_secret_key("auth.hs256_secret") && is_secret_key("redis.password"));
        assert!(is_secret_key("api_token") && is_secret_key("tls.private_key"));
        assert!(!is_secret_key("auth.dev_token_ttl_secs") && !is_secret_key("auth.public_key_pem"));
        let keys = keys::<Sample>();
        assert!(keys.contains(&("nested.level".into(), "WARBLE_NESTED__LEVEL".into())));
        assert!(keys.contains(&("port".into(), "WARBLE_PORT".into())));
    }

    /// A service-shaped config over the sections services share, for the
    /// properties below: a number, a string, a secret, a downstream address
    /// and the real `telemetry.*` and `events.*` sections with their rules.
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Fuzzed {
        port: u16,
        request_timeout_ms: u64,
        upstream_addr: String,
        api_secret: crate::secret::Secret,
        telemetry: crate::telemetry::TelemetryConfig,
        events: crate::backends::EventsConfig,
    }

    impl Default for Fuzzed {
        fn default() -> Self {
            Self {
                port: 8080,
                request_timeout_ms: 2_000,
                upstream_addr: "127.0.0.1:50051".into(),
                api_secret: crate::secret::Secret::default(),
                telemetry: crate::telemetry::TelemetryConfig::default(),
                events: crate::backends::EventsConfig::default(),
            }
        }
    }

    impl ServiceConfig for Fuzzed {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.port == 0 {
                return Err(ConfigError::invalid("port", "must not be 0"));
            }
            validate_downstreams(
                &[("upstream_addr", &self.upstream_addr)],
                self.request_timeout_ms,
            )?;
            self.telemetry.validate("telemetry")?;
            self.events.validate("events")
        }
    }

    /// Every leaf key of [`Fuzzed`] the properties set.
    const FUZZED_KEYS: &[&str] = &[
        "port",
        "request_timeout_ms",
        "upstream_addr",
        "api_secret",
        "telemetry.log_format",
        "telemetry.log_level",
        "telemetry.otlp_endpoint",
        "events.backend",
        "events.redis.mode",
        "events.redis.url",
        "events.redis.cluster_nodes",
        "events.redis.connect_timeout_ms",
    ];

    /// Keys validation may name: the leaves, and the one a rule about two
    /// of them reports.
    const VALIDATED_KEYS: &[&str] = &[
        "port",
        "request_timeout_ms",
        "upstream_addr",
        "telemetry.log_level",
        "telemetry.otlp_endpoint",
        "events.redis.url",
        "events.redis.cluster_nodes",
        "events.redis.response_timeout_ms",
    ];

    /// Text these keys accept or almost accept: enum names in other cases,
    /// URLs without a scheme, filter directives, the redaction placeholder.
    const NEAR_MISSES: &[&str] = &[
        "",
        " ",
        "0",
        "65536",
        "-1",
        "true",
        "json",
        "JSON",
        "compact",
        "pretty",
        "redis",
        "Redis",
        "embedded",
        "cluster",
        "single",
        "info",
        "warn,x=debug",
        "[",
        "=bad",
        "http://collector:4317",
        "collector:4317",
        "redis://cache:6379/0",
        "rediss://a:1,redis://b:2",
        "redis://a, ,http://b",
        "[redacted]",
        "hunter2",
    ];

    /// Any TOML value: scalars of every type (numbers at and past a `u16`'s
    /// range, any float, any text), arrays and tables.
    fn toml_value() -> impl Strategy<Value = toml::Value> {
        use toml::Value;
        let scalar = prop_oneof![
            any::<i64>().prop_map(Value::Integer),
            (-2i64..70_000).prop_map(Value::Integer),
            any::<f64>().prop_map(Value::Float),
            any::<bool>().prop_map(Value::Boolean),
            "(?s).{0,24}".prop_map(Value::String),
            prop::sample::select(NEAR_MISSES).prop_map(|text| Value::String(text.into())),
        ];
        scalar.prop_recursive(2, 8, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,6}", inner, 0..3)
                    .prop_map(|map| Value::Table(map.into_iter().collect())),
            ]
        })
    }

    /// A value of the type `key` has (often one it accepts, sometimes one
    /// its rules refuse), or, one time in five, any value at all.
    fn value_for(key: &'static str) -> BoxedStrategy<toml::Value> {
        use toml::Value;
        let typed = match key {
            "port" | "request_timeout_ms" | "events.redis.connect_timeout_ms" => prop_oneof![
                (0i64..70_000).prop_map(Value::Integer),
                prop::sample::select(vec![-1, 0, 1, 65_535, 65_536, i64::MAX, i64::MIN])
                    .prop_map(Value::Integer),
            ]
            .boxed(),
            "telemetry.log_format" => {
                prop::sample::select(vec!["pretty", "json", "compact", "Json", "", "xml"])
                    .prop_map(|name| Value::String(name.into()))
                    .boxed()
            }
            "events.backend" => prop::sample::select(vec!["embedded", "redis", "Redis", "kafka"])
                .prop_map(|name| Value::String(name.into()))
                .boxed(),
            "events.redis.mode" => prop::sample::select(vec!["single", "cluster", "Cluster", "x"])
                .prop_map(|name| Value::String(name.into()))
                .boxed(),
            _ => prop_oneof![
                "(?s).{0,24}".prop_map(Value::String),
                prop::sample::select(NEAR_MISSES).prop_map(|text| Value::String(text.into())),
            ]
            .boxed(),
        };
        prop_oneof![4 => typed, 1 => toml_value()].boxed()
    }

    /// Sets dotted `key` in `table`, replacing whatever is in the way.
    fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) {
        match key.split_once('.') {
            None => {
                table.insert(key.to_owned(), value);
            }
            Some((head, rest)) => {
                let child = table
                    .entry(head)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if !child.is_table() {
                    *child = toml::Value::Table(toml::Table::new());
                }
                if let toml::Value::Table(child) = child {
                    set_dotted(child, rest, value);
                }
            }
        }
    }

    /// Whether the environment (outside these tests' control) sets `key`.
    fn env_sets(key: &str) -> bool {
        std::env::var_os(format!(
            "{ENV_PREFIX}{}",
            key.replace('.', "__").to_uppercase()
        ))
        .is_some()
    }

    /// `load` of `file` in `jail`: a config, or an error naming a key. A
    /// figment error names the key it failed on; one without a key can
    /// only come from the file not being TOML at all (`syntax_ok` false).
    fn load_checked(
        jail: &figment::Jail,
        contents: &str,
        syntax_ok: bool,
    ) -> Result<Option<Fuzzed>, proptest::test_runner::TestCaseError> {
        let path = jail.directory().join("fuzzed.toml");
        std::fs::write(&path, contents).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match load::<Fuzzed>(Some(&path)) {
            Ok(config) => Ok(Some(config)),
            Err(ConfigError::Invalid { key, reason }) => {
                prop_assert!(VALIDATED_KEYS.contains(&key.as_str()), "{key}: {reason}");
                prop_assert!(!reason.is_empty());
                Ok(None)
            }
            Err(ConfigError::Parse(error)) => {
                let message = error.to_string();
                for error in *error {
                    if error.path.is_empty() {
                        prop_assert!(!syntax_ok, "no key named for valid TOML: {message}");
                    } else {
                        let dotted = error.path.join(".");
                        prop_assert!(
                            FUZZED_KEYS
                                .iter()
                                .any(|key| key.starts_with(&dotted) || dotted.starts_with(key)),
                            "{dotted} is no key we set: {message}"
                        );
                        prop_assert!(message.contains(&dotted), "{message}");
                    }
                }
                Ok(None)
            }
            Err(ConfigError::MissingFile(path)) => {
                Err(TestCaseError::fail(format!("{} exists", path.display())))
            }
        }
    }

    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    /// `cases` cases, with failures reported but not persisted: the jail
    /// moves the working directory, where proptest would look for the source.
    fn jailed_cases(cases: u32) -> ProptestConfig {
        ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::with_cases(cases)
        }
    }

    /// Arbitrary values (of any TOML type) for a few keys of a file: a
    /// config, or an error naming the key; and a loaded value is the one
    /// written. In a jail so tests that set `WARBLE_*` variables cannot
    /// interleave; nothing here sets one.
    #[test]
    fn arbitrary_values_load_or_name_their_key() {
        figment::Jail::expect_with(|jail| {
            proptest!(jailed_cases(256), |(
                values in prop::collection::vec(
                    prop::sample::select(FUZZED_KEYS)
                        .prop_flat_map(|key| (Just(key), value_for(key))),
                    1..5,
                ),
            )| {
                let mut table = toml::Table::new();
                for (key, value) in &values {
                    set_dotted(&mut table, key, value.clone());
                }
                let contents = toml::to_string(&table)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let Some(config) = load_checked(jail, &contents, true)? else {
                    return Ok(());
                };
                // What was written is what loaded (last write per key wins).
                let last = |key: &str| {
                    values.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
                };
                if let Some(toml::Value::Integer(port)) = last("port")
                    && !env_sets("port")
                {
                    prop_assert_eq!(i64::from(config.port), port);
                }
                if let Some(toml::Value::String(addr)) = last("upstream_addr")
                    && !env_sets("upstream_addr")
                {
                    prop_assert!(!addr.trim().is_empty());
                    prop_assert_eq!(&config.upstream_addr, &addr);
                }
                if let Some(toml::Value::String(secret)) = last("api_secret")
                    && !env_sets("api_secret")
                {
                    prop_assert_eq!(config.api_secret.expose(), secret.as_str());
                }
                prop_assert!(config.port != 0 && config.request_timeout_ms != 0);
            });
            Ok(())
        });
    }

    /// Arbitrary file contents, TOML or not, UTF-8 or not: never a panic;
    /// a config, an error naming a key, or the file's own parse error.
    #[test]
    fn arbitrary_files_never_panic() {
        figment::Jail::expect_with(|jail| {
            proptest!(jailed_cases(256), |(
                contents in prop_oneof![
                    "(?s).{0,200}",
                    // Key-shaped lines with a TOML literal, or junk, after
                    // the `=` (dotted keys repeated or clashing included).
                    prop::collection::vec(
                        (
                            prop::sample::select(FUZZED_KEYS),
                            r#"-?[0-9]{1,6}|"[a-z:/,. ]{0,12}"|true|'[^'\n]{0,8}'|\[1, "a"\]|\{ a = 1 \}|(?s).{0,30}"#,
                        ),
                        1..4,
                    )
                    .prop_map(|lines| lines
                        .into_iter()
                        .map(|(key, junk)| format!("{key} = {junk}\n"))
                        .collect::<String>()),
                ],
                bytes in prop::collection::vec(any::<u8>(), 0..64),
            )| {
                load_checked(jail, &contents, false)?;
                let path = jail.directory().join("binary.toml");
                std::fs::write(&path, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
                if let Err(ConfigError::MissingFile(_)) = load::<Fuzzed>(Some(&path)) {
                    prop_assert!(false, "the file exists");
                }
            });
            Ok(())
        });
    }

    /// Found by `arbitrary_values_load_or_name_their_key`: tracing-subscriber
    /// 0.3.23's directive parser indexes the untrimmed text with offsets
    /// into the trimmed text, so leading whitespace before a non-ASCII
    /// target makes `EnvFilter::try_new` panic (a byte index inside `é`)
    /// instead of returning an error. `TelemetryConfig::validate` calls it
    /// on `telemetry.log_level`, so this load panics where it should name
    /// the key. (`RUST_LOG` takes the same path at start-up.)
    #[test]
    fn a_log_level_the_filter_parser_chokes_on_is_refused_by_key() {
        figment::Jail::expect_with(|jail| {
            for level in [" é=debug", "\t日=info", " é[span]"] {
                let path = jail.directory().join("level.toml");
                std::fs::write(&path, format!("[telemetry]\nlog_level = {level:?}\n"))
                    .map_err(|e| e.to_string())?;
                let loaded = std::panic::catch_unwind(|| load::<Fuzzed>(Some(&path)).map(drop));
                match loaded {
                    Err(_) => panic!("loading log_level = {level:?} panicked"),
                    Ok(Err(ConfigError::Invalid { key, .. })) => {
                        assert_eq!(key, "telemetry.log_level", "{level:?}")
                    }
                    Ok(other) => panic!("log_level = {level:?}: {other:?}"),
                }
            }
            Ok(())
        });
    }

    #[test]
    fn cli_parses_flags() {
        let cli =
            Cli::parse(["--config".into(), "a.toml".into(), "--print-config".into()]).unwrap();
        assert_eq!(cli.config_file.as_deref(), Some(Path::new("a.toml")));
        assert_eq!(cli.command, Command::PrintConfig);
        assert!(Cli::parse(["--bogus".into()]).is_err());
    }
}
