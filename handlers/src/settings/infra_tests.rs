//! The shipped deployment against the code: the settings infra sets, the containers,
//! queues and roles the adapters use.
use super::*;

fn repo_file(rel: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Plausible values for functionapp.bicep's parameters, as main.bicep passes them.
fn param(name: &str) -> Option<String> {
    Some(
        match name {
            "hostStorageName" => "stdsrhost123",
            "identityClientId" => "00000000-0000-0000-0000-0000000000c1",
            "serviceBusFqdn" => "sb-dsr-abc.servicebus.windows.net",
            "appInsightsConnectionString" => {
                "InstrumentationKey=00000000-0000-0000-0000-000000000000"
            }
            "appInsightsAuthenticationString" => "ClientId=x;Authorization=AAD",
            "logSalt" => "6f1c2a1e-58c4-4be0-9d2a-4d1b3c9f0a77",
            "stateBlobEndpoint" => "https://stdsrstate123.blob.core.windows.net/",
            "retentionSweepSchedule" => "0 30 2 * * *",
            "jobRetentionEnabled" => "False",
            "jobRetentionDays" => "365",
            "stateRetentionDays" => "90",
            "telemetryPurgeEnabled" => "False",
            "exportLinkDays" => "7",
            "maxDeliveryCount" => "10",
            _ => return None,
        }
        .to_string(),
    )
}

fn shipped() -> Vec<(String, String)> {
    render_app_settings(&repo_file("infra/app-settings.json"), &param).unwrap()
}

#[test]
fn the_shipped_settings_start_azure_mode_with_azure_adapters_only() {
    let app = AppSettings::load(&Env::from_pairs(shipped()), &Overrides::default()).unwrap();
    assert_eq!(app.mode, Mode::Azure);
    assert!(matches!(app.adapters, Adapters::Azure(_)));
    assert_eq!(app.tunables.state_account, "stdsrstate123");
    // Bicep's string(false) is "False": it must parse, not fall back to a default.
    assert!(!app.tunables.telemetry_purge_enabled);
    assert_eq!(app.tunables.retention_days, 365);
    // Job-history retention deletes every user's jobs: off unless enabled explicitly.
    assert!(!app.tunables.job_retention_enabled);
}

#[test]
fn every_setting_azure_mode_requires_is_set_by_infra() {
    let names: Vec<String> = shipped().into_iter().map(|(n, _)| n).collect();
    for s in SPECS.iter().filter(|s| s.applies != Applies::Local) {
        let set = names.iter().any(|n| n == s.name);
        assert!(
            set || (!s.required_in_azure && !s.default.is_empty())
                || s.name.starts_with("FUNCTIONS_")
                || s.name == "DSR_LOG",
            "{} is read in Azure mode but neither set by infra/app-settings.json nor documented with a default",
            s.name
        );
        assert!(
            !s.required_in_azure || set || s.name == "DSR_MODE",
            "{} is required in Azure mode but infra does not set it",
            s.name
        );
    }
    // Nothing infra sets for the handler is unknown to it (a renamed setting would be).
    for n in names.iter().filter(|n| n.starts_with("DSR_")) {
        assert!(
            SPECS.iter().any(|s| s.name == n),
            "infra sets {n}, which the code never reads"
        );
    }
    for s in SPECS.iter().filter(|s| s.applies == Applies::Local) {
        assert!(
            !names.contains(&s.name.to_string()),
            "infra sets the local-mode setting {}",
            s.name
        );
    }
}

/// `var <name> = [ 'a' 'b' ]` in a Bicep file.
fn bicep_list(text: &str, var: &str) -> Vec<String> {
    let start = text
        .find(&format!("var {var} = ["))
        .unwrap_or_else(|| panic!("var {var}"));
    let rest = &text[start..];
    let body = &rest[..rest.find(']').unwrap()];
    body.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn every_state_container_is_declared_in_infra() {
    let declared = bicep_list(
        &repo_file("infra/modules/storage-state.bicep"),
        "containers",
    );
    for c in crate::state::CONTAINERS {
        assert!(
            declared.iter().any(|d| d == c),
            "state container {c} is not declared in storage-state.bicep ({declared:?})"
        );
    }
}

#[test]
fn every_queue_is_declared_with_the_roles_the_handler_needs() {
    use crate::ports::bus::queues;
    let sb = repo_file("infra/modules/servicebus.bicep");
    let slice_types = bicep_list(&sb, "sliceTypes");
    for t in crate::domain::plan::ResourceType::ALL {
        assert!(
            slice_types.iter().any(|s| s == t.as_str()),
            "no dsr-slice-{} queue in servicebus.bicep",
            t.as_str()
        );
    }
    for q in [queues::INTAKE, queues::COMPLETIONS, queues::RESULTS] {
        assert!(
            sb.contains(&format!("name: '{q}'")),
            "queue {q} not declared in servicebus.bicep"
        );
    }
    // The handler sends (completions, results, slice tasks) and the host receives for it.
    for role in ["sbDataSender", "sbDataReceiver"] {
        assert!(
            sb.contains(&format!("roleDefinitions', {role})")),
            "servicebus.bicep assigns no {role}"
        );
    }
}

#[test]
fn every_adapter_has_its_role_assignment() {
    // (module, role variable): blob state + SAS links, workspace blobs and Files, purge.
    for (file, role) in [
        (
            "infra/modules/storage-state.bicep",
            "storageBlobDataContributor",
        ),
        ("infra/modules/storage-state.bicep", "storageBlobDelegator"),
        (
            "infra/modules/workspace-storage-access.bicep",
            "storageBlobDataContributor",
        ),
        (
            "infra/modules/workspace-storage-access.bicep",
            "storageFileDataPrivilegedContributor",
        ),
        ("infra/modules/telemetry-access.bicep", "dataPurger"),
    ] {
        let text = repo_file(file);
        assert!(
            text.contains(&format!("roleDefinitions', {role})")),
            "{file} does not assign {role}"
        );
    }
    let ws = repo_file("infra/modules/workspace-access.bicep");
    assert!(
        ws.contains("roleAssignments@"),
        "workspace-access.bicep assigns no role on the ML workspace"
    );
}

/// The chained audit trail (issue 20) only ever creates blobs in dsr-audit, so it must stay
/// WORM: the container keeps a time-based immutability policy of at least the CCPA 24 months.
#[test]
fn the_audit_container_stays_worm() {
    let bicep = repo_file("infra/modules/storage-state.bicep");
    let containers = bicep_list(&bicep, "containers");
    let audit = containers
        .iter()
        .position(|c| c == crate::state::AUDIT)
        .expect("dsr-audit declared");
    let policy = bicep
        .find("containers/immutabilityPolicies@")
        .map(|i| &bicep[i..])
        .expect("an immutability policy is declared");
    let policy = &policy[..policy.find("\n}").unwrap_or(policy.len())];
    assert!(
        policy.contains(&format!("parent: dataContainers[{audit}]")),
        "the immutability policy is not on dsr-audit: {policy}"
    );
    assert!(policy.contains("immutabilityPeriodSinceCreationInDays: auditRetentionDays"));
    assert!(bicep.contains("param auditRetentionDays int = 730"));
}
