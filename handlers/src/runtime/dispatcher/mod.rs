//! The local Functions host: drives the custom handler over HTTP from a `LocalQueue`, with the
//! host's settlement rules, so the product runs end to end on one machine.
//!
//! - serviceBusTrigger: one receive loop per function, at most `maxConcurrentCalls` invocations
//!   in flight; 2xx completes, anything else (status, connection error, timeout) abandons, and
//!   the queue dead-letters once the delivery count is exhausted. Locks are renewed while an
//!   invocation runs, like the extension's auto lock renewal.
//! - timerTrigger: fires on the NCRONTAB schedule; with `useMonitor` the schedule status lives in
//!   the queue file, so a restart reports `ScheduleStatus` and a missed occurrence runs at once
//!   with `IsPastDue: true`, as the host's schedule monitor does.
//! - eventGridTrigger: events are sent (e.g. by a CLI) to the durable queue `$eventgrid/<fn>`
//!   and delivered with the Event Grid envelope; failures are retried with Event Grid's back-off.
//!
//! Logs carry ids, counts and statuses only: message bodies hold personal data.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::host_config::{ConfigError, HostConfig, Trigger};
use super::host_encoding::{self, ServiceBusClient, Sys, DOTNET_MIN_TIME};
use super::ncrontab::{CronError, Schedule};
use crate::adapters::local::sqlite_queue::{
    Delivery, LocalQueue, QueueError, ReceiveOptions, TimerStatus,
};

mod http_call;
use http_call::*;

/// Prefix of the internal queues that stand in for Event Grid subscriptions.
pub(crate) const EVENT_GRID_QUEUE_PREFIX: &str = "$eventgrid/";

/// The durable queue holding events for an eventGridTrigger function.
pub fn event_grid_queue(function: &str) -> String {
    format!("{EVENT_GRID_QUEUE_PREFIX}{function}")
}

/// A timer invocation this late after its occurrence reports `IsPastDue`.
const PAST_DUE_TOLERANCE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct DispatcherOptions {
    /// Service Bus queue MaxDeliveryCount (default 10).
    pub max_delivery_count: u32,
    /// Service Bus queue lock duration (default 60 s).
    pub lock_duration: Duration,
    /// Sleep between receives when a queue is empty.
    pub poll_interval: Duration,
    /// App settings for `%NAME%` binding expressions.
    pub settings: BTreeMap<String, String>,
    /// Overrides host.json `extensions.serviceBus.maxConcurrentCalls`.
    pub max_concurrent_calls: Option<usize>,
    /// Overrides host.json `functionTimeout` as the per-invocation HTTP timeout.
    pub invocation_timeout: Option<Duration>,
    /// How long locks are renewed during one invocation (host.json default 5 min).
    pub max_auto_lock_renewal: Duration,
    /// Event Grid retry back-off, indexed by failed attempt; the last entry repeats.
    pub event_grid_retry_delays: Vec<Duration>,
    /// Event Grid's default maximum delivery attempts (30).
    pub event_grid_max_attempts: u32,
    /// Reported as `Metadata.Client.FullyQualifiedNamespace`.
    pub service_bus_namespace: String,
    /// Reliability test mode: abandon each message after its first successful invocation, so
    /// every message is delivered (at least) twice, as at-least-once delivery allows.
    pub redeliver_once: bool,
}

