//! TLS: the serving certificate, hot-reloaded from disk, and the rustls configuration.
//!
//! Kubernetes updates a mounted Secret by swapping a `..data` symlink to a new directory,
//! so the files are replaced rather than rewritten and file-event watchers miss it (the
//! Kubewarden #1026 outage). We poll: every interval, read both files; if the bytes changed,
//! parse them, check that key and certificate match, and swap atomically. A broken pair is
//! logged and counted, and the old certificate keeps serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: String },
    #[error("{path}: invalid PEM: {message}")]
    Pem { path: String, message: String },
    #[error("certificate and key do not belong together: {0}")]
    Mismatch(rustls::Error),
    #[error("unusable key or certificate: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{path}: cannot read the certificate's validity: {message}")]
    Validity { path: String, message: String },
    #[error("client CA {path}: {message}")]
    ClientCa { path: String, message: String },
}

/// A certificate chain with its key, and the leaf's expiry (Unix seconds).
struct Loaded {
    key: Arc<CertifiedKey>,
    not_after: i64,
    fingerprint: (Vec<u8>, Vec<u8>),
}

/// Serves the current certificate to rustls and reloads it from files.
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
    not_after: std::sync::atomic::AtomicI64,
    files: Option<(PathBuf, PathBuf)>,
    fingerprint: Mutex<(Vec<u8>, Vec<u8>)>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// What a reload attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Reloaded { not_after: i64 },
}

impl CertStore {
    /// Loads `cert` (a chain: leaf first, intermediates after) and `key` from files.
    pub fn from_files(cert: &Path, key: &Path, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = read_pair(cert, key)?;
        let loaded = parse(&cert_pem, &key_pem, &cert.display().to_string(), &provider)?;
        Ok(Self::new(
            loaded,
            Some((cert.to_owned(), key.to_owned())),
            provider,
        ))
    }

    /// An in-memory certificate (the self-generated embedded default).
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let loaded = parse(cert_pem, key_pem, "generated certificate", &provider)?;
        Ok(Self::new(loaded, None, provider))
    }

    fn new(loaded: Loaded, files: Option<(PathBuf, PathBuf)>, provider: Arc<CryptoProvider>) -> Self {
        Self {
            current: RwLock::new(loaded.key),
            not_after: loaded.not_after.into(),
            files,
            fingerprint: Mutex::new(loaded.fingerprint),
            provider,
        }
    }

    /// Expiry of the serving certificate, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn reloads_from_files(&self) -> bool {
        self.files.is_some()
    }

    /// Re-reads the files; swaps only when they changed and the new pair is valid.
    pub fn reload(&self) -> Result<Reload, TlsError> {
        let Some((cert, key)) = &self.files else {
            return Ok(Reload::Unchanged);
        };
        let (cert_pem, key_pem) = read_pair(cert, key)?;
        {
            let fp = self
                .fingerprint
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if fp.0 == cert_pem && fp.1 == key_pem {
                return Ok(Reload::Unchanged);
            }
        }
        let loaded = parse(&cert_pem, &key_pem, &cert.display().to_string(), &self.provider)?;
        let not_after = loaded.not_after;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = loaded.key;
        self.not_after
            .store(not_after, std::sync::atomic::Ordering::Relaxed);
        *self
            .fingerprint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = loaded.fingerprint;
        Ok(Reload::Reloaded { not_after })
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    Ok((read(cert)?, read(key)?))
}

fn parse(
    cert_pem: &[u8],
    key_pem: &[u8],
    origin: &str,
    provider: &CryptoProvider,
) -> Result<Loaded, TlsError> {
    let pem_err = |e: rustls::pki_types::pem::Error| TlsError::Pem {
        path: origin.to_owned(),
        message: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(pem_err)?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: origin.to_owned(),
        });
    };
    let not_after = not_after(leaf, origin)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(pem_err)?;
    let certified = CertifiedKey::from_der(chain, key, provider)?;
    certified.keys_match().map_err(TlsError::Mismatch)?;
    Ok(Loaded {
        key: Arc::new(certified),
        not_after,
        fingerprint: (cert_pem.to_vec(), key_pem.to_vec()),
    })
}

fn not_after(leaf: &CertificateDer<'_>, origin: &str) -> Result<i64, TlsError> {
    use x509_parser::prelude::FromDer;
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(leaf).map_err(|e| TlsError::Validity {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
    Ok(cert.validity().not_after.timestamp())
}

/// Minimum TLS version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MinTls {
    /// TLS 1.2 and 1.3.
    #[value(name = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[value(name = "1.3")]
    Tls13,
}

/// Optional client-certificate verification (kube-apiserver can present one).
#[derive(Clone, Debug, Default)]
pub struct ClientAuth {
    pub ca: Option<PathBuf>,
    /// Accepted client certificate subject common names or DNS SANs; empty = any the CA signed.
    pub names: Vec<String>,
}

/// The rustls server configuration: TLS 1.2+ (or 1.3 only), ALPN h2 and http/1.1.
pub fn server_config(
    store: Arc<CertStore>,
    min: MinTls,
    client: &ClientAuth,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, TlsError> {
    let versions: &[&rustls::SupportedProtocolVersion] = match min {
        MinTls::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinTls::Tls13 => &[&rustls::version::TLS13],
    };
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let builder = match &client.ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let err = |message: String| TlsError::ClientCa {
                path: path.display().to_string(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots
                    .add(cert.map_err(|e| err(e.to_string()))?)
                    .map_err(|e| err(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(err("no certificate in the file".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| err(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Subject CN and DNS SANs of a client certificate, for the allowed-name check.
pub fn client_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName};
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(cert) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push((*d).to_owned());
            }
        }
    }
    names
}
