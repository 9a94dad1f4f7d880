//! Connection strings and TLS.
//!
//! A `--db` value selects PostgreSQL when it is a `postgres://` or
//! `postgresql://` URL or libpq's `key=value` form (`host=db1 dbname=co`);
//! anything else is a SQLite path ([`is_postgres_url`]).
//!
//! `sslmode` and `sslrootcert` are taken out here (tokio-postgres knows
//! neither `verify-ca` nor `verify-full` nor root files) and the rest goes
//! to tokio-postgres' own parser. The modes mean what they mean to libpq:
//!
//! | sslmode | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | - |
//! | `prefer` (default) | if the server offers it | not checked |
//! | `require` | always | not checked; checked like `verify-ca` when `sslrootcert` is given |
//! | `verify-ca` | always | signed by `sslrootcert` |
//! | `verify-full` | always | signed by `sslrootcert` and names the host |
//!
//! `sslrootcert` defaults to `~/.postgresql/root.crt`, as in libpq. rustls
//! with the ring provider: no C toolchain beyond what ring needs, no cmake.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::driver::{Error, Result};

/// libpq keywords that start a `key=value` connection string.
const KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "sslmode",
    "sslrootcert",
    "application_name",
    "connect_timeout",
    "options",
    "target_session_attrs",
    "keepalives",
    "keepalives_idle",
    "channel_binding",
];

/// Whether a `--db` value selects PostgreSQL: a `postgres://` or
/// `postgresql://` URL, or a libpq `key=value` string whose first key is a
/// libpq keyword (`host=... dbname=...`). Anything else is a file path.
pub fn is_postgres_url(db: &str) -> bool {
    let db = db.trim_start();
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        return true;
    }
    match db.split_once('=') {
        Some((key, _)) => KEYWORDS.contains(&key.trim_end()),
        None => false,
    }
}

/// A connection string that cannot be used; says what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("invalid PostgreSQL connection string: {0}")]
    Invalid(String),
    #[error("unknown sslmode '{0}' (use disable, prefer, require, verify-ca or verify-full)")]
    SslMode(String),
    #[error("{0} is not supported (client certificates are not implemented)")]
    Unsupported(&'static str),
}

/// libpq's `sslmode`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" | "allow" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(UrlError::SslMode(other.to_string())),
        })
    }
}

/// A parsed connection string.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Everything but the TLS settings, for tokio-postgres.
    pub config: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    /// `sslrootcert`, when given.
    pub root_cert: Option<PathBuf>,
}

impl ConnectOptions {
    /// Parse a `postgres://` / `postgresql://` URL or a libpq `key=value`
    /// string.
    pub fn parse(db: &str) -> Result<ConnectOptions, UrlError> {
        let db = db.trim();
        let (rest, pairs) = if db.starts_with("postgres://") || db.starts_with("postgresql://") {
            split_url(db)?
        } else {
            split_key_values(db)?
        };
        let mut ssl_mode = SslMode::default();
        let mut root_cert = None;
        for (key, value) in pairs {
            match key.as_str() {
                "sslmode" => ssl_mode = value.parse()?,
                "sslrootcert" => root_cert = Some(PathBuf::from(value)),
                "sslcert" => return Err(UrlError::Unsupported("sslcert")),
                "sslkey" => return Err(UrlError::Unsupported("sslkey")),
                _ => {}
            }
        }
        let mut config = tokio_postgres::Config::from_str(&rest)
            .map_err(|e| UrlError::Invalid(super::PgError(&e).to_string()))?;
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        Ok(ConnectOptions {
            config,
            ssl_mode,
            root_cert,
        })
    }

    /// `host:port/dbname` for messages: never the password.
    pub fn target(&self) -> String {
        use tokio_postgres::config::Host;
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let db = self
            .config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres");
        format!("{host}:{port}/{db}")
    }

    /// The TLS connector for this mode.
    pub fn tls(&self) -> Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Other(format!("TLS setup: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match (self.ssl_mode, self.root_cert_path()) {
            (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => {
                Arc::new(AcceptAny(provider.signature_verification_algorithms))
            }
            (SslMode::Require | SslMode::VerifyCa, Some(path)) => {
                Arc::new(IgnoreName(webpki_verifier(&path, provider)?))
            }
            (SslMode::VerifyFull, Some(path)) => webpki_verifier(&path, provider)?,
            (mode @ (SslMode::VerifyCa | SslMode::VerifyFull), None) => {
                return Err(Error::input(UrlError::Invalid(format!(
                    "sslmode={} needs the CA certificate that signed the server's: \
                     set sslrootcert=/path/to/ca.pem (or put it in ~/.postgresql/root.crt)",
                    if mode == SslMode::VerifyCa {
                        "verify-ca"
                    } else {
                        "verify-full"
                    }
                ))));
            }
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// `sslrootcert`, or libpq's default `~/.postgresql/root.crt` if it
    /// exists.
    fn root_cert_path(&self) -> Option<PathBuf> {
        if let Some(p) = &self.root_cert {
            return Some(p.clone());
        }
        let home = std::env::var_os("HOME")?;
        let p = Path::new(&home).join(".postgresql/root.crt");
        p.exists().then_some(p)
    }
}

/// Split `postgres://...?a=b&sslmode=x` into the URL without the TLS
/// parameters, and all its query parameters (percent-decoded).
fn split_url(url: &str) -> Result<(String, Vec<(String, String)>), UrlError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut pairs = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let key = percent_decode(k)?;
        if is_tls_key(&key) {
            pairs.push((key, percent_decode(v)?));
        } else {
            kept.push(part);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, pairs))
}

fn is_tls_key(key: &str) -> bool {
    matches!(key, "sslmode" | "sslrootcert" | "sslcert" | "sslkey")
}

fn percent_decode(s: &str) -> Result<String, UrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| UrlError::Invalid(format!("bad percent-encoding in '{s}'")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError::Invalid(format!("'{s}' is not UTF-8")))
}

