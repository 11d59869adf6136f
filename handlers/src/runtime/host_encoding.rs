//! Builds the exact invocation request the Functions host POSTs to a custom handler, so the
//! local runtime exercises the same parsing paths as production: the double-encoded Service Bus
//! body, Metadata values JSON-encoded as strings, .NET datetime shapes, and the host's quirk of
//! merging a JSON body's top-level properties into Metadata (overwriting system keys).
//!
//! Rules come from `shared/reference/functions-custom-handler.md` and are checked against the
//! fixtures in `tests/fixtures/functions-host/`.

use serde_json::{json, Map, Value};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::adapters::local::sqlite_queue::{Delivery, TimerStatus};

/// Reported in `X-Azure-Functions-HostVersion`; "local" makes it obvious in handler logs that
/// the real host was not involved.
pub(crate) const HOST_VERSION: &str = "4.0.0-local";
pub(crate) const USER_AGENT: &str = "Azure-Functions-Host/4.x (local azureml-dsr runtime)";

/// Service Bus messages without a TimeToLive expire at DateTime.MaxValue (seconds precision).
const NEVER_EXPIRES_UTC: &str = "9999-12-31T23:59:59";
const NEVER_EXPIRES: &str = "9999-12-31T23:59:59+00:00";

const NAIVE: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
const UTC_NOW: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z");

/// `Metadata.sys`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sys {
    pub method_name: String,
    pub utc_now: OffsetDateTime,
    pub rand_guid: Uuid,
}

impl Sys {
    pub fn now(function: &str) -> Self {
        Self {
            method_name: function.to_string(),
            utc_now: OffsetDateTime::now_utc(),
            rand_guid: Uuid::new_v4(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "MethodName": self.method_name,
            "UtcNow": self.utc_now.to_offset(time::UtcOffset::UTC).format(UTC_NOW).expect("formattable"),
            "RandGuid": self.rand_guid.to_string(),
        })
    }
}

/// What the Service Bus extension reports as `Metadata.Client`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceBusClient {
    pub fully_qualified_namespace: String,
    pub identifier: String,
}

impl ServiceBusClient {
    pub fn local(namespace: &str) -> Self {
        Self {
            fully_qualified_namespace: namespace.to_string(),
            identifier: format!("{namespace}-{}", Uuid::new_v4()),
        }
    }
}

/// .NET `DateTime` as the host writes it: no offset, sub-seconds dropped.
pub(crate) fn dotnet_datetime(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(NAIVE)
        .expect("formattable")
}

/// .NET `DateTimeOffset` as the host writes it in Service Bus metadata: `+00:00`, no sub-seconds.
pub(crate) fn dotnet_datetime_offset(t: OffsetDateTime) -> String {
    format!("{}+00:00", dotnet_datetime(t))
}

/// Json.NET round-trip form used inside TimerInfo: fraction only when non-zero, trailing zeros
/// trimmed (`FFFFFFF`), then `+00:00`.
pub(crate) fn dotnet_roundtrip(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let ticks = t.nanosecond() / 100;
    let frac = if ticks == 0 {
        String::new()
    } else {
        format!(".{ticks:07}").trim_end_matches('0').to_string()
    };
    format!("{}{frac}+00:00", dotnet_datetime(t))
}

/// `default(DateTime)`: what TimerInfo.ScheduleStatus.Last holds before the first run. Stored
/// as this instant so the durable status needs no special "never ran" marker.
pub(crate) const DOTNET_MIN_TIME: OffsetDateTime = time::macros::datetime!(0001-01-01 00:00:00 UTC);

/// A Metadata value: objects stay nested, everything else is JSON-encoded into a string
/// (`"abc"` -> `"\"abc\""`, `1` -> `"1"`). `None` for nulls, which the host drops.
fn metadata_value(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(_) => Some(v.clone()),
        other => Some(Value::String(other.to_string())),
    }
}

fn encoded(s: &str) -> Value {
    Value::String(Value::String(s.to_string()).to_string())
}

