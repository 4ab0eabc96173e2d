//! What every HTTP client of the CSM side shares: timeouts, the site's CA
//! bundle, capped response bodies and error messages that carry their cause
//! but no credential. A leaf: it imports nothing from this crate, so the
//! clients (`backends`, `k8s`, `s3`) and what builds them (`connect`) can all
//! use it without using each other.
use std::time::Duration;

/// Largest config, token, CA or kubeconfig file read: each is a few KiB.
pub const MAX_SMALL_FILE: u64 = 4 << 20;

/// Default time to open a connection (TCP and TLS) to the gateway, Keycloak,
/// STS or the Kubernetes API. A firewalled or dead endpoint fails in this
/// time instead of waiting for the kernel's minutes-long SYN retries.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time for a whole request to those, body included. Their answers
/// are capped (64 MiB at most), so a working link finishes well within it; a
/// server that accepts and then says nothing fails the run instead of
/// hanging it forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The connect and request timeouts of the CSM-side clients
/// (`connect_timeout`, `request_timeout` in the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: CONNECT_TIMEOUT,
            request: REQUEST_TIMEOUT,
        }
    }
}

/// Makes ring the process's TLS crypto provider, once. Every client here
/// (reqwest, the S3 client, kube) uses rustls with ring and no other
/// provider: ring builds in seconds where aws-lc's C library took a minute,
/// and reqwest needs the provider installed before it builds a client.
pub fn install_crypto() {
    // Err means a provider is installed already: ours, by an earlier call.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Every HTTP client of the CSM side starts here, so that none waits forever.
pub(crate) fn http_client_builder(timeouts: &Timeouts) -> reqwest::ClientBuilder {
    install_crypto();
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
}

/// A CA bundle whose every certificate is a usable trust anchor. It is
/// checked once, here, because the S3 client's TLS setup panics on a bad
/// certificate when it first connects instead of returning an error.
#[derive(Clone)]
pub struct CaBundle {
    certs: Vec<reqwest::Certificate>,
    /// The same roots (with the system's) for the S3 client.
    s3_tls: aws_smithy_http_client::tls::TlsContext,
}

impl CaBundle {
    pub fn from_pem(pem: &[u8]) -> Result<CaBundle, String> {
        use aws_smithy_http_client::tls::{TlsContext, TrustStore};
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let ders = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
        if ders.is_empty() {
            return Err("holds no PEM certificate".into());
        }
        let mut roots = rustls::RootCertStore::empty();
        let mut certs = Vec::with_capacity(ders.len());
        for (n, der) in ders.into_iter().enumerate() {
            certs.push(
                reqwest::Certificate::from_der(&der)
                    .map_err(|e| format!("certificate {}: {}", n + 1, error_chain(&e)))?,
            );
            roots
                .add(der)
                .map_err(|e| format!("certificate {} is not a usable CA: {e}", n + 1))?;
        }
        let s3_tls = TlsContext::builder()
            .with_trust_store(TrustStore::default().with_pem_certificate(pem))
            .build()
            .map_err(|e| error_chain(&e))?;
        Ok(CaBundle { certs, s3_tls })
    }

    pub(crate) fn s3_tls(&self) -> &aws_smithy_http_client::tls::TlsContext {
        &self.s3_tls
    }

    pub fn reqwest_certificates(&self) -> Vec<reqwest::Certificate> {
        self.certs.clone()
    }
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaBundle({} certificates)", self.certs.len())
    }
}

/// Why a response body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the answer: {0}")]
    Read(String),
}

/// Reads a response body, but never more than `max` bytes: a server that
/// streams forever costs `max` bytes of memory, not all of it.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| BodyError::Read(request_error(e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes, `outer: cause: root cause`, so that the user
/// reads "Connection refused" and not only "error sending request". A cause
/// whose text the message already holds is not repeated.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// A reqwest error's chain, without the URL reqwest adds: callers name the
/// request themselves, with the userinfo stripped (see `without_userinfo`).
pub(crate) fn request_error(e: reqwest::Error) -> String {
    error_chain(&e.without_url())
}

/// The URL without `user:password@`, for messages: a gateway given as
/// `https://user:pass@host` must not print the password in every error.
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The authority ends where the URL parser ends it (`\` is a separator
    // for http and https).
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_stripped_from_urls_in_messages() {
        assert_eq!(
            without_userinfo("https://admin:pw@gw.local/apis/ims/"),
            "https://gw.local/apis/ims/"
        );
        assert_eq!(without_userinfo("https://a@b:pw@gw"), "https://gw");
        assert_eq!(
            without_userinfo("https://gw.local/x@y"),
            "https://gw.local/x@y"
        );
        assert_eq!(without_userinfo("not a url"), "not a url");
    }

    #[test]
    fn the_error_chain_names_the_root_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Outer(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped: {0}")]
        struct Repeats(#[source] std::io::Error);
        assert_eq!(
            error_chain(&Outer(io)),
            "error sending request: Connection refused"
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        assert_eq!(error_chain(&Repeats(io)), "wrapped: Connection refused");
    }
}
