//! `timerTrigger` payloads: `{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{...}|null,
//! "IsPastDue":bool}` (ScheduleStatus is null without a monitor; `Last` is year 1 before the
//! first run).

use serde_json::Value;
use time::OffsetDateTime;

use super::envelope::InvocationRequest;
use super::{type_name, ProtocolError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleStatus {
    pub last: Option<OffsetDateTime>,
    pub next: Option<OffsetDateTime>,
    pub last_updated: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerInfo {
    pub adjust_for_dst: bool,
    pub schedule_status: Option<ScheduleStatus>,
    pub is_past_due: bool,
}

impl TimerInfo {
    pub fn from_envelope(req: &InvocationRequest, binding: &str) -> Result<Self, ProtocolError> {
        let raw = req.trigger(binding)?;
        let owned;
        let obj = match raw {
            Value::Object(o) => o,
            Value::String(s) => {
                owned = serde_json::from_str::<Value>(s).map_err(|_| {
                    ProtocolError::new(format!(
                        "Data.{binding}: a string that is not a timer object"
                    ))
                })?;
                owned.as_object().ok_or_else(|| {
                    ProtocolError::new(format!("Data.{binding}: expected a timer object"))
                })?
            }
            other => {
                return Err(ProtocolError::new(format!(
                    "Data.{binding}: expected a timer object, found {}",
                    type_name(other)
                )))
            }
        };
        let is_past_due = match obj.get("IsPastDue") {
            Some(Value::Bool(b)) => *b,
            None | Some(Value::Null) => false,
            Some(other) => {
                return Err(ProtocolError::new(format!(
                    "Data.{binding}.IsPastDue: expected a boolean, found {}",
                    type_name(other)
                )))
            }
        };
        let dt = |o: &serde_json::Map<String, Value>, k: &str| {
            o.get(k)
                .and_then(Value::as_str)
                .and_then(super::datetime::parse)
        };
        let schedule_status = match obj.get("ScheduleStatus") {
            Some(Value::Object(s)) => Some(ScheduleStatus {
                last: dt(s, "Last"),
                next: dt(s, "Next"),
                last_updated: dt(s, "LastUpdated"),
            }),
            None | Some(Value::Null) => None,
            Some(other) => {
                return Err(ProtocolError::new(format!(
                    "Data.{binding}.ScheduleStatus: expected an object or null, found {}",
                    type_name(other)
                )))
            }
        };
        let adjust_for_dst = obj
            .get("Schedule")
            .and_then(|s| s.get("AdjustForDST"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Self {
            adjust_for_dst,
            schedule_status,
            is_past_due,
        })
    }
}