/// Host rule: keys ending in "trigger" are dropped from Metadata.
fn finish_metadata(mut md: Map<String, Value>, sys: &Sys) -> Value {
    md.retain(|k, v| !k.to_ascii_lowercase().ends_with("trigger") && !v.is_null());
    md.insert("sys".into(), sys.to_json());
    Value::Object(md)
}

/// Request body for a serviceBusTrigger invocation.
pub(crate) fn servicebus_request(
    binding: &str,
    data_type: Option<&str>,
    d: &Delivery,
    client: &ServiceBusClient,
    sys: &Sys,
) -> Value {
    let binary = data_type.is_some_and(|t| t.eq_ignore_ascii_case("binary"));
    let text = String::from_utf8_lossy(&d.body);
    let data = if binary {
        use base64::Engine as _;
        Value::String(base64::engine::general_purpose::STANDARD.encode(&d.body))
    } else {
        // The extension hands the host a string; the host JSON-encodes it again: double encoding.
        encoded(&text)
    };

    let mut md = Map::new();
    for k in [
        "MessageReceiver",
        "MessageSession",
        "MessageActions",
        "SessionActions",
        "ReceiveActions",
    ] {
        md.insert(k.into(), json!({}));
    }
    md.insert(
        "Client".into(),
        json!({
            "FullyQualifiedNamespace": client.fully_qualified_namespace,
            "IsClosed": false,
            "TransportType": 0,
            "Identifier": client.identifier,
        }),
    );
    md.insert(
        "DeliveryCount".into(),
        Value::String(d.delivery_count.to_string()),
    );
    md.insert("LockToken".into(), encoded(&d.lock_token));
    md.insert(
        "ExpiresAtUtc".into(),
        Value::String(NEVER_EXPIRES_UTC.into()),
    );
    md.insert("ExpiresAt".into(), Value::String(NEVER_EXPIRES.into()));
    md.insert(
        "EnqueuedTimeUtc".into(),
        Value::String(dotnet_datetime(d.enqueued_time)),
    );
    md.insert(
        "EnqueuedTime".into(),
        Value::String(dotnet_datetime_offset(d.enqueued_time)),
    );
    md.insert("MessageId".into(), encoded(&d.message_id));
    if let Some(ct) = &d.content_type {
        md.insert("ContentType".into(), encoded(ct));
    }
    md.insert(
        "SequenceNumber".into(),
        Value::String(d.sequence_number.to_string()),
    );
    if let Some(c) = &d.correlation_id {
        md.insert("CorrelationId".into(), encoded(c));
    }
    let props: Map<String, Value> = d.application_properties.clone().into_iter().collect();
    md.insert("ApplicationProperties".into(), Value::Object(props.clone()));
    md.insert("UserProperties".into(), Value::Object(props));
    if let Some(s) = &d.session_id {
        md.insert("SessionId".into(), encoded(s));
    }

    // Host quirk: a string trigger value holding a JSON object has its top-level non-array
    // properties merged into Metadata, overwriting system keys of the same name.
    if !binary {
        if let Ok(Value::Object(body)) = serde_json::from_str::<Value>(&text) {
            for (k, v) in body {
                if v.is_array() {
                    continue;
                }
                match metadata_value(&v) {
                    Some(mv) => md.insert(k, mv),
                    None => md.remove(&k),
                };
            }
        }
    }

    json!({ "Data": { binding: data }, "Metadata": finish_metadata(md, sys) })
}

/// Request body for a timerTrigger invocation. `status` is None when the function does not use
/// the schedule monitor.
pub(crate) fn timer_request(
    binding: &str,
    status: Option<&TimerStatus>,
    is_past_due: bool,
    sys: &Sys,
) -> Value {
    let status = status.map(|s| {
        json!({
            "Last": dotnet_roundtrip(s.last),
            "Next": dotnet_roundtrip(s.next),
            "LastUpdated": dotnet_roundtrip(s.last_updated),
        })
    });
    json!({
        "Data": { binding: { "Schedule": { "AdjustForDST": true }, "ScheduleStatus": status, "IsPastDue": is_past_due } },
        "Metadata": finish_metadata(Map::new(), sys),
    })
}

