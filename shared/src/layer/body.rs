//! Response bodies that report how an RPC ended, and for streams, bound how
//! long it may go on; request streams that fail when the client resets them.

use std::{
    pin::Pin,
    sync::{Arc, Mutex, Weak},
    task::{Context, Poll, Waker, ready},
    time::{Duration, Instant},
};

use http::HeaderMap;
use http_body::{Frame, SizeHint};
use prometheus_client::metrics::gauge::Gauge;
use tonic::body::Body;

use crate::{
    error::{Error, Reason},
    identity::REQUEST_ID,
    metrics::{MethodMetrics, code_name},
};

/// An RPC's place in its budget, given back when dropped (held for that).
#[derive(Debug)]
pub(super) enum Slot {
    Unary {
        _permit: tokio::sync::OwnedSemaphorePermit,
    },
    Stream {
        _slot: super::streams::StreamSlot,
    },
}

/// Records the end of one RPC: code and latency into its span and the
/// metrics, once; releases its slot (unary or streaming).
pub(super) struct Finish {
    pub(super) in_flight: Gauge,
    /// The method's metrics (the policy table's path, or `unknown`: labels
    /// stay bounded), resolved when the layer was made.
    pub(super) metrics: Arc<MethodMetrics>,
    pub(super) span: tracing::Span,
    /// Whether spans are exported: code and latency are then attributes of
    /// the span. The log has them in the `rpc finished` line instead.
    pub(super) traced: bool,
    pub(super) started: Instant,
    pub(super) slot: Option<Slot>,
    pub(super) recorded: bool,
}

impl Finish {
    pub(super) fn start(
        metrics: Arc<MethodMetrics>,
        in_flight: Gauge,
        span: tracing::Span,
        traced: bool,
    ) -> Self {
        in_flight.inc();
        Self {
            in_flight,
            metrics,
            span,
            traced,
            started: crate::clock::monotonic(),
            slot: None,
            recorded: false,
        }
    }

