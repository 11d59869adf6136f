//! Calling a function as the Functions host does: the HTTP POST of the invocation payload to the
//! custom handler, reading its outcome, and renewing the message lock while the call runs.

use super::*;

pub(super) async fn post(
    shared: &Shared,
    function: &str,
    body: &Value,
    invocation_id: Uuid,
) -> Outcome {
    let url = format!("{}/{}", shared.base_url, function);
    let mut req = shared.client.post(url);
    for (k, v) in host_encoding::invocation_headers(invocation_id) {
        req = req.header(k, v);
    }
    let bytes = serde_json::to_vec(body).expect("a JSON value serialises");
    match req.body(bytes).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            // Drain the body so the connection is reused; its Logs are the handler's own output
            // and are not echoed here.
            let _ = resp.bytes().await;
            Outcome::Status(status)
        }
        Err(e) if e.is_timeout() => Outcome::Failed("invocation timed out".into()),
        Err(e) if e.is_connect() => Outcome::Failed("handler unreachable".into()),
        Err(e) => Outcome::Failed(format!("request failed: {}", e.without_url())),
    }
}

/// One delivery: build the host request, POST it while renewing the lock, settle.
pub(super) async fn invoke(
    shared: Arc<Shared>,
    f: Arc<QueueFunction>,
    d: Delivery,
    permit: OwnedSemaphorePermit,
) {
    let _permit = permit;
    let invocation_id = Uuid::new_v4();
    let sys = Sys::now(&f.name);
    let body = match f.kind {
        Kind::ServiceBus => host_encoding::servicebus_request(
            &f.binding,
            f.data_type.as_deref(),
            &d,
            &shared.sb_client,
            &sys,
        ),
        Kind::EventGrid => match serde_json::from_slice::<Value>(&d.body) {
            Ok(event @ Value::Object(_)) => {
                host_encoding::eventgrid_request(&f.binding, &event, &sys)
            }
            _ => {
                tracing::error!(function = %f.name, message_id = %d.message_id, "event is not a JSON object; dead-lettering");
                let token = d.lock_token.clone();
                let r = shared
                    .queue
                    .blocking(move |q| {
                        q.dead_letter(&token, "InvalidEvent", "the event is not a JSON object")
                    })
                    .await;
                if let Err(e) = r {
                    tracing::warn!(function = %f.name, error = %e, "dead-letter failed");
                }
                return;
            }
        },
    };

    let started = Instant::now();
    let outcome = {
        let call = post(&shared, &f.name, &body, invocation_id);
        let renew = renew_lock_loop(&shared, &f, &d.lock_token);
        tokio::pin!(call);
        tokio::select! {
            o = &mut call => o,
            // The renewal loop only ends when renewal is no longer possible; keep waiting for
            // the invocation, whose settlement will then report the lost lock.
            () = renew => call.await,
        }
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;

    let token = d.lock_token.clone();
    let settle = if outcome.succeeded() && shared.options.redeliver_once && d.delivery_count == 1 {
        shared.queue.blocking(move |q| q.abandon(&token)).await
    } else if outcome.succeeded() {
        shared.queue.blocking(move |q| q.complete(&token)).await
    } else {
        let delay = match f.kind {
            Kind::ServiceBus => Duration::ZERO,
            Kind::EventGrid => {
                let delays = &shared.options.event_grid_retry_delays;
                let i = (d.delivery_count as usize).saturating_sub(1);
                delays
                    .get(i)
                    .or(delays.last())
                    .copied()
                    .unwrap_or(Duration::ZERO)
            }
        };
        shared
            .queue
            .blocking(move |q| q.abandon_after(&token, delay))
            .await
    };

    let (status, error) = match &outcome {
        Outcome::Status(s) => (Some(*s), None),
        Outcome::Failed(e) => (None, Some(e.as_str())),
    };
    if outcome.succeeded() {
        tracing::info!(
            function = %f.name, %invocation_id, message_id = %d.message_id, sequence_number = d.sequence_number,
            delivery_count = d.delivery_count, status, elapsed_ms, "invocation succeeded; message completed"
        );
    } else {
        tracing::warn!(
            function = %f.name, %invocation_id, message_id = %d.message_id, sequence_number = d.sequence_number,
            delivery_count = d.delivery_count, status, error, elapsed_ms, "invocation failed; message abandoned"
        );
    }
    if let Err(e) = settle {
        tracing::warn!(function = %f.name, message_id = %d.message_id, error = %e, "settlement failed; the message will be redelivered");
    }
}

/// Renew the lock at half its duration until `max_auto_lock_renewal` has passed or renewal fails.
pub(super) async fn renew_lock_loop(shared: &Arc<Shared>, f: &QueueFunction, lock_token: &str) {
    let lock = shared.options.lock_duration;
    let deadline = Instant::now() + shared.options.max_auto_lock_renewal;
    loop {
        tokio::time::sleep(lock / 2).await;
        if Instant::now() >= deadline {
            return;
        }
        let token = lock_token.to_string();
        if let Err(e) = shared
            .queue
            .blocking(move |q| q.renew_lock(&token, lock))
            .await
        {
            tracing::warn!(function = %f.name, error = %e, "lock renewal failed");
            return;
        }
    }
}
