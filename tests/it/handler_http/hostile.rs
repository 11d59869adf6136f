//! Generated hostile payloads against the running handler over HTTP: random bytes, random
//! JSON in every trigger slot, and valid-looking DSRs, slice tasks and completions with one
//! field made hostile. Whatever arrives, the handler answers JSON with 200 (a DSR rejected
//! with a reason is a success for the host) or a 4xx — never a 5xx, which would make the
//! host retry garbage, never a dropped connection (a panic) — and keeps serving.

use super::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const FUNCTIONS: [&str; 10] = [
    "dsr-intake",
    "dsr-aggregate",
    "slice-jobs",
    "slice-models",
    "slice-data",
    "slice-compute",
    "slice-notebooks",
    "slice-telemetry",
    "retention-sweep",
    "workspace-deleted",
];
const WS: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w1";

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        Just(String::new()),
        Just("*".to_string()),
        Just("%".to_string()),
        Just("../../etc/passwd".to_string()),
        Just("/etc/passwd".to_string()),
        Just("a/../../b".to_string()),
        Just("C:\\Windows\\system32".to_string()),
        Just("\u{0}\u{202e}\u{feff}".to_string()),
        Just("00000000-0000-0000-0000-000000000000".to_string()),
        Just("x".repeat(70_000)),
        Just("é".repeat(5_000)),
        Just(WS.to_string()),
        Just(format!("{WS}/../../other")),
        Just("9999-99-99T99:99:99Z".to_string()),
    ]
}

fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(u64::MAX)),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Valid-looking messages of each kind, before one field is made hostile.
fn templates() -> Vec<Value> {
    let subject = json!({"objectId": "11111111-2222-3333-4444-555555555555", "upn": "a@contoso.com", "notebookAliases": ["a"]});
    vec![
        json!({"schemaVersion": "1.0", "requestId": "R-1", "type": "delete", "dryRun": false,
               "subject": {"upn": "a@contoso.com"}, "scope": {"workspaces": [WS]}}),
        json!({"requestId": "R-1", "type": "delete", "dryRun": false, "subject": subject,
               "workspace": WS, "resourceType": "jobs", "key": "w1-jobs", "hold": null, "chunk": 0}),
        json!({"requestId": "R-1", "key": "w1-jobs"}),
        json!({"IsPastDue": false, "ScheduleStatus": null}),
        json!({"id": "1", "eventType": "Microsoft.Resources.ResourceDeleteSuccess", "subject": WS,
               "eventTime": "2026-01-01T00:00:00Z", "data": {"resourceUri": WS, "operationName": "Microsoft.MachineLearningServices/workspaces/delete"},
               "dataVersion": "", "metadataVersion": "1", "topic": "/subscriptions/00000000-1111-2222-3333-444444444444"}),
    ]
}

/// Replace (or remove) the value at a random path of `v`.
fn mutate(v: &mut Value, path: &[usize], new: Option<Value>) {
    let Some((&i, rest)) = path.split_first() else {
        if let Some(n) = new {
            *v = n;
        }
        return;
    };
    match v {
        Value::Object(m) if !m.is_empty() => {
            let key = m.keys().nth(i % m.len()).cloned().unwrap();
            if rest.is_empty() && new.is_none() {
                m.remove(&key);
            } else {
                mutate(m.get_mut(&key).unwrap(), rest, new);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let n = a.len();
            mutate(&mut a[i % n], rest, new)
        }
        _ => {
            if let Some(n) = new {
                *v = n;
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    Envelope {
        slot: String,
        payload: Value,
        as_string: bool,
    },
}

fn body() -> impl Strategy<Value = Body> {
    let slot = prop_oneof![
        Just("message".to_string()),
        Just("mySbMsg".to_string()),
        Just("timer".to_string()),
        Just("event".to_string()),
        "[a-z]{0,8}",
    ];
    let mutated = (
        0..templates().len(),
        proptest::collection::vec(0usize..16, 0..4),
        proptest::option::weighted(0.85, hostile_value()),
    )
        .prop_map(|(t, path, new)| {
            let mut v = templates()[t].clone();
            mutate(&mut v, &path, new);
            v
        });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512).prop_map(Body::Bytes),
        (slot.clone(), hostile_value(), any::<bool>()).prop_map(|(slot, payload, as_string)| {
            Body::Envelope {
                slot,
                payload,
                as_string,
            }
        }),
        (slot, mutated, any::<bool>()).prop_map(|(slot, payload, as_string)| Body::Envelope {
            slot,
            payload,
            as_string
        }),
    ]
}

#[test]
fn generated_hostile_payloads_get_json_2xx_or_4xx_and_the_handler_keeps_serving() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(spawn());
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seen = std::sync::Mutex::new(BTreeMap::<(String, u16), usize>::new());
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(proptest::sample::select(FUNCTIONS.to_vec()), body()),
            |(function, body)| {
                let bytes = match body {
                    Body::Bytes(b) => b,
                    Body::Envelope {
                        slot,
                        payload,
                        as_string,
                    } => {
                        let p = if as_string {
                            Value::String(payload.to_string())
                        } else {
                            payload
                        };
                        json!({"Data": {slot: p}, "Metadata": {"DeliveryCount": "1", "MessageId": "\"m-1\""}})
                            .to_string()
                            .into_bytes()
                    }
                };
                let (status, v) =
                    rt.block_on(post(&server, function, bytes, "application/json"));
                *seen
                    .lock()
                    .unwrap()
                    .entry((function.to_string(), status))
                    .or_default() += 1;
                prop_assert!(
                    status == 200 || (400..500).contains(&status),
                    "{function}: {status} {v}"
                );
                if status >= 400 {
                    prop_assert!(v["detail"].is_string() || v["error"].is_string(), "{v}");
                }
                Ok(())
            },
        )
        .unwrap();
    let alive = rt.block_on(reqwest::get(&server.base)).unwrap();
    assert_eq!(alive.status(), 200);
    // Not vacuous: the generator reached both answers, and intake accepted envelopes
    // (answering 200 with a rejection) as well as refusing malformed ones.
    let seen = seen.into_inner().unwrap();
    eprintln!("hostile payloads, (function, status) -> count: {seen:?}");
    assert!(
        seen.contains_key(&("dsr-intake".to_string(), 200)),
        "{seen:?}"
    );
    assert!(
        seen.contains_key(&("dsr-intake".to_string(), 400)),
        "{seen:?}"
    );
    assert!(
        seen.keys()
            .any(|(f, s)| f.starts_with("slice-") && *s == 400),
        "{seen:?}"
    );
    // Result messages are well-formed, and every rejection carries a readable reason.
    for m in server.bus.sent().iter().filter(|m| {
        m.queue == "dsr-results"
            && !azureml_dsr::functions::lifecycle::is_lifecycle_message(&m.body)
    }) {
        let r: Value = serde_json::from_slice(&m.body).unwrap();
        assert!(r["status"].is_string(), "{r}");
        if r["status"] == "rejected" {
            assert!(r["reason"].as_str().is_some_and(|x| !x.is_empty()), "{r}");
        }
    }
}
