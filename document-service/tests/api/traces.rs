//! OpenTelemetry over the wire: both real binaries as child processes,
//! exporting to an OTLP collector served here (the collector's own service
//! definition, from `opentelemetry-proto`). A client's call to
//! document-service, carrying a W3C `traceparent`, arrives as one trace:
//! document-service's span a child of the caller's, auth-service's
//! `ValidateToken` a child of document-service's. The trace id is in the
//! log lines and in the audit event; no secret is in any attribute.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
    trace::v1::Span,
};
use shared::audit::hex;
use shared::proto::{
    auth::v1::{self as auth_pb, auth_service_client::AuthServiceClient},
    document::v1::document_service_client::DocumentServiceClient,
};
use testkit::{Process, TestDb, connect_when_ready};

use crate::helpers::{chunk, metadata};

const DOCUMENT_BIN: &str = env!("CARGO_BIN_EXE_document-service");
const ADMIN_EMAIL: &str = "root@example.com";
const ADMIN_PASSWORD: &str = "correct horse battery staple admin";

/// A span as exported, with the service that sent it.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    span: Span,
}

#[derive(Default, Clone)]
struct Collector {
    spans: Arc<Mutex<Vec<Exported>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
            let service = text(&attributes, "service.name").unwrap_or_default();
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|span| Exported {
                    service: service.clone(),
                    span,
                }));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .map(shown)
}

