//! Calling the services as a client would, and asserting on what they answer.

/// `message` with `authorization: Bearer <token>`.
pub fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Asserts the code and the `ErrorInfo` reason of a failed call, and that
/// the status names the request id.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    reason: &str,
) -> tonic::Status {
    use tonic_types::StatusExt;
    let status = match result {
        Ok(value) => panic!("the call should have failed with {code:?}, got {value:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("every error carries ErrorInfo: {status:?}"));
    assert_eq!(info.reason, reason, "unexpected reason in {status:?}");
    assert_eq!(info.domain, shared::error::ERROR_DOMAIN);
    assert!(
        details
            .request_info()
            .is_some_and(|r| !r.request_id.is_empty()),
        "every error names its request id: {status:?}"
    );
    status
}

/// The fields named by a `BadRequest` detail.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Runs the futures at the same time (each on its own task) and returns
/// their outputs in order.
pub async fn concurrently<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(output) => results.push(output),
            Err(e) => panic!("a concurrent task failed: {e}"),
        }
    }
    results
}

/// A channel to `addr`, once its health service answers (retrying the
/// connection, never sleeping blindly beforehand).
pub async fn connect_when_ready(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = match tonic::transport::Channel::from_shared(format!("http://{addr}")) {
        Ok(endpoint) => endpoint.connect_lazy(),
        Err(e) => panic!("bad address {addr}: {e}"),
    };
    let mut health = HealthClient::new(channel.clone());
    for _ in 0..400 {
        let check = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        if check.is_ok() {
            return channel;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("server at {addr} did not become ready");
}

/// Sends `request` over a fresh HTTP/1.1 connection and returns all that
/// comes back before the server closes it (or 5 s pass). The socket is
/// read on a blocking thread: a test's runtime may host an in-process
/// auth-service that the server must reach before it answers (a token
/// check), and a read on the runtime's own thread would starve it.
pub async fn http1(addr: std::net::SocketAddr, request: Vec<u8>) -> Vec<u8> {
    use std::io::{Read, Write};
    let exchange = move || -> std::io::Result<Vec<u8>> {
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        stream.write_all(&request)?;
        let mut response = Vec::new();
        // A timed-out read keeps what came before it: the caller asserts
        // on the status line, so an empty answer fails there.
        let _ = stream.read_to_end(&mut response);
        Ok(response)
    };
    match tokio::task::spawn_blocking(exchange).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => panic!("HTTP/1.1 to {addr}: {e}"),
        Err(e) => panic!("HTTP/1.1 to {addr}: {e}"),
    }
}
