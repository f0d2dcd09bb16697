//! Certificate generation (rcgen): a CA and a serving certificate signed by it. Used by
//! `serve` without `--tls-cert` (embedded default) and by `certs generate`.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path} already exists; pass --force to overwrite it")]
    Exists { path: String },
    #[error("{path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// PEM-encoded CA certificate, serving certificate and its private key.
pub struct Generated {
    pub ca_crt: String,
    pub tls_crt: String,
    pub tls_key: String,
}

/// The DNS names a Service is reached by inside the cluster.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// A CA (10 years) and a serving certificate (`days` long) for `names` (DNS names or IPs).
pub fn generate(names: &[String], days: u32) -> Result<Generated, CertError> {
    let now = time_now();
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "live-migration-guard CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = now - time::Duration::hours(1);
    ca.not_after = now + time::Duration::days(3650);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name.push(
        DnType::CommonName,
        names
            .first()
            .map(String::as_str)
            .unwrap_or("live-migration-guard"),
    );
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.not_before = now - time::Duration::hours(1);
    leaf.not_after = now + time::Duration::days(i64::from(days));
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &ca)?;
    Ok(Generated {
        ca_crt: ca.pem(),
        tls_crt: cert.pem(),
        tls_key: key.serialize_pem(),
    })
}

/// The files [`write`] creates.
pub const FILES: [&str; 3] = ["ca.crt", "tls.crt", "tls.key"];

/// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`. Without `force` nothing
/// is written when any of them exists ([`CertError::Exists`] names the first).
pub fn write(dir: &Path, g: &Generated, force: bool) -> Result<(), CertError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| CertError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    if !force
        && let Some(path) = FILES
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.symlink_metadata().is_ok())
    {
        return Err(CertError::Exists {
            path: path.display().to_string(),
        });
    }
    for (name, body, private) in [
        ("ca.crt", &g.ca_crt, false),
        ("tls.crt", &g.tls_crt, false),
        ("tls.key", &g.tls_key, true),
    ] {
        let path = dir.join(name);
        write_file(&path, body.as_bytes(), private, force).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CertError::Exists {
                    path: path.display().to_string(),
                }
            } else {
                io(&path)(e)
            }
        })?;
    }
    Ok(())
}

fn write_file(path: &Path, body: &[u8], private: bool, overwrite: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    opts.open(path)?.write_all(body)
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}
