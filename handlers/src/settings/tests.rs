//! Parsing and validation of the settings: errors name the setting, ranges hold, Azure mode
//! refuses local parts.
use super::*;

fn azure_env() -> Env {
    Env::from_pairs([
        ("DSR_MODE", "azure"),
        (
            "DSR_STATE_ACCOUNT_URL",
            "https://dsrstate123.blob.core.windows.net/",
        ),
        ("DSR_SERVICEBUS_NAMESPACE", "dsr-sb.servicebus.windows.net"),
        ("DSR_LOG_SALT", "0123456789abcdef-secret"),
    ])
}

#[test]
fn azure_mode_with_the_required_settings() {
    let s = AppSettings::load(&azure_env(), &Overrides::default()).unwrap();
    assert_eq!(s.mode, Mode::Azure);
    assert_eq!(s.tunables.state_account, "dsrstate123");
    let Adapters::Azure(a) = &s.adapters else {
        panic!("azure adapters")
    };
    assert_eq!(
        a.blob_endpoint_template,
        "https://{account}.blob.core.windows.net"
    );
    assert_eq!(a.arm_endpoint.as_str(), "https://management.azure.com/");
}

#[test]
fn azure_mode_names_each_missing_or_local_setting() {
    for missing in [
        "DSR_STATE_ACCOUNT_URL",
        "DSR_SERVICEBUS_NAMESPACE",
        "DSR_LOG_SALT",
    ] {
        let mut env = azure_env();
        env.0.remove(missing);
        let e = AppSettings::load(&env, &Overrides::default()).unwrap_err();
        assert_eq!(e.name, missing, "{e}");
    }
    for (local, v) in [
        ("DSR_STORAGE", "local"),
        ("DSR_DATA_DIR", "/tmp/x"),
        ("DSR_STATE_ACCOUNT", "dsrstate"),
    ] {
        let mut env = azure_env();
        env.set(local, v);
        assert_eq!(
            AppSettings::load(&env, &Overrides::default())
                .unwrap_err()
                .name,
            local
        );
    }
    let over = Overrides {
        storage: Some("local".into()),
        ..Default::default()
    };
    assert!(AppSettings::load(&azure_env(), &over).is_err());
}

#[test]
fn azure_mode_refuses_a_public_or_unresolved_salt() {
    for salt in [
        LOCAL_LOG_SALT,
        "short",
        "@Microsoft.KeyVault(SecretUri=https://v/s)",
    ] {
        let mut env = azure_env();
        env.set("DSR_LOG_SALT", salt);
        assert_eq!(
            AppSettings::load(&env, &Overrides::default())
                .unwrap_err()
                .name,
            "DSR_LOG_SALT"
        );
    }
}

#[test]
fn malformed_or_out_of_range_values_are_errors_not_defaults() {
    for (name, v) in [
        ("DSR_CHUNK_SIZE", "lots"),
        ("DSR_CHUNK_SIZE", "0"),
        ("DSR_EXPORT_LINK_DAYS", "30"),
        ("DSR_MAX_DELIVERY_COUNT", "-1"),
        ("DSR_RETENTION_DRY_RUN", "perhaps"),
        ("DSR_MODE", "cloud"),
        ("DSR_STORAGE", "s3"),
        ("DSR_ARM_ENDPOINT", "https://management.azure.com"),
        ("DSR_TELEMETRY_TABLES", "AmlRunEvent | union *"),
        ("DSR_TELEMETRY_TABLES", "AmlComputeClusterEvent"),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "99999"),
        ("DSR_LOG_FORMAT", "xml"),
        ("DSR_JOB_RETENTION_DAYS", "1"),
        ("DSR_JOB_RETENTION_DAYS", "29"),
        ("DSR_JOB_RETENTION_MAX_SHARE", "0"),
        ("DSR_RETENTION_DAYS", "30"),
    ] {
        let env = Env::from_pairs([(name, v)]);
        let e = AppSettings::load(&env, &Overrides::default()).unwrap_err();
        assert_eq!(e.name, name, "{name}={v}: {e}");
    }
    let ok = AppSettings::load(
        &Env::from_pairs([
            ("DSR_CHUNK_SIZE", "7"),
            ("DSR_ARM_ENDPOINT", "http://127.0.0.1:9"),
        ]),
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(ok.tunables.chunk_size, 7);
}

