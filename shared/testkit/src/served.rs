//! A service running in the test's process, stopped with it.

use std::future::Future;

use shared::proto::audit::v1::{
    AuditEvent, ListAuditEventsRequest, VerifyAuditChainRequest, VerifyAuditChainResponse,
    audit_service_client::AuditServiceClient,
};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;

use crate::bearer;

/// The task serving one service and the signal that stops it. Dropped, it
/// signals and aborts; [`Served::stop`] drains gracefully and waits.
#[derive(Debug)]
pub struct Served {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<shared::Result<()>>>,
}

impl Served {
    /// Spawns `serve(shutdown)`, handing it the future that completes on stop.
    pub fn spawn<F>(serve: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: Future<Output = shared::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        Self {
            stop: Some(stop),
            task: Some(tokio::spawn(serve(stopped))),
        }
    }

    /// Stops the service (gracefully) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The newest events (up to 500) with `action` from the trail behind
/// `channel`, once the sequencer has made each a leaf of the log (10 s at
/// most).
pub async fn audit_events(channel: &Channel, token: &str, action: &str) -> Vec<AuditEvent> {
    let mut client = AuditServiceClient::new(channel.clone());
    for _ in 0..500 {
        let events = client
            .list_audit_events(bearer(
                ListAuditEventsRequest {
                    action: action.to_owned(),
                    page_size: 500,
                    ..Default::default()
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
            .events;
        if events.iter().all(|e| !e.pending) {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("audit events still pending after 10 s: the sequencer is not running");
}

/// VerifyAuditChain of the trail behind `channel`, once nothing waits to
/// be sequenced (10 s at most), so that the report covers every event.
pub async fn verified_log(channel: &Channel, token: &str) -> VerifyAuditChainResponse {
    let mut client = AuditServiceClient::new(channel.clone());
    for _ in 0..500 {
        let report = client
            .verify_audit_chain(bearer(VerifyAuditChainRequest {}, token))
            .await
            .unwrap()
            .into_inner();
        if report.pending == 0 || !report.valid {
            return report;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("audit events still pending after 10 s: the sequencer is not running");
}
