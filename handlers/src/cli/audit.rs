//! `azureml-dsr audit verify`: walk the chained audit trail in the state account, recompute
//! every certificate's and manifest's Merkle root, and name the position of anything changed,
//! removed or reordered. Exit status non-zero when anything is found.

use clap::Subcommand;

use crate::functions::audit_trail;
use crate::settings::AppSettings;

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Check the whole trail (the chain, the certificates' roots, the indexed copies).
    Verify,
}

pub async fn run(app: &AppSettings, action: AuditAction, json: bool) -> anyhow::Result<()> {
    match action {
        AuditAction::Verify => {
            let state = crate::wiring::build_state(app)?;
            let v = audit_trail::verify(&state).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "audit trail: {} chain entries, {} Merkle roots recomputed, {} findings",
                    v.entries,
                    v.roots_recomputed,
                    v.findings.len()
                );
                for f in &v.findings {
                    println!("  position {}: {}", f.position, f.problem);
                }
                if !v.unchained.is_empty() {
                    println!(
                        "  {} audit documents predate the chain (not verified): {}",
                        v.unchained.len(),
                        v.unchained.join(", ")
                    );
                }
            }
            if v.ok() {
                Ok(())
            } else {
                anyhow::bail!(
                    "audit trail verification failed ({} findings)",
                    v.findings.len()
                )
            }
        }
    }
}
