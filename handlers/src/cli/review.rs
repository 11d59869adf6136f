//! `azureml-dsr review`: what a finished request left for a person to decide (display-name-only
//! assets), and the decision itself. `review <request-id>` lists the items with their evidence;
//! `review approve|reject <request-id> <item>... --reason TEXT [--by ACTOR]` records the decision
//! and applies it through [`crate::functions::review::decide`] (the same entry the intake
//! queue's control messages use). Works in both modes, against the configured state account.

use clap::{Args, Subcommand};

use crate::domain::request::RequestId;
use crate::domain::review::ReviewDecision;
use crate::functions::review::{decide, items, ReviewOutcome};
use crate::settings::AppSettings;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReviewArgs {
    /// List the review items of this request.
    pub request_id: Option<String>,
    #[command(subcommand)]
    pub action: Option<ReviewAction>,
}

#[derive(Subcommand, Debug)]
pub enum ReviewAction {
    /// Approve items: they are exported or deleted as the request says, and the report updated.
    Approve(DecideArgs),
    /// Reject items: they stay untouched; the decision is recorded and the report updated.
    Reject(DecideArgs),
}

#[derive(Args, Debug)]
pub struct DecideArgs {
    pub request_id: String,
    /// Review item ids (`rv-…`, from `azureml-dsr review <request-id>`) or resource ids.
    #[arg(required = true)]
    pub items: Vec<String>,
    /// Why (recorded in the audit trail and the report).
    #[arg(long)]
    pub reason: String,
    /// Who decides (recorded in the audit trail). Required when DSR_REVIEW_SEPARATE_APPROVER is set.
    #[arg(long)]
    pub by: Option<String>,
}

/// Recorded as the approver when `--by` is not given (and separation is not required).
pub const UNNAMED_ACTOR: &str = "cli (unnamed operator)";

pub async fn run(app: &AppSettings, args: ReviewArgs, json: bool) -> anyhow::Result<()> {
    let services = crate::wiring::build(app)?.services;
    match (args.request_id, args.action) {
        (Some(id), None) => list(&services, &id, json).await,
        (None, Some(ReviewAction::Approve(a))) => apply(&services, a, true, json).await,
        (None, Some(ReviewAction::Reject(a))) => apply(&services, a, false, json).await,
        _ => anyhow::bail!(
            "usage: azureml-dsr review <request-id> | review approve|reject <request-id> <item>... --reason TEXT [--by ACTOR]"
        ),
    }
}

async fn list(svc: &crate::functions::Services, id: &str, json: bool) -> anyhow::Result<()> {
    let rid = RequestId::parse(id).map_err(anyhow::Error::msg)?;
    let Some((version, list)) = items(svc, &rid).await? else {
        anyhow::bail!("request {id} has no report yet (unknown, or not finished)");
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"requestId": id, "reportVersion": version, "items": list})
            )?
        );
        return Ok(());
    }
    if list.is_empty() {
        println!("Request {id} (report version {version}) has nothing to review.");
        return Ok(());
    }
    println!(
        "Request {id}, report version {version}: {} item(s) for review\n",
        list.len()
    );
    for i in &list {
        let decision = match &i.decision {
            None => "PENDING".to_string(),
            Some(d) => format!(
                "{} by {} at {} ({})",
                if d.approved { "approved" } else { "rejected" },
                d.by,
                d.at,
                d.reason
            ),
        };
        println!(
            "{}  {} {}\n    evidence: {}\n    files: {}\n    decision: {decision}\n",
            i.id, i.resource_type, i.resource_id, i.evidence, i.files
        );
    }
    Ok(())
}

async fn apply(
    svc: &crate::functions::Services,
    a: DecideArgs,
    approve: bool,
    json: bool,
) -> anyhow::Result<()> {
    let request_id = RequestId::parse(&a.request_id).map_err(anyhow::Error::msg)?;
    if a.by.is_none() && approve && svc.settings.review_separate_approver {
        anyhow::bail!("DSR_REVIEW_SEPARATE_APPROVER is set: name the approver with --by");
    }
    let d = ReviewDecision {
        request_id,
        approve,
        items: a.items,
        approver: a.by.unwrap_or_else(|| UNNAMED_ACTOR.to_string()),
        reason: a.reason,
    };
    match decide(svc, &d, time::OffsetDateTime::now_utc()).await? {
        ReviewOutcome::Decided {
            version,
            approved,
            rejected,
            status,
        } => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"requestId": a.request_id, "reportVersion": version,
                        "approved": approved, "rejected": rejected, "status": status})
                );
            } else {
                println!(
                    "Recorded: {} approved, {} rejected. Report version {version}, status {status:?}.",
                    approved.len(),
                    rejected.len()
                );
            }
            Ok(())
        }
        ReviewOutcome::Refused(why) => anyhow::bail!("refused: {why}"),
    }
}