/// Split a libpq `key=value ...` string into the string without the TLS
/// keys (re-quoted), and the TLS keys with their values.
fn split_key_values(s: &str) -> Result<(String, Vec<(String, String)>), UrlError> {
    let mut kept = Vec::new();
    let mut pairs = Vec::new();
    for (key, value) in key_values(s)? {
        if is_tls_key(&key) {
            pairs.push((key, value));
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{quoted}'"));
        }
    }
    Ok((kept.join(" "), pairs))
}

/// Tokenize libpq's `key = value` pairs: values may be single-quoted, and
/// `\` escapes the next character.
fn key_values(s: &str) -> Result<Vec<(String, String)>, UrlError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(UrlError::Invalid(format!("missing '=' after '{key}'")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => {
                        return Err(UrlError::Invalid(format!(
                            "unterminated quoted value for '{key}'"
                        )));
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// A verifier that checks the chain against the roots in `path`.
fn webpki_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>> {
    let bad = |msg: String| Error::input(UrlError::Invalid(msg));
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("cannot read sslrootcert {}: {e}", path.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(format!("bad certificate in {}: {e}", path.display())))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("bad certificate in {}: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(bad(format!(
            "no certificate in sslrootcert {}",
            path.display()
        )));
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| Error::Other(format!("TLS setup: {e}")))
}

/// `sslmode=prefer`/`require` without a root: encrypt, check nothing about
/// who the server is (libpq's behaviour), but still check the handshake's
/// signatures.
#[derive(Debug)]
struct AcceptAny(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name may differ.
#[derive(Debug)]
struct IgnoreName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_values_select_postgres() {
        for yes in [
            "postgres://u@h/db",
            "postgresql://h:5433/db?sslmode=require",
            "host=db1 dbname=co",
            "  dbname = co user=x",
            "user=me",
        ] {
            assert!(is_postgres_url(yes), "{yes}");
        }
        for no in [
            "cojobs.db",
            "/var/lib/cojobs/jobs.db",
            "./a=b.db",
            "postgres.db",
            "mysql://h/db",
            "",
        ] {
            assert!(!is_postgres_url(no), "{no}");
        }
    }

    #[test]
    fn url_tls_parameters_are_taken_out() {
        let o = ConnectOptions::parse(
            "postgres://ann:s%40cret@db.example:6543/co?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        )
        .expect("parses");
        assert_eq!(o.ssl_mode, SslMode::VerifyFull);
        assert_eq!(o.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(o.config.get_user(), Some("ann"));
        assert_eq!(o.config.get_password(), Some(&b"s@cret"[..]));
        assert_eq!(o.config.get_dbname(), Some("co"));
        assert_eq!(o.config.get_application_name(), Some("x"));
        assert_eq!(o.config.get_ports(), &[6543]);
        assert_eq!(o.target(), "db.example:6543/co");
        assert!(!o.target().contains("cret"));
    }

    #[test]
    fn key_value_form_with_quotes() {
        let o = ConnectOptions::parse(
            r"host=127.0.0.1 port = 5432 dbname='my db' password='it\'s' sslmode=require",
        )
        .expect("parses");
        assert_eq!(o.ssl_mode, SslMode::Require);
        assert_eq!(o.config.get_dbname(), Some("my db"));
        assert_eq!(o.config.get_password(), Some(&b"it's"[..]));
        assert_eq!(o.target(), "127.0.0.1:5432/my db");
    }

    #[test]
    fn default_mode_is_prefer() {
        let o = ConnectOptions::parse("postgresql://h/db").expect("parses");
        assert_eq!(o.ssl_mode, SslMode::Prefer);
        assert_eq!(o.root_cert, None);
    }

    #[test]
    fn bad_strings_say_why() {
        let err = |s: &str| ConnectOptions::parse(s).expect_err(s).to_string();
        assert!(err("postgres://h/db?sslmode=sometimes").contains("unknown sslmode 'sometimes'"));
        assert!(err("host=h sslcert=/x").contains("sslcert is not supported"));
        assert!(err("host=h dbname='open").contains("unterminated"));
        assert!(err("host=h dbname").contains("missing '='"));
        assert!(err("postgres://h/db?sslmode=%zz").contains("percent-encoding"));
        assert!(err("host=h nonsense=1").contains("invalid PostgreSQL connection string"));
    }

    #[test]
    fn verify_modes_need_a_root() {
        let o = ConnectOptions::parse(
            "postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .expect("parses");
        let e = o.tls().err().expect("no such file");
        assert!(e.is_input());
        assert!(
            e.to_string()
                .contains("cannot read sslrootcert /nonexistent/ca.pem"),
            "{e}"
        );
    }
}
