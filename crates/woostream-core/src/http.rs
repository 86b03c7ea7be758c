//! Outbound HTTPS: one trust store for every client woostream makes (the shop's REST API, the
//! schema registry, Slack, the CRM). The built-in roots and the platform's trust store (the
//! image's CA bundle, `SSL_CERT_FILE`) are always trusted; `[http] ca_file` adds a private CA
//! (a shop behind a corporate or self-signed certificate). A certificate that is not trusted is
//! named at once and never retried: retrying cannot make it trusted.

use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock};

use anyhow::Context;

/// The CA certificates added by `[http] ca_file`, for every client made after it is set.
static EXTRA_ROOTS: RwLock<Vec<reqwest::Certificate>> = RwLock::new(Vec::new());

/// Reads a PEM bundle; an error says what is wrong with the file.
pub fn read_ca_file(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("{} is not a PEM certificate bundle", path.display()))?;
    anyhow::ensure!(
        !certificates.is_empty(),
        "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        path.display()
    );
    Ok(certificates)
}

/// Trusts the certificates of `[http] ca_file` (when set) in every client made from now on.
pub fn trust(config: &crate::config::HttpConfig) -> anyhow::Result<()> {
    let roots = match &config.ca_file {
        Some(path) => read_ca_file(path).context("http.ca_file")?,
        None => Vec::new(),
    };
    *EXTRA_ROOTS.write().expect("trust store lock poisoned") = roots;
    Ok(())
}

/// Where platforms keep their CA bundle (Debian and Ubuntu, RHEL, Alpine); `SSL_CERT_FILE`
/// first, as OpenSSL reads it.
const PLATFORM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The platform's trust store, read once per process: parsing it for every client made would
/// cost milliseconds each time.
fn platform_roots() -> &'static [reqwest::Certificate] {
    static ROOTS: OnceLock<Vec<reqwest::Certificate>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .into_iter()
            .chain(PLATFORM_BUNDLES.iter().map(PathBuf::from))
            .find_map(|path| {
                let pem = std::fs::read(path).ok()?;
                reqwest::Certificate::from_pem_bundle(&pem).ok()
            })
            .unwrap_or_default()
    })
}

/// Every CA certificate a client trusts besides the built-in roots.
fn trusted_roots() -> Vec<reqwest::Certificate> {
    let extra = EXTRA_ROOTS.read().expect("trust store lock poisoned");
    platform_roots()
        .iter()
        .chain(extra.iter())
        .cloned()
        .collect()
}

/// A client builder with the trust store above; each client adds its own timeouts.
pub fn client() -> reqwest::ClientBuilder {
    trusted_roots()
        .into_iter()
        .fold(reqwest::Client::builder(), |b, root| {
            b.add_root_certificate(root)
        })
}

/// A blocking client builder with the same trust store (for a thread without an async
/// runtime: the trace exporter's).
pub fn blocking_client() -> reqwest::blocking::ClientBuilder {
    trusted_roots()
        .into_iter()
        .fold(reqwest::blocking::Client::builder(), |b, root| {
            b.add_root_certificate(root)
        })
}

/// When a request failed because the server's certificate is not trusted (or its name does
/// not match), what the TLS layer said, and what to do about it.
pub fn certificate_problem(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        let text = e.to_string();
        if text.contains("certificate") || text.contains("UnknownIssuer") {
            return Some(format!(
                "the server's TLS certificate is not trusted ({text}): add its CA to [http] ca_file (PEM), or to the platform's trust store"
            ));
        }
        source = e.source();
    }
    None
}