    pub(super) fn done(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        if self.traced {
            let span = &self.span;
            span.record("code", code_name(code));
            // The codes that are the server's fault, as OpenTelemetry's
            // gRPC conventions have it; a refusal is the caller's.
            if matches!(
                code,
                tonic::Code::Unknown
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unimplemented
                    | tonic::Code::Internal
                    | tonic::Code::Unavailable
                    | tonic::Code::DataLoss
            ) {
                span.record("otel.status_code", "error");
            }
            span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
        }
        self.metrics.record(code, elapsed);
        self.in_flight.dec();
        self.slot = None;
        // The body ends outside the span: entered (when anyone would read
        // the line) so that the line has the RPC's fields.
        if tracing::enabled!(tracing::Level::DEBUG) {
            let _entered = self.span.enter();
            tracing::debug!(
                ?code,
                latency_us = elapsed.as_micros() as u64,
                "rpc finished"
            );
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        // The body was dropped before its trailers: the client went away.
        self.done(tonic::Code::Cancelled);
    }
}

pub(super) fn grpc_status(headers: &HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(tonic::Code::from_i32(value.parse().ok()?))
}

/// The code a frame ends the RPC with, if it ends it.
fn ending(frame: &Option<Result<Frame<bytes::Bytes>, tonic::Status>>) -> Option<tonic::Code> {
    match frame {
        Some(Ok(f)) => f
            .trailers_ref()
            .map(|t| grpc_status(t).unwrap_or(tonic::Code::Unknown)),
        Some(Err(status)) => Some(status.code()),
        None => Some(tonic::Code::Ok),
    }
}

/// A unary response body that reports the status from the trailers when the
/// last frame passes.
pub(super) struct Observed {
    pub(super) inner: Body,
    pub(super) finish: Option<Finish>,
}

impl http_body::Body for Observed {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(code) = ending(&frame)
            && let Some(mut finish) = self.finish.take()
        {
            finish.done(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request stream that fails, instead of ending, when the client resets
/// it with CANCEL (it gave up: dropped the call, or its deadline fired).
/// tonic's decoder reads a request body that fails with CANCELLED as its
/// clean end, so a client-streaming handler would take the messages
/// received before the reset for the whole stream: an upload given up
/// between two messages was stored, shorter.
pub(super) struct Resettable {
    pub(super) inner: Body,
}

const RESET: Error = Error::Aborted {
    reason: Reason::StreamReset,
    message: "the client reset the request stream before its end",
};

impl http_body::Body for Resettable {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Err(status)) if status.code() == tonic::Code::Cancelled => {
                Some(Err(tonic::Status::from(RESET)))
            }
            frame => frame,
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A streamed response with a stall timeout and a total lifetime.
///
/// hyper polls a response body only when the client's flow-control window
/// has room, so a client that stops reading is seen from here as a frame
/// handed over and no poll since. A watchdog task checks that (and the
/// lifetime) whatever hyper does: when either runs out it drops the inner
/// stream (its buffered chunks, its database reader), records the end and
/// frees the slot, and the client gets DEADLINE_EXCEEDED in the trailers if
/// it ever reads again.
pub(super) struct Watched {
    state: Arc<Mutex<WatchState>>,
    watchdog: tokio::task::JoinHandle<()>,
}

struct WatchState {
    inner: Option<Body>,
    finish: Option<Finish>,
    /// Why the watchdog ended the stream, for the trailers.
    ended: Option<tonic::Status>,
    /// When the last frame was handed to hyper, while no poll came since.
    handed_over: Option<Instant>,
    waker: Option<Waker>,
    done: bool,
}

const STALLED: Error = Error::DeadlineExceeded {
    reason: Reason::StreamStalled,
    message: "the stream was not read for longer than the server's idle timeout",
};
const TOO_OLD: Error = Error::DeadlineExceeded {
    reason: Reason::StreamLifetimeExceeded,
    message: "the stream reached the server's maximum lifetime; open a new one",
};

impl Watched {
    pub(super) fn new(
        inner: Body,
        finish: Finish,
        request_id: String,
        idle: Duration,
        lifetime: Duration,
    ) -> Self {
        let state = Arc::new(Mutex::new(WatchState {
            inner: Some(inner),
            finish: Some(finish),
            ended: None,
            handed_over: None,
            waker: None,
            done: false,
        }));
        let watchdog = tokio::spawn(watch(Arc::downgrade(&state), request_id, idle, lifetime));
        Self { state, watchdog }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.watchdog.abort();
    }
}

/// How often the watchdog looks: a quarter of the idle timeout, so that a
/// stall is ended at most a quarter late, within 10 ms and 1 s.
fn tick(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

async fn watch(
    state: Weak<Mutex<WatchState>>,
    request_id: String,
    idle: Duration,
    lifetime: Duration,
) {
    let started = crate::clock::monotonic();
    let tick = tick(idle);
    loop {
        tokio::time::sleep(tick.min(lifetime)).await;
        let Some(state) = state.upgrade() else { return };
        let Ok(mut s) = state.lock() else { return };
        if s.done {
            return;
        }
        let why = if started.elapsed() >= lifetime {
            TOO_OLD
        } else if s.handed_over.is_some_and(|t| t.elapsed() >= idle) {
            STALLED
        } else {
            continue;
        };
        let status = REQUEST_ID.sync_scope(request_id, || tonic::Status::from(why));
        let code = status.code();
        let inner = s.inner.take();
        let finish = s.finish.take();
        let waker = s.waker.take();
        s.ended = Some(status);
        drop(s);
        drop(inner);
        if let Some(mut finish) = finish {
            finish.done(code);
        }
        if let Some(waker) = waker {
            waker.wake();
        }
        return;
    }
}

impl http_body::Body for Watched {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let Ok(mut s) = self.state.lock() else {
            return Poll::Ready(None);
        };
        s.handed_over = None;
        if let Some(status) = s.ended.take() {
            s.done = true;
            let mut trailers = status.into_http::<()>().into_parts().0.headers;
            trailers.remove(http::header::CONTENT_TYPE);
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let Some(inner) = s.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) else {
            s.waker = Some(cx.waker().clone());
            return Poll::Pending;
        };
        if let Some(code) = ending(&frame) {
            s.done = true;
            if let Some(mut finish) = s.finish.take() {
                finish.done(code);
            }
        } else {
            s.handed_over = Some(crate::clock::monotonic());
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.state.lock().map_or(true, |s| {
            s.done || s.inner.as_ref().is_some_and(http_body::Body::is_end_stream)
        })
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        pin::Pin,
        task::{Context, Poll},
        time::Duration,
    };

    use http_body::Frame;
    use tonic::{
        Code, Status, Streaming,
        body::Body,
        codec::{Codec, CompressionEncoding},
    };
    use tonic_prost::ProstCodec;

    use super::{Resettable, tick};

    /// A request body of given frames: one gRPC message, then the error
    /// hyper gives when the client resets the stream with CANCEL.
    struct Frames(VecDeque<Result<Frame<bytes::Bytes>, Status>>);

    impl http_body::Body for Frames {
        type Data = bytes::Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    fn one_message_then_a_reset() -> Body {
        let message = prost::Message::encode_to_vec(&prost_types::Duration {
            seconds: 7,
            nanos: 0,
        });
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(&message);
        Body::new(Frames(VecDeque::from([
            Ok(Frame::data(framed.into())),
            Err(Status::cancelled("stream reset by the client (CANCEL)")),
        ])))
    }

    async fn read(body: Body) -> (usize, Option<Code>) {
        let decoder =
            ProstCodec::<prost_types::Duration, prost_types::Duration>::default().decoder();
        let mut stream = Streaming::new_request(decoder, body, None::<CompressionEncoding>, None);
        let mut messages = 0;
        loop {
            match stream.message().await {
                Ok(Some(_)) => messages += 1,
                Ok(None) => return (messages, None),
                Err(status) => return (messages, Some(status.code())),
            }
        }
    }

    /// tonic's decoder ends a request stream cleanly on CANCELLED (the
    /// reason for the wrapper: were this to change, the wrapper could go);
    /// through it, the handler sees the stream fail after the one message.
    #[tokio::test]
    async fn a_request_stream_the_client_reset_fails_instead_of_ending() {
        assert_eq!(read(one_message_then_a_reset()).await, (1, None));
        let wrapped = Body::new(Resettable {
            inner: one_message_then_a_reset(),
        });
        assert_eq!(read(wrapped).await, (1, Some(Code::Aborted)));
    }

    #[test]
    fn the_watchdog_looks_four_times_per_idle_timeout_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(tick(ms(2000)), ms(500));
        assert_eq!(tick(ms(100)), ms(25));
        assert_eq!(tick(ms(20)), ms(10));
        assert_eq!(tick(Duration::from_secs(60)), ms(1000));
    }
}
