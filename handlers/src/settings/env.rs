//! The process environment as read once at start-up (`Env`): the only reader of environment
//! variables in the crate; everything else receives the snapshot.

use super::*;

/// The environment as read at start-up (a snapshot, so tests build it from pairs).
#[derive(Debug, Clone, Default)]
pub struct Env(pub(super) BTreeMap<String, String>);

impl Env {
    pub(crate) fn from_process() -> Self {
        Self(std::env::vars().collect())
    }
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
    pub fn set(&mut self, k: impl Into<String>, v: impl Into<String>) {
        self.0.insert(k.into(), v.into());
    }
    /// A listed setting's value; empty or blank counts as unset (App Service keeps empty values).
    pub(super) fn get(&self, name: &'static str) -> Option<&str> {
        debug_assert!(
            SPECS.iter().any(|s| s.name == name),
            "{name} is read but not listed in settings::SPECS"
        );
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
    pub(super) fn parse<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, SettingError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        let n: T = v
            .parse()
            .map_err(|_| err(name, format!("{v:?} is not a number")))?;
        if !range.contains(&n) {
            return Err(err(
                name,
                format!("{n} is outside {}..={}", range.start(), range.end()),
            ));
        }
        Ok(n)
    }
    pub(super) fn flag(&self, name: &'static str, default: bool) -> Result<bool, SettingError> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(v) => Err(err(name, format!("{v:?} is not true or false"))),
        }
    }
    pub(super) fn url(&self, name: &'static str, default: &str) -> Result<Url, SettingError> {
        let v = self.get(name).unwrap_or(default);
        Url::parse(v).map_err(|e| err(name, format!("{v:?} is not a URL: {e}")))
    }
    /// Variables named like ours that nothing reads: most likely a typo, worth a warning.
    pub(crate) fn unknown_dsr_names(&self) -> Vec<String> {
        self.0
            .keys()
            .filter(|k| k.starts_with("DSR_") && !SPECS.iter().any(|s| s.name == k.as_str()))
            .cloned()
            .collect()
    }
}
