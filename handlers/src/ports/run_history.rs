//! The Azure ML run-history port: a run's record (creator, `dataContainerId`, parent and root)
//! and its children, paged. This is where Azure ML keeps who created a job (ARM holds only a
//! display name) and the only place that lists a job's child runs (pipeline steps, sweep
//! trials, AutoML children). Azure adapter: the workspace's regional data-plane endpoint
//! (`https://<region>.api.azureml.ms/history/v1.0/...`); local adapter: documents of the same
//! shape in the local store.

use async_trait::async_trait;

pub use crate::domain::attribution::{RunCreator, RunRecord};
use crate::ports::control_plane::WorkspaceInfo;

/// One page of child runs (`PaginatedRunList`: `value`, `continuationToken`, `nextLink`).
#[derive(Debug, Clone, Default)]
pub struct RunPage {
    pub value: Vec<RunRecord>,
    /// Opaque: pass back to [`RunHistory::children`] for the next page.
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunHistoryError {
    #[error("transient run-history error: {0}")]
    Transient(String),
    #[error("run-history error: {0}")]
    Other(String),
}

/// A job hierarchy deeper or wider than this is not walked to the end: the job is reported as
/// not fully attributable instead (a bound on memory and calls, whatever the service answers).
pub(crate) const MAX_DESCENDANTS: usize = 10_000;

#[async_trait]
pub trait RunHistory: Send + Sync + 'static {
    /// The run's record; `None` when run history does not know the run (404).
    async fn run(
        &self,
        ws: &WorkspaceInfo,
        run_id: &str,
    ) -> Result<Option<RunRecord>, RunHistoryError>;

    /// One page of the run's direct children; `next` is the previous page's [`RunPage::next`].
    async fn children(
        &self,
        ws: &WorkspaceInfo,
        run_id: &str,
        next: Option<String>,
    ) -> Result<RunPage, RunHistoryError>;

    /// Every descendant of `run_id` (children, their children, ...), each once, parents before
    /// their children. `Err` when the hierarchy exceeds [`MAX_DESCENDANTS`].
    async fn descendants(
        &self,
        ws: &WorkspaceInfo,
        run_id: &str,
    ) -> Result<Vec<RunRecord>, RunHistoryError> {
        let mut out: Vec<RunRecord> = Vec::new();
        let mut seen = std::collections::BTreeSet::from([run_id.to_string()]);
        let mut queue = std::collections::VecDeque::from([run_id.to_string()]);
        while let Some(parent) = queue.pop_front() {
            let mut next = None;
            loop {
                let page = self.children(ws, &parent, next).await?;
                for r in page.value {
                    // A cycle or a repeated child (paging overlap) is walked once.
                    if seen.insert(r.run_id.clone()) {
                        queue.push_back(r.run_id.clone());
                        out.push(r);
                    }
                }
                if out.len() > MAX_DESCENDANTS {
                    return Err(RunHistoryError::Other(format!(
                        "more than {MAX_DESCENDANTS} descendant runs"
                    )));
                }
                match page.next {
                    Some(n) => next = Some(n),
                    None => break,
                }
            }
        }
        Ok(out)
    }
}
