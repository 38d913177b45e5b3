//! Logging and tracing setup.
//!
//! Logs: human-readable lines by default, one JSON object per line with
//! `LOG_FORMAT=json`, filtered by `RUST_LOG` (default `info`; a filter that
//! does not parse stops the binary, like every other bad setting). Each
//! RPC's span carries its request id, method, client and user id; its
//! `rpc finished` line (debug) the status code and latency. Nothing secret
//! is ever put in a field.
//!
//! Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) set,
//! the same spans go to that OTLP/gRPC collector, configured by the standard
//! OpenTelemetry variables (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_EXPORTER_OTLP_HEADERS`, timeouts).
//! W3C `traceparent`/`tracestate` are taken from callers ([`extract`]) and
//! sent on every call to auth-service ([`Propagate`]). Unset (or
//! `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`), no exporter,
//! no propagation and no OpenTelemetry layer exist: nothing is paid.

use std::sync::OnceLock;

use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer as _, fmt::format::FmtSpan, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::config::LogFormat;

/// The exporter's provider, when tracing is on: flushed by [`shutdown`].
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Sets up logging, and tracing when the OpenTelemetry variables ask for it.
/// `service` names the service in traces unless `OTEL_SERVICE_NAME` does.
/// Must run inside the tokio runtime: the exporter's channel is tonic's.
pub fn init(format: LogFormat, service: &'static str) -> crate::Result<()> {
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .map_err(|e| crate::Error::internal(format!("RUST_LOG {directives:?}: {e}")))?,
        _ => EnvFilter::new("info"),
    };
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_span_events(FmtSpan::NONE)
            .boxed(),
    };
    let otel = match exporter(service)? {
        Some(provider) => {
            let tracer = provider.tracer("docverify");
            // A second init (tests start many servers) keeps the first.
            let _ = PROVIDER.set(provider);
            Some(tracing_opentelemetry::layer().with_tracer(tracer))
        }
        None => None,
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(())
}

/// The provider for an OTLP/gRPC exporter, or `None` when no endpoint is
/// configured or the SDK is switched off.
fn exporter(service: &'static str) -> crate::Result<Option<SdkTracerProvider>> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        || (set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
            && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none())
    {
        return Ok(None);
    }
    let refuse = |message: String| Err(crate::Error::internal(message));
    if let Some(exporter) = set("OTEL_TRACES_EXPORTER")
        && !exporter.eq_ignore_ascii_case("otlp")
    {
        return refuse(format!(
            "OTEL_TRACES_EXPORTER={exporter}: only otlp (or none) is built in"
        ));
    }
    for name in [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ] {
        if let Some(protocol) = set(name)
            && protocol != "grpc"
        {
            return refuse(format!("{name}={protocol}: only grpc is built in"));
        }
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| crate::Error::internal(format!("the OTLP exporter: {e}")))?;
    let mut resource = Resource::builder();
    if set("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service);
    }
    // The sampler comes from OTEL_TRACES_SAMPLER (default: parent-based,
    // always on), read by the SDK.
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

/// Whether traces are exported (and context propagated).
pub fn enabled() -> bool {
    PROVIDER.get().is_some()
}

/// Sends the spans still buffered; for the end of `serve`.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        tracing::warn!(error = %e, "could not flush the last traces");
    }
}

/// Makes `span` the child of the caller's `traceparent` (a new trace when
/// there is none or it does not parse) and returns the trace id when the
/// span is sampled, for logs and audit events. `None` when tracing is off.
pub fn extract(span: &tracing::Span, headers: &http::HeaderMap) -> Option<String> {
    if !enabled() {
        return None;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    // Only fails without the OpenTelemetry layer, which `enabled` rules out.
    let _ = span.set_parent(parent);
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_sampled()
        .then(|| span_context.trace_id().to_string())
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Puts the current span's trace context on outgoing calls (to
/// auth-service), so that one client request is one trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct Propagate;

/// A channel whose calls carry the trace context.
pub type Traced =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Propagate>;

impl tonic::service::Interceptor for Propagate {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if enabled() {
            let context = tracing::Span::current().context();
            TraceContextPropagator::new()
                .inject_context(&context, &mut Metadata(request.metadata_mut()));
        }
        Ok(request)
    }
}

struct Metadata<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(key, value);
        }
    }
}
