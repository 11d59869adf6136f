//! Reads the app the way the Functions host does: `host.json` (custom handler process, Service
//! Bus concurrency, function timeout) and one `functions/<name>/function.json` per function,
//! with `%SETTING%` binding expressions resolved from app settings.
//!
//! The function folders live under `functions/` in this repository (the deployment package
//! flattens them next to host.json); both layouts are accepted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// Settings the product defines a default for, so a bare local run needs no configuration.
pub(crate) const DEFAULT_SETTINGS: &[(&str, &str)] = &[("RETENTION_SWEEP_SCHEDULE", "0 0 3 * * *")];

/// This repository's `host.json`, built in.
pub(crate) const EMBEDDED_HOST: &str = include_str!("../../../host.json");

/// This repository's function folders, built in (a test checks the list against `functions/`).
pub(crate) const EMBEDDED_FUNCTIONS: &[(&str, &str)] = &[
    (
        "dsr-aggregate",
        include_str!("../../../functions/dsr-aggregate/function.json"),
    ),
    (
        "dsr-intake",
        include_str!("../../../functions/dsr-intake/function.json"),
    ),
    (
        "retention-sweep",
        include_str!("../../../functions/retention-sweep/function.json"),
    ),
    (
        "slice-compute",
        include_str!("../../../functions/slice-compute/function.json"),
    ),
    (
        "slice-data",
        include_str!("../../../functions/slice-data/function.json"),
    ),
    (
        "slice-jobs",
        include_str!("../../../functions/slice-jobs/function.json"),
    ),
    (
        "slice-models",
        include_str!("../../../functions/slice-models/function.json"),
    ),
    (
        "slice-notebooks",
        include_str!("../../../functions/slice-notebooks/function.json"),
    ),
    (
        "slice-telemetry",
        include_str!("../../../functions/slice-telemetry/function.json"),
    ),
    (
        "workspace-deleted",
        include_str!("../../../functions/workspace-deleted/function.json"),
    ),
];