/// Request body for an eventGridTrigger invocation: the event object, and `Metadata.data`
/// repeating `event.data` (Event Grid and CloudEvents schemas both call it `data`).
pub(crate) fn eventgrid_request(binding: &str, event: &Value, sys: &Sys) -> Value {
    let mut md = Map::new();
    if let Some(data) = event.get("data").and_then(metadata_value) {
        md.insert("data".into(), data);
    }
    json!({ "Data": { binding: event }, "Metadata": finish_metadata(md, sys) })
}

/// Headers the host sends with every invocation.
pub(crate) fn invocation_headers(invocation_id: Uuid) -> [(&'static str, String); 4] {
    [
        ("X-Azure-Functions-InvocationId", invocation_id.to_string()),
        ("X-Azure-Functions-HostVersion", HOST_VERSION.to_string()),
        ("User-Agent", USER_AGENT.to_string()),
        ("Content-Type", "application/json".to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use time::macros::datetime;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../tests/fixtures/functions-host/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn sys(name: &str, now: OffsetDateTime, guid: &str) -> Sys {
        Sys {
            method_name: name.into(),
            utc_now: now,
            rand_guid: guid.parse().unwrap(),
        }
    }

    #[test]
    fn servicebus_matches_derived_fixture() {
        let d = Delivery {
            queue: "q".into(),
            message_id: "msg-0001".into(),
            lock_token: "00000000-0000-0000-0000-000000000002".into(),
            delivery_count: 1,
            enqueued_time: datetime!(2025-01-02 03:04:05.678 UTC),
            sequence_number: 42,
            body: br#"{"workspaceId":"ws-1","action":"delete"}"#.to_vec(),
            content_type: Some("application/json".into()),
            correlation_id: Some("corr-0001".into()),
            session_id: Some("ws-1".into()),
            application_properties: BTreeMap::from([
                ("tenant".into(), json!("t1")),
                ("attempt".into(), json!(2)),
            ]),
            scheduled_enqueue_time: None,
            locked_until: datetime!(2025-01-02 03:05:05 UTC),
        };
        let client = ServiceBusClient {
            fully_qualified_namespace: "mynamespace.servicebus.windows.net".into(),
            identifier: "mynamespace.servicebus.windows.net-00000000-0000-0000-0000-000000000001"
                .into(),
        };
        let s = sys(
            "ProcessWorkspaceQueue",
            datetime!(2025-01-02 03:04:05.1234567 UTC),
            "00000000-0000-0000-0000-000000000003",
        );
        let got = servicebus_request("mySbMsg", None, &d, &client, &s);
        assert_eq!(
            got,
            fixture("derived-servicebus-session-json-body-request.json")
        );
        // Double encoding: decoding Data twice yields the body object.
        let once: String = serde_json::from_value(got["Data"]["mySbMsg"].clone()).unwrap();
        let inner: String = serde_json::from_str(&once).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&inner).unwrap(),
            json!({"workspaceId":"ws-1","action":"delete"})
        );
    }

    #[test]
    fn body_properties_overwrite_system_keys_and_arrays_are_skipped() {
        let d = Delivery {
            queue: "q".into(),
            message_id: "real".into(),
            lock_token: "t".into(),
            delivery_count: 3,
            enqueued_time: datetime!(2025-01-02 03:04:05 UTC),
            sequence_number: 7,
            body: br#"{"MessageId":"forged","n":5,"ok":true,"list":[1],"obj":{"a":1},"nothing":null,"xTrigger":"1"}"#.to_vec(),
            content_type: None,
            correlation_id: None,
            session_id: None,
            application_properties: BTreeMap::new(),
            scheduled_enqueue_time: None,
            locked_until: datetime!(2025-01-02 03:05:05 UTC),
        };
        let got = servicebus_request(
            "m",
            None,
            &d,
            &ServiceBusClient::local("local"),
            &Sys::now("f"),
        );
        let md = &got["Metadata"];
        assert_eq!(md["MessageId"], json!("\"forged\""));
        assert_eq!(md["n"], json!("5"));
        assert_eq!(md["ok"], json!("true"));
        assert_eq!(md["obj"], json!({"a":1}));
        assert_eq!(md["DeliveryCount"], json!("3"));
        assert_eq!(md["SequenceNumber"], json!("7"));
        for absent in [
            "list",
            "nothing",
            "xTrigger",
            "ContentType",
            "CorrelationId",
            "SessionId",
        ] {
            assert!(md.get(absent).is_none(), "{absent} must be absent");
        }
        assert_eq!(md["ApplicationProperties"], json!({}));
    }

    #[test]
    fn binary_data_type_is_plain_base64_without_merge() {
        let mut d = Delivery {
            queue: "q".into(),
            message_id: "m".into(),
            lock_token: "t".into(),
            delivery_count: 1,
            enqueued_time: datetime!(2025-01-02 03:04:05 UTC),
            sequence_number: 1,
            body: br#"{"a":1}"#.to_vec(),
            content_type: None,
            correlation_id: None,
            session_id: None,
            application_properties: BTreeMap::new(),
            scheduled_enqueue_time: None,
            locked_until: datetime!(2025-01-02 03:05:05 UTC),
        };
        let got = servicebus_request(
            "m",
            Some("binary"),
            &d,
            &ServiceBusClient::local("local"),
            &Sys::now("f"),
        );
        assert_eq!(got["Data"]["m"], json!("eyJhIjoxfQ=="));
        assert!(got["Metadata"].get("a").is_none());
        d.body = b"plain text".to_vec();
        let got = servicebus_request(
            "m",
            None,
            &d,
            &ServiceBusClient::local("local"),
            &Sys::now("f"),
        );
        assert_eq!(got["Data"]["m"], json!("\"plain text\""));
    }

    #[test]
    fn timer_matches_derived_fixture() {
        let s = sys(
            "NightlySweep",
            datetime!(2025-01-02 00:00:00.0040442 UTC),
            "00000000-0000-0000-0000-000000000004",
        );
        assert_eq!(
            timer_request("myTimer", None, false, &s),
            fixture("derived-timer-request-useMonitor-false.json")
        );
        let st = TimerStatus {
            last: datetime!(2025-01-01 03:00:00 UTC),
            next: datetime!(2025-01-02 03:00:00 UTC),
            last_updated: datetime!(2025-01-01 03:00:00.0040442 UTC),
        };
        let got = timer_request("t", Some(&st), true, &s);
        assert_eq!(
            got["Data"]["t"],
            json!({"Schedule":{"AdjustForDST":true},"IsPastDue":true,"ScheduleStatus":{
                "Last":"2025-01-01T03:00:00+00:00","Next":"2025-01-02T03:00:00+00:00","LastUpdated":"2025-01-01T03:00:00.0040442+00:00"}})
        );
        let first = TimerStatus {
            last: DOTNET_MIN_TIME,
            ..st
        };
        let got = timer_request("t", Some(&first), false, &s);
        assert_eq!(
            got["Data"]["t"]["ScheduleStatus"]["Last"],
            json!("0001-01-01T00:00:00+00:00")
        );
    }

    #[test]
    fn eventgrid_matches_derived_fixture() {
        let expected = fixture("derived-eventgrid-aml-workspace-delete-request.json");
        let event = expected["Data"]["eventGridEvent"].clone();
        let s = sys(
            "OnWorkspaceDeleted",
            datetime!(2025-01-02 03:04:06.0000001 UTC),
            "00000000-0000-0000-0000-000000000006",
        );
        assert_eq!(eventgrid_request("eventGridEvent", &event, &s), expected);
    }

    #[test]
    fn headers() {
        let id = Uuid::new_v4();
        let h = invocation_headers(id);
        assert_eq!(h[0], ("X-Azure-Functions-InvocationId", id.to_string()));
        assert!(h[2].1.starts_with("Azure-Functions-Host/4"));
    }
}
