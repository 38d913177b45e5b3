//! Pieces both servers are built from: reflection, health, and a shutdown
//! that drains in-flight RPCs for a bounded time (tonic alone waits forever).

use std::{future::Future, time::Duration};

use tokio::sync::watch;

use crate::error::{Error, Result};

/// Reflection v1 (buf curl, grpcui) and v1alpha (grpcurl, Python) listing
/// `services` (full names) plus health, over the docverify descriptors and
/// the `google.rpc` error details (so grpcurl prints them decoded).
pub fn reflection(
    services: &[&str],
) -> Result<(
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
)> {
    let builder = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        services
            .iter()
            .fold(builder, |b, name| b.with_service_name(*name))
    };
    let v1 = builder()
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .build_v1()
        .map_err(Error::internal)?;
    let v1alpha = builder()
        .with_service_name("grpc.reflection.v1alpha.ServerReflection")
        .build_v1alpha()
        .map_err(Error::internal)?;
    Ok((v1, v1alpha))
}

/// Splits a shutdown signal into the future tonic waits on (stop accepting,
/// drain) and a deadline that fires `drain` after the signal. Serve with
/// `tokio::select!` over both, so a stuck client cannot hold the process.
pub fn graceful(
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> (
    impl Future<Output = ()> + Send,
    impl Future<Output = ()> + Send,
) {
    let (tx, mut rx) = watch::channel(false);
    let signal = async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let deadline = async move {
        shutdown.await;
        let _ = tx.send(true);
        tokio::time::sleep(drain).await;
        tracing::warn!(
            ?drain,
            "drain timeout reached; closing remaining connections"
        );
    };
    (signal, deadline)
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}

/// The process exit code for a binary's result; a startup failure names its
/// cause (the setting or the dependency) on stderr.
pub fn exit(result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            tracing::error!("{message}");
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {message}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