#[test]
fn file_endpoint_forms() {
    assert_eq!(
        derived_file_template("https://{account}.blob.core.chinacloudapi.cn"),
        "https://{account}.file.core.chinacloudapi.cn"
    );
    assert_eq!(
        file_endpoint_template("http://127.0.0.1:8080/{account}/").unwrap(),
        "http://127.0.0.1:8080/{account}"
    );
    assert!(file_endpoint_template("https://{account}.file.core.windows.net").is_ok());
    for bad in [
        "http://{account}.file.core.windows.net",
        "https://acct.file.core.windows.net",
        "https://{account}.file.core.windows.net?x=1",
        "https://h/{account}/{account}",
        "https://h/x/{account}",
    ] {
        assert!(file_endpoint_template(bad).is_err(), "{bad}");
    }
    let mut env = Env::from_pairs([
        ("DSR_MODE", "azure"),
        ("DSR_LOG_SALT", "0123456789abcdef-salt"),
        ("DSR_STATE_ACCOUNT_URL", "https://st1.blob.core.windows.net"),
        ("DSR_SERVICEBUS_NAMESPACE", "sb.servicebus.windows.net"),
    ]);
    let a = |env: &Env| match AppSettings::load(env, &Overrides::default()) {
        Ok(AppSettings {
            adapters: Adapters::Azure(a),
            ..
        }) => Ok(a.file_endpoint_template),
        Ok(_) => Err("not azure".to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert_eq!(a(&env).unwrap(), "https://{account}.file.core.windows.net");
    env.set("DSR_FILE_ENDPOINT", "http://127.0.0.1:9/{account}");
    assert_eq!(a(&env).unwrap(), "http://127.0.0.1:9/{account}");
    env.set("DSR_FILE_ENDPOINT", "http://files.example/{account}");
    assert!(a(&env).unwrap_err().contains("DSR_FILE_ENDPOINT"));
}

#[test]
fn endpoint_forms() {
    let t = |u: &str| account_and_template(&Url::parse(u).unwrap());
    assert_eq!(
        t("https://acct1.blob.core.chinacloudapi.cn").unwrap(),
        (
            "acct1".into(),
            "https://{account}.blob.core.chinacloudapi.cn".into()
        )
    );
    assert_eq!(
        t("https://127.0.0.1:10000/dsrstate").unwrap(),
        (
            "dsrstate".into(),
            "https://127.0.0.1:10000/{account}".into()
        )
    );
    for bad in [
        "http://acct.blob.core.windows.net",
        "https://127.0.0.1:10000/",
        "https://acct.file.core.windows.net",
        "https://acct.blob.core.windows.net/container",
        "https://AB.blob.core.windows.net",
    ] {
        assert!(t(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_local_constructor_equals_an_empty_environment() {
    let parsed = AppSettings::load(
        &Env::from_pairs([("DSR_DATA_DIR", "d")]),
        &Overrides::default(),
    )
    .unwrap();
    let built = AppSettings::local("d", StorageChoice::Local);
    assert_eq!(format!("{parsed:?}"), format!("{built:?}"));
}

#[test]
fn unknown_dsr_names_are_found() {
    let env = Env::from_pairs([
        ("DSR_CHUNKSIZE", "1"),
        ("DSR_CHUNK_SIZE", "1"),
        ("PATH", "/"),
    ]);
    assert_eq!(env.unknown_dsr_names(), vec!["DSR_CHUNKSIZE".to_string()]);
}

#[test]
fn share_snapshot_recheck_days_default_and_range() {
    let load = |pairs: &[(&'static str, &'static str)]| {
        AppSettings::load(
            &Env::from_pairs(pairs.iter().copied()),
            &Overrides::default(),
        )
    };
    assert_eq!(load(&[]).unwrap().tunables.share_snapshot_recheck_days, 30);
    assert_eq!(
        load(&[("DSR_SHARE_SNAPSHOT_RECHECK_DAYS", "7")])
            .unwrap()
            .tunables
            .share_snapshot_recheck_days,
        7
    );
    for bad in ["0", "3651", "soon"] {
        let e = load(&[("DSR_SHARE_SNAPSHOT_RECHECK_DAYS", bad)]).unwrap_err();
        assert_eq!(e.name, "DSR_SHARE_SNAPSHOT_RECHECK_DAYS", "{bad}: {e}");
    }
}
