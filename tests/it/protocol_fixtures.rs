//! Every shared Functions-host fixture (tests/fixtures/functions-host, sources in its README)
//! parsed into the typed trigger payloads, quirks included.

use azureml_dsr::protocol::envelope::{InvocationRequest, InvocationResponse};
use azureml_dsr::protocol::eventgrid::{EventSchema, GridEvent};
use azureml_dsr::protocol::servicebus::{BodyEncoding, ServiceBusMessage};
use azureml_dsr::protocol::timer::TimerInfo;
use serde_json::{json, Value};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/functions-host"
);

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}")).unwrap()
}

#[test]
fn service_bus_session_fixture_double_encoded_with_shadowing_body() {
    let req = InvocationRequest::parse(
        read("derived-servicebus-session-json-body-request.json").as_bytes(),
    )
    .unwrap();
    let m = ServiceBusMessage::from_envelope(&req, "mySbMsg", BodyEncoding::Text).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&m.body).unwrap(),
        json!({"workspaceId": "ws-1", "action": "delete"})
    );
    assert_eq!(m.message_id.as_deref(), Some("msg-0001"));
    assert_eq!(m.delivery_count, 1);
    assert_eq!(m.sequence_number, Some(42));
    assert_eq!(m.session_id.as_deref(), Some("ws-1"));
    assert_eq!(m.correlation_id.as_deref(), Some("corr-0001"));
    assert_eq!(m.application_properties["attempt"], json!(2));
    assert_eq!(m.enqueued_time.unwrap().unix_timestamp(), 1_735_787_045);
    assert!(
        m.shadowed_keys.is_empty(),
        "workspaceId/action shadow no system key"
    );
}

#[test]
fn docs_queue_fixture_and_the_js_literal_from_host_pr_5028() {
    let req = InvocationRequest::parse(read("msdocs-customhandler-queue-request.json").as_bytes())
        .unwrap();
    let m = ServiceBusMessage::from_envelope(&req, "myQueueItem", BodyEncoding::Text).unwrap();
    assert_eq!(m.body, b"{ message: \"Message sent\" }");
    // DequeueCount is a number in the docs but a JSON-encoded string on the wire.
    assert_eq!(req.meta_u64("DequeueCount"), Some(1));
    assert!(req.meta_datetime("InsertionTime").is_some());

    // host-pr5028-queue-request.js.txt is a JS literal; transcribed here with its quirks:
    // string values JSON-encoded ('"hello"'), numbers as strings ('1'), sys as a JSON string.
    let txt = read("host-pr5028-queue-request.js.txt");
    assert!(txt.contains("myQueueItem: '\"hello\"'"));
    let transcribed = json!({
        "Data": {"myQueueItem": "\"hello\""},
        "Metadata": {"QueueTrigger": "\"hello\"", "DequeueCount": "1", "ExpirationTime": "\"2019-10-16T17:58:31+00:00\"",
                     "Id": "\"800ae4b3-bdd2-4c08-badd-f08e5a34b865\"", "sys": "{\"MethodName\":\"QueueTrigger\",\"UtcNow\":\"2019-10-09T17:58:32.2205399Z\"}"}
    });
    let req = InvocationRequest::parse(transcribed.to_string().as_bytes()).unwrap();
    let m = ServiceBusMessage::from_envelope(&req, "myQueueItem", BodyEncoding::Text).unwrap();
    assert_eq!(m.body, b"hello");
    assert_eq!(
        req.meta_string("Id").as_deref(),
        Some("800ae4b3-bdd2-4c08-badd-f08e5a34b865")
    );
    assert_eq!(req.meta_u64("DequeueCount"), Some(1));
    assert_eq!(
        req.meta_datetime("ExpirationTime")
            .unwrap()
            .unix_timestamp(),
        1_571_248_711
    );
    assert_eq!(req.meta("sys").unwrap()["MethodName"], "QueueTrigger");
}

