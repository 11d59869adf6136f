//! Logging and tracing in one place. Logs go to stdout (info) and stderr (warn/error) with
//! levels, because the Functions host keeps the response's `Logs` only on success. Subject
//! identifiers are never logged: code logs `ResolvedSubject::log_id()` (a salted hash), and
//! error text that may quote a URL or a blob name passes through [`redact`] first.

use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

use crate::settings::AppSettings;

/// `default_level` applies unless `DSR_LOG` says otherwise (`info` for the handler; the demo
/// keeps its console for people and logs warnings only).
pub(crate) fn init(default_level: &str, app: &AppSettings) {
    let filter = app
        .log_filter
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    let writer = std::io::stderr
        .with_max_level(tracing::Level::WARN)
        .or_else(std::io::stdout);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(false);
    let _ = if app.log_json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Error text with the personal parts taken out: e-mail addresses and UPNs (a Graph URL
/// `/users/alice@contoso.com`), the segment after `users/` or `Users/` (Graph ids, notebook
/// folders `Users/<alias>/…`), and query strings (a `$filter` can quote a mail address). What
/// stays — hosts, containers, operation names, status codes — is what an operator needs.
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        // Tokens end at whitespace and at the quotes and brackets error texts put around values.
        let end = rest
            .find(|c: char| {
                c.is_whitespace()
                    || matches!(
                        c,
                        '"' | '\'' | '`' | '(' | ')' | '[' | ']' | '<' | '>' | ','
                    )
            })
            .unwrap_or(rest.len());
        if end == 0 {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        out.push_str(&redact_token(&rest[..end]));
        rest = &rest[end..];
    }
    out
}

fn redact_token(token: &str) -> String {
    let (token, query) = match token.find('?') {
        Some(i) if token.contains('/') || token.contains('=') => (&token[..i], true),
        _ => (token, false),
    };
    let mut parts: Vec<String> = Vec::new();
    let mut after_users = false;
    for seg in token.split('/') {
        let personal = after_users || seg.contains('@') || seg.contains("%40");
        after_users = seg.eq_ignore_ascii_case("users");
        parts.push(if personal && !seg.is_empty() {
            "…".to_string()
        } else {
            seg.to_string()
        });
    }
    let mut s = parts.join("/");
    if query {
        s.push_str("?…");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn personal_parts_are_taken_out_and_the_rest_kept() {
        for (input, gone) in [
            ("GET https://graph.microsoft.com/v1.0/users/alice@contoso.com?$select=id: timed out", "alice"),
            ("GET https://graph.microsoft.com/v1.0/users?$filter=mail eq 'bob@contoso.com'", "bob"),
            ("read mlwstore0/code-1/Users/carol.smith/nb.ipynb: HTTP 403", "carol"),
            ("delete \"mlwstore0/code-1/users/dave/x\": HTTP 500", "dave"),
            ("user Erin.Example@Contoso.com not found", "Erin"),
            ("GET https://graph.microsoft.com/v1.0/users/frank%40contoso.com failed", "frank"),
        ] {
            let r = redact(input);
            assert!(!r.to_lowercase().contains(&gone.to_lowercase()), "{input} -> {r}");
        }
        let keep = "create container stdsrstate123/dsr-state: HTTP 409 ContainerAlreadyExists";
        assert_eq!(redact(keep), keep);
        assert_eq!(
            redact("GET https://management.azure.com/subscriptions/s/jobs/j1: HTTP 429"),
            "GET https://management.azure.com/subscriptions/s/jobs/j1: HTTP 429"
        );
    }
}