impl Default for DispatcherOptions {
    fn default() -> Self {
        let s = Duration::from_secs;
        Self {
            max_delivery_count: 10,
            lock_duration: s(60),
            poll_interval: Duration::from_millis(250),
            settings: BTreeMap::new(),
            max_concurrent_calls: None,
            invocation_timeout: None,
            max_auto_lock_renewal: s(300),
            event_grid_retry_delays: [10, 30, 60, 300, 600, 1800, 3600, 10_800, 21_600, 43_200]
                .map(s)
                .to_vec(),
            event_grid_max_attempts: 30,
            service_bus_namespace: "localhost".into(),
            redeliver_once: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("function {function}: {source}")]
    Schedule { function: String, source: CronError },
    #[error("no timer function named {0}")]
    NoSuchTimer(String),
    #[error("http client: {0}")]
    Http(String),
    #[error("queues still had {pending} pending message(s) after {timeout:?}")]
    Timeout { pending: u64, timeout: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ServiceBus,
    EventGrid,
}

#[derive(Debug)]
struct QueueFunction {
    name: String,
    binding: String,
    queue: String,
    data_type: Option<String>,
    kind: Kind,
}

#[derive(Debug)]
struct TimerFunction {
    name: String,
    binding: String,
    schedule: Schedule,
    use_monitor: bool,
    run_on_startup: bool,
}

struct Shared {
    config: HostConfig,
    queue: LocalQueue,
    base_url: String,
    options: DispatcherOptions,
    client: reqwest::Client,
    sb_client: ServiceBusClient,
    queue_functions: Vec<Arc<QueueFunction>>,
    timers: Vec<Arc<TimerFunction>>,
    max_concurrent_calls: usize,
}

/// The local host. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
}

/// Invocation outcome, for logs and settlement.
enum Outcome {
    Status(u16),
    Failed(String),
}

impl Outcome {
    fn succeeded(&self) -> bool {
        matches!(self, Outcome::Status(s) if (200..300).contains(s))
    }
}

impl Dispatcher {
    /// Load `host.json` and `functions/*/function.json` under `app_root`.
    pub fn new(
        app_root: &Path,
        queue: LocalQueue,
        handler_base_url: impl Into<String>,
        options: DispatcherOptions,
    ) -> Result<Self, DispatchError> {
        let config = HostConfig::load(app_root, &options.settings)?;
        Self::with_config(config, queue, handler_base_url, options)
    }

