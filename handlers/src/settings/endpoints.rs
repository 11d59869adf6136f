//! The endpoint forms the settings accept: the state account's blob endpoint and the form every
//! account is addressed in, the Files endpoint, the run-history endpoint, and loopback-only URLs
//! for local mode. Validated here so a token is never sent in clear text or to a host a setting
//! did not name.

use url::Url;

use super::{err, SettingError};

/// `DSR_RUN_HISTORY_ENDPOINT`: an http(s) URL once `{region}` is filled in, with `{region}`
/// (if any) only in the host, so a region can never reach a path or another setting's host.
pub(super) fn run_history_template(v: &str) -> Result<String, SettingError> {
    const NAME: &str = "DSR_RUN_HISTORY_ENDPOINT";
    let filled = v.replace("{region}", "westeurope");
    let u = Url::parse(&filled).map_err(|e| err(NAME, format!("{v:?} is not a URL: {e}")))?;
    if !matches!(u.scheme(), "https" | "http") || u.host_str().is_none() {
        return Err(err(NAME, "must be an http(s) URL with a host"));
    }
    if v.contains("{region}") && !u.host_str().unwrap_or_default().contains("westeurope") {
        return Err(err(NAME, "{region} may only appear in the host"));
    }
    if u.query().is_some() || u.fragment().is_some() || v.matches("{region}").count() > 1 {
        return Err(err(NAME, "no query, fragment or second {region}"));
    }
    Ok(v.trim_end_matches('/').to_string())
}

/// `v` as a URL on a loopback host: local mode never talks to a real Azure endpoint.
pub(super) fn loopback_url(name: &'static str, v: &str) -> Result<Url, SettingError> {
    let url = Url::parse(v).map_err(|e| err(name, format!("{v:?} is not a URL: {e}")))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if !loopback {
        return Err(err(
            name,
            format!("{v:?}: in local mode only a local server (127.0.0.1) is allowed; set DSR_MODE=azure for Azure"),
        ));
    }
    Ok(url)
}

/// The state account's name and the endpoint form of every account, from the state account's
/// blob endpoint: `https://<account>.blob.<suffix>/` (any cloud) or path-style
/// `https://<host>:<port>/<account>` (Azurite, private test endpoints).
pub fn account_and_template(url: &Url) -> Result<(String, String), String> {
    if url.scheme() != "https" {
        return Err("must be https (tokens are never sent in clear text)".into());
    }
    let host = url.host_str().ok_or("has no host")?;
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let valid = |a: &str| {
        (3..=24).contains(&a.len())
            && a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    let is_ip = matches!(url.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)))
        || host.eq_ignore_ascii_case("localhost");
    if is_ip {
        let account = url
            .path_segments()
            .and_then(|mut s| s.next())
            .filter(|a| valid(a))
            .ok_or(
                "a path-style endpoint must name the account: https://<host>:<port>/<account>",
            )?;
        return Ok((
            account.to_string(),
            format!("https://{host}{port}/{{account}}"),
        ));
    }
    let (account, rest) = host
        .split_once('.')
        .ok_or("is not <account>.blob.<suffix>")?;
    if !valid(account) || !rest.starts_with("blob.") {
        return Err("is not https://<account>.blob.<suffix>/".into());
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err("must be the account endpoint, without a container or path".into());
    }
    Ok((
        account.to_string(),
        format!("https://{{account}}.{rest}{port}"),
    ))
}

/// The Files endpoint form from the blob one: `https://{account}.blob.<suffix>` becomes
/// `https://{account}.file.<suffix>`. A path-style (emulator) endpoint has no Files service at
/// the same address; it is kept as it is, so a request fails with the emulator's reason unless
/// `DSR_FILE_ENDPOINT` names one.
pub fn derived_file_template(blob_template: &str) -> String {
    blob_template.replacen("{account}.blob.", "{account}.file.", 1)
}

/// Validate a `DSR_FILE_ENDPOINT` value: a URL with `{account}` in its host or first path
/// segment, https (http only on a loopback host: tokens never cross a network in clear text),
/// no query.
pub fn file_endpoint_template(raw: &str) -> Result<String, String> {
    let raw = raw.trim().trim_end_matches('/');
    if raw.matches("{account}").count() != 1 {
        return Err("must contain {account} exactly once".into());
    }
    let probe =
        Url::parse(&raw.replace("{account}", "account0")).map_err(|e| format!("not a URL: {e}"))?;
    let loopback = match probe.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match probe.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err("must be https (http only on a loopback host)".into()),
    }
    if probe.query().is_some() || probe.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    let host = probe.host_str().unwrap_or_default();
    let in_path = probe.path().trim_start_matches('/') == "account0";
    if !(host.contains("account0") || in_path) {
        return Err("{account} must be in the host name or be the whole path".into());
    }
    Ok(raw.to_string())
}
