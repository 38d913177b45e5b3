//! The channel to auth-service (signing keys; ValidateToken in remote mode).

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use shared::{Error, Result, server::read_pem};

use crate::Config;

/// TLS when its URL is `https://` (trusting AUTH_CA_FILE, else the public
/// web roots), presenting TLS_CERT_FILE as the client certificate when
/// auth-service requires mutual TLS. Lazy: the service starts while
/// auth-service is still down.
pub(crate) fn connect(config: &Config) -> Result<Channel> {
    let url = &config.auth_service_url;
    let mut endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| Error::internal(format!("AUTH_SERVICE_URL {url}: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(std::time::Duration::from_secs(5));
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        tls = match &config.auth_ca_file {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read_pem("AUTH_CA_FILE", ca)?)),
            None => tls.with_webpki_roots(),
        };
        if let (Some(cert), Some(key)) = (&config.server.tls_cert_file, &config.server.tls_key_file)
        {
            tls = tls.identity(Identity::from_pem(
                read_pem("TLS_CERT_FILE", cert)?,
                read_pem("TLS_KEY_FILE", key)?,
            ));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Error::internal(format!("AUTH_SERVICE_URL {url}: {e}")))?;
    }
    Ok(endpoint.connect_lazy())
}