    pub fn with_config(
        config: HostConfig,
        queue: LocalQueue,
        handler_base_url: impl Into<String>,
        options: DispatcherOptions,
    ) -> Result<Self, DispatchError> {
        let mut queue_functions = Vec::new();
        let mut timers = Vec::new();
        for f in &config.functions {
            match &f.trigger {
                Trigger::ServiceBus {
                    binding,
                    queue_name,
                    data_type,
                    ..
                } => queue_functions.push(Arc::new(QueueFunction {
                    name: f.name.clone(),
                    binding: binding.clone(),
                    queue: queue_name.clone(),
                    data_type: data_type.clone(),
                    kind: Kind::ServiceBus,
                })),
                Trigger::EventGrid { binding } => queue_functions.push(Arc::new(QueueFunction {
                    name: f.name.clone(),
                    binding: binding.clone(),
                    queue: event_grid_queue(&f.name),
                    data_type: None,
                    kind: Kind::EventGrid,
                })),
                Trigger::Timer {
                    binding,
                    schedule,
                    use_monitor,
                    run_on_startup,
                } => timers.push(Arc::new(TimerFunction {
                    name: f.name.clone(),
                    binding: binding.clone(),
                    schedule: Schedule::parse(schedule).map_err(|source| {
                        DispatchError::Schedule {
                            function: f.name.clone(),
                            source,
                        }
                    })?,
                    use_monitor: *use_monitor,
                    run_on_startup: *run_on_startup,
                })),
                Trigger::Other { kind, .. } => {
                    tracing::warn!(function = %f.name, trigger = %kind, "trigger type not driven by the local runtime");
                }
            }
        }
        let timeout = options.invocation_timeout.or(config.function_timeout);
        let mut builder = reqwest::Client::builder().no_proxy();
        if let Some(t) = timeout {
            builder = builder.timeout(t);
        }
        let client = builder
            .build()
            .map_err(|e| DispatchError::Http(e.to_string()))?;
        let max_concurrent_calls = options
            .max_concurrent_calls
            .unwrap_or(config.max_concurrent_calls)
            .max(1);
        let sb_client = ServiceBusClient::local(&options.service_bus_namespace);
        let base_url = handler_base_url.into().trim_end_matches('/').to_string();
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                queue,
                base_url,
                options,
                client,
                sb_client,
                queue_functions,
                timers,
                max_concurrent_calls,
            }),
        })
    }

    pub fn config(&self) -> &HostConfig {
        &self.shared.config
    }

    pub fn queue(&self) -> &LocalQueue {
        &self.shared.queue
    }

    /// Every queue this dispatcher receives from (Service Bus queues and `$eventgrid/*`).
    pub(crate) fn queue_names(&self) -> Vec<String> {
        self.shared
            .queue_functions
            .iter()
            .map(|f| f.queue.clone())
            .collect()
    }

    /// Run every trigger until `shutdown` resolves; then stop receiving and wait for the
    /// invocations in flight to settle.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), DispatchError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        tracing::info!(
            queues = self.shared.queue_functions.len(),
            timers = self.shared.timers.len(),
            max_concurrent_calls = self.shared.max_concurrent_calls,
            "local host started"
        );
        let pumps = futures::future::join_all(
            self.shared
                .queue_functions
                .iter()
                .map(|f| self.pump(f.clone(), stop_rx.clone())),
        );
        let timers = futures::future::join_all(
            self.shared
                .timers
                .iter()
                .map(|t| self.timer_loop(t.clone(), stop_rx.clone())),
        );
        let stopper = async move {
            shutdown.await;
            tracing::info!("shutdown requested; settling invocations in flight");
            let _ = stop_tx.send(true);
        };
        let ((), _, timer_results) = tokio::join!(stopper, pumps, timers);
        timer_results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(())
    }

    /// Deliver queued messages (Service Bus and Event Grid) until no queue has a receivable or
    /// locked message, then return. Scheduled messages not yet due, and Event Grid retries
    /// waiting out their back-off, do not count. Timers do not fire here.
    pub async fn drain_until_idle(&self, timeout: Duration) -> Result<(), DispatchError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let names = self.queue_names();
        let started = Instant::now();
        let monitor = async {
            let result = loop {
                let pending = self.shared.queue.blocking({
                    let names = names.clone();
                    move |q| q.pending(&names)
                });
                match pending.await {
                    Ok(0) => break Ok(()),
                    Ok(n) if started.elapsed() >= timeout => {
                        break Err(DispatchError::Timeout {
                            pending: n,
                            timeout,
                        })
                    }
                    Ok(_) => {}
                    Err(e) if e.is_transient() => {}
                    Err(e) => break Err(e.into()),
                }
                tokio::time::sleep(
                    self.shared
                        .options
                        .poll_interval
                        .min(Duration::from_millis(50)),
                )
                .await;
            };
            let _ = stop_tx.send(true);
            result
        };
        let pumps = futures::future::join_all(
            self.shared
                .queue_functions
                .iter()
                .map(|f| self.pump(f.clone(), stop_rx.clone())),
        );
        let (result, _) = tokio::join!(monitor, pumps);
        result
    }

    /// Invoke a timer function now (like the host's admin endpoint), with `IsPastDue: false`.
    /// Returns the handler's HTTP status; the schedule status is not changed.
    pub async fn invoke_timer_now(&self, function: &str) -> Result<Option<u16>, DispatchError> {
        let t = self
            .shared
            .timers
            .iter()
            .find(|t| t.name == function)
            .ok_or_else(|| DispatchError::NoSuchTimer(function.into()))?;
        let status = if t.use_monitor {
            self.load_timer_status(t).await?
        } else {
            None
        };
        Ok(match self.fire_timer(t, status.as_ref(), false).await {
            Outcome::Status(s) => Some(s),
            Outcome::Failed(_) => None,
        })
    }

    /// One queue's receive loop. At most `max_concurrent_calls` deliveries are locked and in
    /// flight at any time: a permit is taken before receiving, released after settlement.
    async fn pump(&self, f: Arc<QueueFunction>, mut stop: watch::Receiver<bool>) {
        let sem = Arc::new(Semaphore::new(self.shared.max_concurrent_calls));
        let mut tasks = JoinSet::new();
        let opts = ReceiveOptions {
            lock_duration: self.shared.options.lock_duration,
            max_delivery_count: match f.kind {
                Kind::ServiceBus => self.shared.options.max_delivery_count,
                Kind::EventGrid => self.shared.options.event_grid_max_attempts,
            },
        };
        loop {
            if *stop.borrow() {
                break;
            }
            let permit = tokio::select! {
                p = sem.clone().acquire_owned() => p.expect("semaphore never closed"),
                _ = stop.changed() => break,
            };
            let queue_name = f.queue.clone();
            let received = self
                .shared
                .queue
                .blocking(move |q| q.receive_with(&queue_name, opts))
                .await;
            let idle = match received {
                Ok(Some(d)) => {
                    tasks.spawn(invoke(self.shared.clone(), f.clone(), d, permit));
                    false
                }
                Ok(None) => true,
                Err(e) => {
                    tracing::warn!(function = %f.name, queue = %f.queue, error = %e, "receive failed");
                    true
                }
            };
            while let Some(r) = tasks.try_join_next() {
                if let Err(e) = r {
                    tracing::error!(function = %f.name, error = %e, "invocation task panicked");
                }
            }
            if idle {
                tokio::select! {
                    _ = tokio::time::sleep(self.shared.options.poll_interval) => {}
                    _ = stop.changed() => break,
                }
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn load_timer_status(
        &self,
        t: &TimerFunction,
    ) -> Result<Option<TimerStatus>, DispatchError> {
        let name = t.name.clone();
        Ok(self
            .shared
            .queue
            .blocking(move |q| q.timer_status(&name))
            .await?)
    }

    async fn save_timer_status(&self, t: &TimerFunction, s: TimerStatus) {
        let name = t.name.clone();
        if let Err(e) = self
            .shared
            .queue
            .blocking(move |q| q.set_timer_status(&name, &s))
            .await
        {
            tracing::warn!(function = %t.name, error = %e, "could not persist the timer schedule status");
        }
    }

    async fn timer_loop(
        &self,
        t: Arc<TimerFunction>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), DispatchError> {
        let now = OffsetDateTime::now_utc();
        let stored = if t.use_monitor {
            self.load_timer_status(&t).await?
        } else {
            None
        };
        let Some(first_next) = t.schedule.next_after(now) else {
            tracing::warn!(function = %t.name, schedule = %t.schedule, "schedule never fires");
            return Ok(());
        };
        let mut status = match stored {
            // The monitor saw an occurrence pass while nothing ran: fire now, past due.
            Some(s) if s.next < now => {
                let outcome = self.fire_timer(&t, Some(&s), true).await;
                log_timer(&t.name, &outcome, true);
                TimerStatus {
                    last: s.next,
                    next: first_next,
                    last_updated: OffsetDateTime::now_utc(),
                }
            }
            Some(s) => s,
            None => TimerStatus {
                last: DOTNET_MIN_TIME,
                next: first_next,
                last_updated: now,
            },
        };
        if t.use_monitor {
            self.save_timer_status(&t, status).await;
        }
        if t.run_on_startup {
            let outcome = self
                .fire_timer(&t, t.use_monitor.then_some(&status), false)
                .await;
            log_timer(&t.name, &outcome, false);
        }
        loop {
            let wait = (status.next - OffsetDateTime::now_utc())
                .try_into()
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return Ok(()),
            }
            if *stop.borrow() {
                return Ok(());
            }
            let fired_at = OffsetDateTime::now_utc();
            let late: Duration = (fired_at - status.next)
                .try_into()
                .unwrap_or(Duration::ZERO);
            let past_due = late > PAST_DUE_TOLERANCE;
            let outcome = self
                .fire_timer(&t, t.use_monitor.then_some(&status), past_due)
                .await;
            log_timer(&t.name, &outcome, past_due);
            // Timers are not retried by the host: the next occurrence is the retry.
            let after = OffsetDateTime::now_utc().max(status.next);
            let Some(next) = t.schedule.next_after(after) else {
                return Ok(());
            };
            status = TimerStatus {
                last: status.next,
                next,
                last_updated: OffsetDateTime::now_utc(),
            };
            if t.use_monitor {
                self.save_timer_status(&t, status).await;
            }
        }
    }

    async fn fire_timer(
        &self,
        t: &TimerFunction,
        status: Option<&TimerStatus>,
        past_due: bool,
    ) -> Outcome {
        let body = host_encoding::timer_request(&t.binding, status, past_due, &Sys::now(&t.name));
        post(&self.shared, &t.name, &body, Uuid::new_v4()).await
    }
}

fn log_timer(function: &str, outcome: &Outcome, past_due: bool) {
    match outcome {
        Outcome::Status(s) if outcome.succeeded() => {
            tracing::info!(function, status = s, past_due, "timer invocation succeeded")
        }
        Outcome::Status(s) => {
            tracing::warn!(function, status = s, past_due, "timer invocation failed")
        }
        Outcome::Failed(e) => {
            tracing::warn!(function, error = %e, past_due, "timer invocation failed")
        }
    }
}
