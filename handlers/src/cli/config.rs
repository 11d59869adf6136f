//! `azureml-dsr hold …` and `azureml-dsr workspace …`: the legal holds and the workspace scope,
//! kept in the state account (both modes) so every instance of the Function App sees the same
//! lists. Changes use optimistic concurrency; JSON in (`--from <file|->`), JSON out (`--json`).

use std::io::Read;
use std::path::PathBuf;

use clap::Subcommand;

use crate::domain::holds::{HoldSet, LegalHold};
use crate::domain::plan::ResourceType;
use crate::domain::workspace::WorkspaceId;
use crate::settings::AppSettings;
use crate::state::{StateStore, HOLDS_DOC, SCOPE_DOC};

#[derive(Subcommand, Debug)]
pub enum HoldAction {
    /// Add a legal hold (flags, or a JSON hold object with `--from`).
    Add {
        /// Hold id (unique).
        #[arg(long, required_unless_present = "from")]
        id: Option<String>,
        /// Why the data must be kept (shown in reports).
        #[arg(long, required_unless_present = "from")]
        reason: Option<String>,
        /// Only this person's data (Entra object id).
        #[arg(long)]
        subject: Option<uuid::Uuid>,
        /// Only this workspace (ARM id).
        #[arg(long)]
        workspace: Option<String>,
        /// Only these resource types (repeatable): jobs, models, data, compute, notebooks, telemetry.
        #[arg(long = "type")]
        types: Vec<String>,
        /// A JSON file (`-` for stdin) holding one hold: {"id","reason","subjectObjectId"?,"workspace"?,"resourceTypes"?}.
        #[arg(long, conflicts_with_all = ["id", "reason", "subject", "workspace", "types"])]
        from: Option<PathBuf>,
    },
    /// Remove a legal hold by id.
    Remove { id: String },
    /// List the legal holds.
    List,
}

#[derive(Subcommand, Debug)]
pub enum WorkspaceAction {
    /// Put a workspace (ARM id) in scope.
    Add { id: String },
    /// Take a workspace out of scope.
    Remove { id: String },
    /// List the workspaces in scope.
    List,
}

async fn state(app: &AppSettings) -> anyhow::Result<StateStore> {
    crate::wiring::build_state(app)
}

fn read_from(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::stdin().read_to_end(&mut b)?;
        Ok(b)
    } else {
        Ok(std::fs::read(path)?)
    }
}

fn hold_from_flags(
    id: Option<String>,
    reason: Option<String>,
    subject: Option<uuid::Uuid>,
    workspace: Option<String>,
    types: Vec<String>,
) -> anyhow::Result<LegalHold> {
    let resource_types = types
        .iter()
        .map(|t| {
            serde_json::from_value::<ResourceType>(serde_json::Value::String(t.clone()))
                .map_err(|_| anyhow::anyhow!("--type {t:?} is not a resource type"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(LegalHold {
        id: id.unwrap_or_default(),
        reason: reason.unwrap_or_default(),
        subject_object_id: subject,
        workspace: workspace
            .map(|w| WorkspaceId::parse(&w).map_err(anyhow::Error::msg))
            .transpose()?,
        resource_types,
    })
}

pub async fn hold(app: &AppSettings, action: HoldAction, json: bool) -> anyhow::Result<()> {
    let state = state(app).await?;
    let set = match action {
        HoldAction::Add {
            id,
            reason,
            subject,
            workspace,
            types,
            from,
        } => {
            let hold = match from {
                Some(path) => serde_json::from_slice::<LegalHold>(&read_from(&path)?)
                    .map_err(|e| anyhow::anyhow!("not a legal hold: {e}"))?,
                None => hold_from_flags(id, reason, subject, workspace, types)?,
            };
            anyhow::ensure!(!hold.id.trim().is_empty(), "a hold needs an id");
            anyhow::ensure!(!hold.reason.trim().is_empty(), "a hold needs a reason");
            state
                .update_config(HOLDS_DOC, |set: &mut HoldSet| {
                    anyhow::ensure!(
                        !set.holds.iter().any(|h| h.id == hold.id),
                        "a hold with id {:?} exists already",
                        hold.id
                    );
                    set.holds.push(hold.clone());
                    Ok(())
                })
                .await?
        }
        HoldAction::Remove { id } => {
            state
                .update_config(HOLDS_DOC, |set: &mut HoldSet| {
                    let before = set.holds.len();
                    set.holds.retain(|h| h.id != id);
                    anyhow::ensure!(set.holds.len() < before, "no hold with id {id:?}");
                    Ok(())
                })
                .await?
        }
        HoldAction::List => state.holds().await?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&set)?);
    } else if set.holds.is_empty() {
        println!("No legal holds.");
    } else {
        for h in &set.holds {
            let scope = [
                h.subject_object_id.map(|s| format!("subject {s}")),
                h.workspace.as_ref().map(|w| format!("workspace {w}")),
                (!h.resource_types.is_empty()).then(|| format!("types {:?}", h.resource_types)),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
            let scope = if scope.is_empty() {
                "everything".to_string()
            } else {
                scope.join(", ")
            };
            println!("{}: {} ({scope})", h.id, h.reason);
        }
    }
    Ok(())
}

pub async fn workspace(
    app: &AppSettings,
    action: WorkspaceAction,
    json: bool,
) -> anyhow::Result<()> {
    let state = state(app).await?;
    let parse = |id: &str| WorkspaceId::parse(id).map_err(anyhow::Error::msg);
    let scope = match action {
        WorkspaceAction::Add { id } => {
            let ws = parse(&id)?;
            state
                .update_config(SCOPE_DOC, |s: &mut Vec<WorkspaceId>| {
                    if !s.iter().any(|w| w.key() == ws.key()) {
                        s.push(ws.clone());
                    }
                    Ok(())
                })
                .await?
        }
        WorkspaceAction::Remove { id } => {
            let ws = parse(&id)?;
            state
                .update_config(SCOPE_DOC, |s: &mut Vec<WorkspaceId>| {
                    let before = s.len();
                    s.retain(|w| w.key() != ws.key());
                    anyhow::ensure!(s.len() < before, "{id} is not in scope");
                    Ok(())
                })
                .await?
        }
        WorkspaceAction::List => state.scope().await?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&scope)?);
    } else if scope.is_empty() {
        println!("No workspaces in scope.");
    } else {
        for w in &scope {
            println!("{w}");
        }
    }
    Ok(())
}
