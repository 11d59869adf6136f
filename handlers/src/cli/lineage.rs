//! `azureml-dsr lineage show <request-id>` and `azureml-dsr lineage decide <request-id> <model>
//! keep|retrain|retire --reason …`: the "derived from the subject's data" section of a report,
//! and the controller's decision on one of its models, recorded in the chained audit trail.
//! Nothing is deleted by either.

use clap::Subcommand;

use crate::domain::report::FinalReport;
use crate::domain::request::RequestId;
use crate::functions::lineage::{decide, Decision};
use crate::ports::blob::BlobStoreExt;
use crate::settings::AppSettings;
use crate::state::{StateStore, REPORTS};

#[derive(Subcommand, Debug)]
pub enum LineageAction {
    /// Print what the request's report lists as derived from the subject's data.
    Show { request_id: String },
    /// Record the controller's decision on a derived model (its ARM id or `name:version`).
    Decide {
        request_id: String,
        model: String,
        decision: Decision,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
    },
}

/// The request's report: the working copy while it is kept, else the certificate.
async fn report(state: &StateStore, id: &str) -> anyhow::Result<FinalReport> {
    let rid = RequestId::parse(id).map_err(|e| anyhow::anyhow!("request id {id:?}: {e}"))?;
    if let Some(r) = state.report(&rid).await? {
        return Ok(r);
    }
    for stem in ["certificate", "dry-run"] {
        if let Some(r) = state
            .store
            .read_json::<FinalReport>(&state.blob(REPORTS, format!("{rid}/{stem}.json")))
            .await?
        {
            return Ok(r);
        }
    }
    anyhow::bail!("no report for request {id}")
}

pub async fn run(app: &AppSettings, action: LineageAction, json: bool) -> anyhow::Result<()> {
    let state = crate::wiring::build_state(app)?;
    match action {
        LineageAction::Show { request_id } => {
            let r = report(&state, &request_id).await?;
            let l = r.derived_from_subject_data.unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&l)?);
            } else {
                print!("{}", crate::domain::lineage::render(&l));
            }
        }
        LineageAction::Decide {
            request_id,
            model,
            decision,
            reason,
        } => {
            let r = report(&state, &request_id).await?;
            let seq = decide(
                &state,
                &r,
                &model,
                decision,
                &reason,
                time::OffsetDateTime::now_utc(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"requestId": request_id, "model": model, "decision": decision, "auditPosition": seq})
                );
            } else {
                println!("recorded: {decision:?} for {model} (audit trail position {seq})");
            }
        }
    }
    Ok(())
}
