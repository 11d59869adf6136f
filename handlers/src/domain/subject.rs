//! The data subject: who a request is about, how they are matched against workspace data, and
//! how they are named in logs (hashed, never in clear).
//!
//! Matching is deliberately narrow: an Entra object id must be equal as a GUID, a UPN equal
//! case-insensitively and well formed. Display names never match (they are not unique). An
//! empty, wildcard or malformed candidate never matches, so nothing can widen a subject to
//! "everyone" — collateral deletion is the worst bug this product can have.

use uuid::Uuid;

use super::ids::short_hash;

/// A user principal name or e-mail, validated and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Upn(String);

impl Upn {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s.len() > 256 {
            return Err("upn must be 1-256 characters".into());
        }
        let (local, domain) = s.split_once('@').ok_or("upn must contain '@'")?;
        let ok_char = |c: char| {
            !c.is_whitespace()
                && !c.is_control()
                && !matches!(c, '*' | '?' | '/' | '\\' | '@' | '"')
        };
        if local.is_empty()
            || domain.is_empty()
            || !local.chars().all(ok_char)
            || !domain.chars().all(ok_char)
            || !domain.contains('.')
        {
            return Err("upn is not a valid user principal name".into());
        }
        Ok(Upn(s.to_lowercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The part before '@', the default Azure ML notebooks folder name.
    pub(crate) fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or_default()
    }
}

impl TryFrom<String> for Upn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Upn::parse(&s)
    }
}
impl From<Upn> for String {
    fn from(u: Upn) -> String {
        u.0
    }
}

/// A subject after resolution against the identity directory: always has an object id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedSubject {
    pub object_id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub upn: Option<Upn>,
    /// The directory's display name: never identifies anyone, only lists display-name-only
    /// matches for a person's review (`domain::review`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Folder names under `Users/` in the notebooks share.
    #[serde(default)]
    pub notebook_aliases: Vec<String>,
    /// How many folder names the directory gives the subject that another person maps to as
    /// well (removed from `notebook_aliases`): the notebooks slice leaves them for review.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub notebook_alias_conflicts: u32,
}

impl ResolvedSubject {
    /// The identifier used in logs and traces: a salted hash, never the id itself.
    pub(crate) fn log_id(&self) -> String {
        log_hash(&self.object_id.to_string())
    }

    pub(crate) fn matches_object_id(&self, candidate: &str) -> bool {
        match Uuid::parse_str(candidate.trim()) {
            Ok(id) => !id.is_nil() && id == self.object_id,
            Err(_) => false,
        }
    }

    pub(crate) fn matches_tenant(&self, candidate: Option<&str>) -> bool {
        match (
            self.tenant_id,
            candidate.and_then(|c| Uuid::parse_str(c.trim()).ok()),
        ) {
            (Some(mine), Some(theirs)) => mine == theirs,
            // Unknown on either side: the object id alone is globally unique in Entra.
            _ => true,
        }
    }

    pub(crate) fn matches_upn(&self, candidate: &str) -> bool {
        match (&self.upn, Upn::parse(candidate)) {
            (Some(mine), Ok(theirs)) => *mine == theirs,
            _ => false,
        }
    }

    /// `Users/<alias>/` prefixes for the notebooks share; invalid aliases are dropped.
    pub(crate) fn notebook_prefixes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .notebook_aliases
            .iter()
            .filter(|a| valid_alias(a))
            .map(|a| format!("Users/{a}/"))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A folder name that can only ever name one folder: no separators, wildcards or dot segments.
pub(crate) fn valid_alias(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 128
        && a != "."
        && a != ".."
        && a.chars()
            .all(|c| !c.is_control() && !matches!(c, '/' | '\\' | '*' | '?' | '[' | ']'))
}

/// The public default salt: fine for the embedded demo, refused in Azure mode.
pub const LOCAL_LOG_SALT: &str = "azureml-dsr";

/// The salt of [`log_hash`], set once at start-up from the validated settings (`DSR_LOG_SALT`).
static LOG_SALT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Set the log-hash salt; the first call wins (one process, one salt).
pub(crate) fn set_log_salt(salt: &str) {
    let _ = LOG_SALT.set(salt.to_string());
}

/// Salted hash for logs. The salt keeps hashes from being reversed by hashing a directory of
/// known ids; until [`set_log_salt`] is called (tests, library use) the public local default.
pub(crate) fn log_hash(value: &str) -> String {
    let salt = LOG_SALT.get().map(String::as_str).unwrap_or(LOCAL_LOG_SALT);
    format!(
        "subj-{}",
        short_hash(&[salt, &value.trim().to_lowercase()], 16)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> ResolvedSubject {
        ResolvedSubject {
            object_id: Uuid::parse_str("11111111-1111-1111-1111-111111111111").unwrap(),
            tenant_id: Some(Uuid::parse_str("22222222-2222-2222-2222-222222222222").unwrap()),
            upn: Some(Upn::parse("Alice@Contoso.com").unwrap()),
            display_name: None,
            notebook_aliases: vec!["alice".into()],
            notebook_alias_conflicts: 0,
        }
    }

    #[test]
    fn empty_wildcard_and_malformed_candidates_never_match() {
        let a = alice();
        for c in [
            "",
            " ",
            "*",
            "%",
            "00000000-0000-0000-0000-000000000000",
            "1111",
            ".*",
            "@",
            "*@*",
            "alice",
        ] {
            assert!(!a.matches_object_id(c), "{c}");
            assert!(!a.matches_upn(c), "{c}");
        }
    }

    #[test]
    fn matches_exact_identity() {
        let a = alice();
        assert!(a.matches_object_id("11111111-1111-1111-1111-111111111111"));
        assert!(a.matches_tenant(Some("22222222-2222-2222-2222-222222222222")));
        assert!(!a.matches_tenant(Some("33333333-2222-2222-2222-222222222222")));
        assert!(a.matches_upn("ALICE@contoso.com"));
        assert!(!a.matches_upn("alice@contoso.com.evil"));
    }

    #[test]
    fn notebook_prefixes_reject_traversal() {
        let mut a = alice();
        a.notebook_aliases = vec![
            "".into(),
            "..".into(),
            "a/b".into(),
            "*".into(),
            "alice".into(),
        ];
        assert_eq!(a.notebook_prefixes(), vec!["Users/alice/".to_string()]);
    }

    #[test]
    fn log_hash_hides_the_id() {
        let h = alice().log_id();
        assert!(h.starts_with("subj-"));
        assert!(!h.contains("1111"));
    }
}