#[test]
fn timer_fixture_with_null_schedule_status() {
    let req =
        InvocationRequest::parse(read("derived-timer-request-useMonitor-false.json").as_bytes())
            .unwrap();
    let t = TimerInfo::from_envelope(&req, "myTimer").unwrap();
    assert!(t.schedule_status.is_none() && !t.is_past_due && t.adjust_for_dst);
    let monitored = json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "IsPastDue": true,
        "ScheduleStatus": {"Last": "0001-01-01T00:00:00+00:00", "Next": "2025-01-03T03:00:00+00:00", "LastUpdated": "2025-01-02T03:00:00.1234567+00:00"}}}});
    let t = TimerInfo::from_envelope(
        &InvocationRequest::parse(monitored.to_string().as_bytes()).unwrap(),
        "timer",
    )
    .unwrap();
    assert!(t.is_past_due);
    assert_eq!(t.schedule_status.unwrap().last.unwrap().year(), 1);
}

#[test]
fn event_grid_fixtures_in_both_schemas() {
    let req = InvocationRequest::parse(
        read("derived-eventgrid-aml-workspace-delete-request.json").as_bytes(),
    )
    .unwrap();
    let e = GridEvent::from_envelope(&req, "eventGridEvent").unwrap();
    assert_eq!(e.schema, EventSchema::EventGrid);
    let a = e.resource_action().unwrap();
    assert_eq!(
        a.operation_name,
        "Microsoft.MachineLearningServices/workspaces/delete"
    );
    assert!(a.http_request_url.unwrap().contains("api-version"));
    assert_eq!(req.meta("data").unwrap()["operationName"], a.operation_name);

    for (name, schema, ty) in [
        (
            "msdocs-eventgrid-rg-resource-delete-success.json",
            EventSchema::EventGrid,
            "Microsoft.Resources.ResourceDeleteSuccess",
        ),
        (
            "msdocs-eventgrid-subscription-resource-delete-success.json",
            EventSchema::EventGrid,
            "Microsoft.Resources.ResourceDeleteSuccess",
        ),
        (
            "msdocs-eventgrid-aml-run-completed.json",
            EventSchema::EventGrid,
            "Microsoft.MachineLearningServices.RunCompleted",
        ),
        (
            "msdocs-eventgrid-aml-run-completed.cloudevent.json",
            EventSchema::CloudEvents,
            "Microsoft.MachineLearningServices.RunCompleted",
        ),
        (
            "msdocs-eventgrid-aml-run-status-changed.json",
            EventSchema::EventGrid,
            "Microsoft.MachineLearningServices.RunStatusChanged",
        ),
        (
            "msdocs-eventgrid-aml-model-registered.json",
            EventSchema::EventGrid,
            "Microsoft.MachineLearningServices.ModelRegistered",
        ),
        (
            "msdocs-eventgrid-aml-model-deployed.json",
            EventSchema::EventGrid,
            "Microsoft.MachineLearningServices.ModelDeployed",
        ),
        (
            "msdocs-eventgrid-aml-dataset-drift-detected.json",
            EventSchema::EventGrid,
            "Microsoft.MachineLearningServices.DatasetDriftDetected",
        ),
        (
            "msdocs-eventgrid-subscription-validation-event.json",
            EventSchema::EventGrid,
            "Microsoft.EventGrid.SubscriptionValidationEvent",
        ),
    ] {
        let v: Value = serde_json::from_str(&read(name)).unwrap();
        for form in [v.clone(), v[0].clone(), Value::String(v[0].to_string())] {
            let e = GridEvent::from_value(&form).unwrap_or_else(|err| panic!("{name}: {err}"));
            assert_eq!((e.schema, e.event_type.as_str()), (schema, ty), "{name}");
            assert!(!e.id.is_empty());
        }
    }
}

#[test]
fn response_fixtures_match_our_response_shape() {
    for name in [
        "msdocs-customhandler-response.json",
        "host-pr5028-response.json",
        "msdocs-customhandler-http-order-response.json",
    ] {
        let v: Value = serde_json::from_str(&read(name)).unwrap();
        let ours: InvocationResponse =
            serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ours.return_value, v["ReturnValue"], "{name}");
        let back = serde_json::to_value(&ours).unwrap();
        for k in ["Outputs", "Logs", "ReturnValue"] {
            assert!(back.get(k).is_some(), "{name}: {k}");
        }
    }
    // The HTTP-trigger request fixture is an envelope too (our functions are not HTTP-triggered).
    let req =
        InvocationRequest::parse(read("msdocs-customhandler-http-order-request.json").as_bytes())
            .unwrap();
    assert!(!req.data.is_empty());
}