/// The Service Bus extension's default when host.json does not set maxConcurrentCalls
/// (16 per processor in extension v5; this runtime assumes one processor's worth).
pub(crate) const DEFAULT_MAX_CONCURRENT_CALLS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomHandler {
    pub default_executable_path: String,
    pub working_directory: String,
    pub arguments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    ServiceBus {
        binding: String,
        queue_name: String,
        connection: String,
        data_type: Option<String>,
    },
    Timer {
        binding: String,
        schedule: String,
        use_monitor: bool,
        run_on_startup: bool,
    },
    EventGrid {
        binding: String,
    },
    /// A trigger this runtime does not drive (e.g. httpTrigger); kept so it can be reported.
    Other {
        binding: String,
        kind: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDef {
    /// The folder name: the URL path the host POSTs to.
    pub name: String,
    pub trigger: Trigger,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    pub app_root: PathBuf,
    pub custom_handler: Option<CustomHandler>,
    pub max_concurrent_calls: usize,
    pub function_timeout: Option<Duration>,
    /// Sorted by name.
    pub functions: Vec<FunctionDef>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Resolve `%NAME%` expressions from `settings`, then from `DEFAULT_SETTINGS`. `%%` is a literal
/// percent sign. An unknown setting is an error, as in the host (a function with an unresolved
/// schedule would otherwise never run).
pub(crate) fn resolve_expression(
    value: &str,
    settings: &BTreeMap<String, String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after
            .find('%')
            .ok_or_else(|| format!("unterminated %...% in {value:?}"))?;
        let name = &after[..end];
        if name.is_empty() {
            out.push('%');
        } else {
            let v = settings
                .get(name)
                .map(String::as_str)
                .or_else(|| {
                    DEFAULT_SETTINGS
                        .iter()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| *v)
                })
                .ok_or_else(|| format!("app setting {name:?} is not set"))?;
            out.push_str(v);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `hh:mm:ss` or `d.hh:mm:ss` (a .NET TimeSpan); `-1` means unbounded.
pub(crate) fn parse_timespan(s: &str) -> Option<Option<Duration>> {
    if s.trim() == "-1" {
        return Some(None);
    }
    let (days, hms) = match s.split_once('.') {
        Some((d, rest)) if !d.contains(':') => (d.parse::<u64>().ok()?, rest),
        _ => (0, s),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    if parts.len() != 3 {
        return None;
    }
    let h: u64 = parts[0].parse().ok()?;
    let m: u64 = parts[1].parse().ok()?;
    let sec: f64 = parts[2].parse().ok()?;
    Some(Some(
        Duration::from_secs(days * 86_400 + h * 3600 + m * 60) + Duration::from_secs_f64(sec),
    ))
}

fn read_json(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ConfigError::Json {
        path: path.into(),
        source,
    })
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

impl HostConfig {
    /// Read `host.json` and the function folders under `app_root` (a deployment package's
    /// layout, or this repository's).
    pub fn load(app_root: &Path, settings: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let host_path = app_root.join("host.json");
        let host = read_json(&host_path)?;
        let functions_dir = if app_root.join("functions").is_dir() {
            app_root.join("functions")
        } else {
            app_root.to_path_buf()
        };
        let entries = std::fs::read_dir(&functions_dir).map_err(|source| ConfigError::Io {
            path: functions_dir.clone(),
            source,
        })?;
        let mut functions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| ConfigError::Io {
                path: functions_dir.clone(),
                source,
            })?;
            let fj = entry.path().join("function.json");
            if !fj.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            functions.push((name, fj.clone(), read_json(&fj)?));
        }
        Self::from_documents(app_root, &host_path, &host, functions, settings)
    }

    /// The function set built into the binary (this repository's `host.json` and
    /// `functions/*/function.json` at build time), so the CLI works from any folder.
    pub fn embedded(settings: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let root = Path::new("<built-in>");
        let parse = |name: &str, text: &str| {
            serde_json::from_str::<Value>(text).map_err(|source| ConfigError::Json {
                path: root.join(name),
                source,
            })
        };
        let host = parse("host.json", EMBEDDED_HOST)?;
        let mut functions = Vec::new();
        for (name, text) in EMBEDDED_FUNCTIONS {
            let path = root.join(name).join("function.json");
            functions.push((name.to_string(), path, parse(name, text)?));
        }
        Self::from_documents(root, &root.join("host.json"), &host, functions, settings)
    }

    fn from_documents(
        app_root: &Path,
        host_path: &Path,
        host: &Value,
        function_docs: Vec<(String, PathBuf, Value)>,
        settings: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let invalid = |path: &Path, reason: String| ConfigError::Invalid {
            path: path.into(),
            reason,
        };

        let custom_handler = host
            .pointer("/customHandler/description")
            .map(|d| CustomHandler {
                default_executable_path: str_field(d, "defaultExecutablePath").unwrap_or_default(),
                working_directory: str_field(d, "workingDirectory").unwrap_or_default(),
                arguments: d
                    .get("arguments")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        let max_concurrent_calls = match host.pointer("/extensions/serviceBus/maxConcurrentCalls") {
            None => DEFAULT_MAX_CONCURRENT_CALLS,
            Some(v) => v.as_u64().filter(|&n| n > 0).ok_or_else(|| {
                invalid(
                    host_path,
                    format!("maxConcurrentCalls must be a positive integer, got {v}"),
                )
            })? as usize,
        };
        let function_timeout = match host.get("functionTimeout").and_then(Value::as_str) {
            None => None,
            Some(s) => parse_timespan(s)
                .ok_or_else(|| invalid(host_path, format!("bad functionTimeout {s:?}")))?,
        };
        let mut functions = Vec::new();
        for (name, path, def) in function_docs {
            functions.push(FunctionDef {
                name,
                trigger: parse_trigger(&def, settings).map_err(|r| invalid(&path, r))?,
            });
        }
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            app_root: app_root.to_path_buf(),
            custom_handler,
            max_concurrent_calls,
            function_timeout,
            functions,
        })
    }

    pub fn function(&self, name: &str) -> Option<&FunctionDef> {
        self.functions.iter().find(|f| f.name == name)
    }
}

fn parse_trigger(def: &Value, settings: &BTreeMap<String, String>) -> Result<Trigger, String> {
    let bindings = def
        .get("bindings")
        .and_then(Value::as_array)
        .ok_or("no bindings array")?;
    let trigger = bindings
        .iter()
        .find(|b| {
            b.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("Trigger"))
        })
        .ok_or("no trigger binding")?;
    let kind = str_field(trigger, "type").unwrap_or_default();
    let binding = str_field(trigger, "name").ok_or("trigger binding has no name")?;
    let resolved = |key: &str| -> Result<Option<String>, String> {
        str_field(trigger, key)
            .map(|v| resolve_expression(&v, settings))
            .transpose()
    };
    let flag =
        |key: &str, default: bool| trigger.get(key).and_then(Value::as_bool).unwrap_or(default);
    Ok(match kind.as_str() {
        "serviceBusTrigger" => Trigger::ServiceBus {
            binding,
            queue_name: resolved("queueName")?
                .ok_or("serviceBusTrigger without queueName (topics are not supported)")?,
            connection: resolved("connection")?.unwrap_or_else(|| "AzureWebJobsServiceBus".into()),
            data_type: str_field(trigger, "dataType"),
        },
        "timerTrigger" => {
            let schedule = resolved("schedule")?.ok_or("timerTrigger without schedule")?;
            super::ncrontab::Schedule::parse(&schedule).map_err(|e| e.to_string())?;
            Trigger::Timer {
                binding,
                schedule,
                use_monitor: flag("useMonitor", true),
                run_on_startup: flag("runOnStartup", false),
            }
        }
        "eventGridTrigger" => Trigger::EventGrid { binding },
        _ => Trigger::Other { binding, kind },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    #[test]
    fn the_built_in_function_set_is_the_repository_one() {
        let on_disk = HostConfig::load(&repo_root(), &BTreeMap::new()).unwrap();
        let built_in = HostConfig::embedded(&BTreeMap::new()).unwrap();
        assert_eq!(on_disk.functions, built_in.functions);
        assert_eq!(on_disk.custom_handler, built_in.custom_handler);
        assert_eq!(on_disk.max_concurrent_calls, built_in.max_concurrent_calls);
        assert_eq!(on_disk.function_timeout, built_in.function_timeout);
    }

    #[test]
    fn loads_the_repository_app() {
        let cfg = HostConfig::load(&repo_root(), &BTreeMap::new()).unwrap();
        assert_eq!(cfg.max_concurrent_calls, 16);
        assert_eq!(cfg.function_timeout, Some(Duration::from_secs(600)));
        let ch = cfg.custom_handler.as_ref().unwrap();
        assert_eq!(ch.default_executable_path, "azureml-dsr");
        assert_eq!(ch.arguments, vec!["handler".to_string()]);
        assert_eq!(cfg.functions.len(), 10);
        assert_eq!(
            cfg.function("dsr-intake").unwrap().trigger,
            Trigger::ServiceBus {
                binding: "message".into(),
                queue_name: "dsr-intake".into(),
                connection: "ServiceBusConnection".into(),
                data_type: None
            }
        );
        assert_eq!(
            cfg.function("retention-sweep").unwrap().trigger,
            Trigger::Timer {
                binding: "timer".into(),
                schedule: "0 0 3 * * *".into(),
                use_monitor: true,
                run_on_startup: false
            }
        );
        assert_eq!(
            cfg.function("workspace-deleted").unwrap().trigger,
            Trigger::EventGrid {
                binding: "event".into()
            }
        );
        let sb = cfg
            .functions
            .iter()
            .filter(|f| matches!(f.trigger, Trigger::ServiceBus { .. }))
            .count();
        assert_eq!(sb, 8);
    }

    #[test]
    fn setting_overrides_default_schedule() {
        let settings = BTreeMap::from([(
            "RETENTION_SWEEP_SCHEDULE".to_string(),
            "0 */5 * * * *".to_string(),
        )]);
        let cfg = HostConfig::load(&repo_root(), &settings).unwrap();
        assert!(
            matches!(&cfg.function("retention-sweep").unwrap().trigger, Trigger::Timer { schedule, .. } if schedule == "0 */5 * * * *")
        );
    }

    #[test]
    fn expressions_and_timespans() {
        let s = BTreeMap::from([("Q".to_string(), "dsr-x".to_string())]);
        assert_eq!(resolve_expression("%Q%", &s).unwrap(), "dsr-x");
        assert_eq!(
            resolve_expression("pre-%Q%-post 100%%", &s).unwrap(),
            "pre-dsr-x-post 100%"
        );
        assert!(resolve_expression("%MISSING%", &s).is_err());
        assert!(resolve_expression("%Q", &s).is_err());
        assert_eq!(
            parse_timespan("00:10:00"),
            Some(Some(Duration::from_secs(600)))
        );
        assert_eq!(
            parse_timespan("1.02:00:30"),
            Some(Some(Duration::from_secs(86_400 + 7200 + 30)))
        );
        assert_eq!(parse_timespan("-1"), Some(None));
        assert_eq!(parse_timespan("10 minutes"), None);
    }
}