fn shown(value: &AnyValue) -> String {
    match &value.value {
        Some(Value::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

impl Collector {
    async fn serve() -> (Self, std::net::SocketAddr) {
        let collector = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (collector, addr)
    }

    /// Waits (up to 20 s) until `found` holds for the spans exported.
    async fn until(&self, what: &str, found: impl Fn(&[Exported]) -> bool) -> Vec<Exported> {
        let started = std::time::Instant::now();
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if found(&spans) {
                return spans;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{what} never arrived; exported: {:#?}",
                spans
                    .iter()
                    .map(|s| (&s.service, &s.span.name))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// auth-service is the sibling binary: `cargo test --workspace` builds it
/// (its own tests need it), and no other package can name it.
fn auth_bin() -> std::path::PathBuf {
    let path = std::path::Path::new(DOCUMENT_BIN).with_file_name("auth-service");
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace` (or build auth-service)",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_call_is_one_trace_across_both_services() {
    let (collector, collector_addr) = Collector::serve().await;
    let otel = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        ),
        // Export every 100 ms rather than every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("document-service.credentials");
    let auth_db = TestDb::fresh("traceauth").await;
    let mut auth_env = vec![
        ("AUTH_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("AUTH_DATABASE_URL", auth_db.url.clone()),
        ("BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
        ("BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        (
            "BOOTSTRAP_SERVICE_CREDENTIALS_FILE",
            credentials.display().to_string(),
        ),
    ];
    auth_env.extend(otel.iter().cloned());
    let auth = Process::start(&auth_bin(), &[], &auth_env, "auth-service").await;

    let docs_db = TestDb::fresh("tracedocs").await;
    let mut docs_env = vec![
        ("DOCUMENT_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("DOCUMENT_DATABASE_URL", docs_db.url.clone()),
        ("AUTH_SERVICE_URL", format!("http://{}", auth.addr)),
        (
            "DOCUMENT_CLIENT_CREDENTIALS_FILE",
            credentials.display().to_string(),
        ),
        // Every call asks auth-service: the cross-service hop under test.
        ("TOKEN_VALIDATION", "remote".to_owned()),
        // The layer's line for each finished call, in its span's context.
        ("RUST_LOG", "info,shared::layer=debug".to_owned()),
    ];
    docs_env.extend(otel.iter().cloned());
    let docs = Process::start(DOCUMENT_BIN.as_ref(), &[], &docs_env, "document-service").await;

    let login = AuthServiceClient::new(connect_when_ready(auth.addr).await)
        .login(auth_pb::LoginRequest {
            email: ADMIN_EMAIL.to_owned(),
            password: ADMIN_PASSWORD.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let docs_channel = connect_when_ready(docs.addr).await;

    // The caller's own trace and span, as a traced client would send them.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut upload = tonic::Request::new(tokio_stream::iter(vec![
        metadata("traced"),
        chunk(b"%PDF-1.7 traced"),
    ]));
    let headers = upload.metadata_mut();
    headers.insert(
        "authorization",
        format!("Bearer {}", login.access_token).parse().unwrap(),
    );
    headers.insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse().unwrap(),
    );
    headers.insert("tracestate", "vendor=opaque".parse().unwrap());
    let document = DocumentServiceClient::new(docs_channel.clone())
        .upload_document(upload)
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap();

    let upload_path = "/docverify.document.v1.DocumentService/UploadDocument";
    let validate_path = "/docverify.auth.v1.AuthService/ValidateToken";
    let in_trace = |s: &Exported| hex(&s.span.trace_id) == trace_id;
    let spans = collector
        .until("the upload's trace in both services", |spans| {
            let named = |service: &str, name: &str| {
                spans
                    .iter()
                    .any(|s| in_trace(s) && s.service == service && s.span.name == name)
            };
            named("document-service", upload_path) && named("auth-service", validate_path)
        })
        .await;
    let server = spans
        .iter()
        .find(|s| in_trace(s) && s.span.name == upload_path)
        .unwrap();
    assert_eq!(
        hex(&server.span.parent_span_id),
        caller_span,
        "document-service's span is the caller's child"
    );
    assert_eq!(server.span.trace_state, "vendor=opaque", "tracestate kept");
    assert_eq!(server.span.kind, 2, "a server span");
    // The outcome the layer recorded: the code, and the latency in ms (at
    // most the span's own length, and more than the 10 µs no call with a
    // ValidateToken round trip beats).
    assert_eq!(text(&server.span.attributes, "code").as_deref(), Some("Ok"));
    let latency_ms = server
        .span
        .attributes
        .iter()
        .find(|a| a.key == "latency_ms")
        .and_then(|a| match a.value.as_ref()?.value {
            Some(Value::DoubleValue(ms)) => Some(ms),
            _ => None,
        })
        .expect("latency_ms, a double");
    let span_ms = (server.span.end_time_unix_nano - server.span.start_time_unix_nano) as f64 / 1e6;
    assert!(
        latency_ms > 0.01 && latency_ms <= span_ms + 1.0,
        "latency {latency_ms} ms in a span of {span_ms} ms"
    );
    let validate = spans
        .iter()
        .find(|s| in_trace(s) && s.service == "auth-service" && s.span.name == validate_path)
        .unwrap();
    // ValidateToken is made inside document-service's span (or a span
    // below it): walk up from auth-service's parent to document-service's.
    let mut parent = validate.span.parent_span_id.clone();
    let mut hops = 0;
    while parent != server.span.span_id {
        let up = spans
            .iter()
            .find(|s| s.span.span_id == parent)
            .unwrap_or_else(|| panic!("ValidateToken's parent {} is not exported", hex(&parent)));
        assert_eq!(up.service, "document-service");
        parent = up.span.parent_span_id.clone();
        hops += 1;
        assert!(hops < 10, "ValidateToken is not below the upload's span");
    }

    // In the default (local) mode, document-service calls auth-service in
    // the background: the keys and the revocation feed are traces of their
    // own, auth-service's side of each a child of document-service's.
    let local_db = TestDb::fresh("tracelocal").await;
    let mut local_env = docs_env.clone();
    local_env.retain(|(k, _)| {
        !matches!(
            *k,
            "TOKEN_VALIDATION" | "DOCUMENT_DATABASE_URL" | "RUST_LOG"
        )
    });
    local_env.push(("DOCUMENT_DATABASE_URL", local_db.url.clone()));
    let _local = Process::start(DOCUMENT_BIN.as_ref(), &[], &local_env, "document-service").await;
    let spans = collector
        .until(
            "the keys' fetch and the feed, with auth-service's side",
            |spans| {
                let below = |name: &str, path: &str| {
                    spans.iter().any(|outer| {
                        outer.service == "document-service"
                            && outer.span.name == name
                            && spans.iter().any(|s| {
                                s.service == "auth-service"
                                    && s.span.name == path
                                    && s.span.parent_span_id == outer.span.span_id
                            })
                    })
                };
                // The feed's span lasts as long as its watch (it is exported
                // when the watch ends): its children at auth-service share it
                // as their parent, one that is not auth-service's own.
                let parent_of = |path: &str| {
                    spans
                        .iter()
                        .find(|s| s.service == "auth-service" && s.span.name == path)
                        .map(|s| s.span.parent_span_id.clone())
                };
                let token = parent_of("/docverify.auth.v1.AuthService/IssueServiceToken");
                let snapshot =
                    parent_of("/docverify.auth.v1.RevocationService/ListRevocationState");
                let feed_traced = token.is_some_and(|parent| {
                    !parent.is_empty()
                        && snapshot == Some(parent.clone())
                        && !spans
                            .iter()
                            .any(|s| s.service == "auth-service" && s.span.span_id == parent)
                });
                below(
                    "fetch signing keys",
                    "/docverify.auth.v1.AuthService/ListSigningKeys",
                ) && feed_traced
            },
        )
        .await;

    // The audit event names the trace; the log lines do too.
    let admin = login.access_token.clone();
    let events = testkit::audit_events(&docs_channel, &admin, "document.uploaded").await;
    let event = events.iter().find(|e| e.target_id == document.id).unwrap();
    let details: serde_json::Value = serde_json::from_str(&event.details_json).unwrap();
    assert_eq!(details["trace_id"], trace_id, "{details}");
    assert!(
        docs.output().contains(&format!("trace_id={trace_id}")),
        "document-service's log lines name the trace:\n{}",
        docs.output()
    );

    let (_, secret) = std::fs::read_to_string(&credentials)
        .unwrap()
        .trim()
        .split_once(':')
        .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
        .unwrap();
    let secrets = [
        ADMIN_PASSWORD,
        login.access_token.as_str(),
        login.refresh_token.as_str(),
        secret.as_str(),
    ];
    let all = collector.spans.lock().unwrap().clone();
    assert!(all.len() >= spans.len());
    for exported in &all {
        let span = &exported.span;
        let values = span
            .attributes
            .iter()
            .chain(span.events.iter().flat_map(|e| e.attributes.iter()))
            .filter_map(|a| a.value.as_ref().map(|v| (a.key.clone(), shown(v))));
        for (key, value) in values {
            for secret in secrets {
                assert!(
                    !value.contains(secret),
                    "{} span {:?}: attribute {key} holds a secret",
                    exported.service,
                    span.name
                );
            }
        }
    }
    testkit::measured(format_args!(
        "{} spans exported by both services",
        all.len()
    ));
}
