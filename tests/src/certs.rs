//! Test PKI made with rcgen: a CA, server leaves (SAN IP:127.0.0.1 + DNS:localhost,
//! CA:FALSE, EKU serverAuth), client leaves (EKU clientAuth), and broken variants
//! (expired, issued by another CA) for fault tests.
//!
//! File names are chosen so that a directory holding them is also a valid skopeo/containers
//! `--cert-dir`: only the trusted CA is named `*.crt` (containers trusts every `*.crt`),
//! client certificates are `*.cert` with a matching `*.key`, and everything else is `*.pem`
//! (ignored there; a lone `*.key` would make containers fail).

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// PEM files of a server certificate: leaf `cert`, its `key`, and the `ca` a client should
/// trust (for [`TestCa::issue_untrusted_server_cert`], a CA that did *not* issue `cert`).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TlsFiles {
    /// The directory holding the files: usable as skopeo `--cert-dir` (it has `ca.crt`).
    pub fn dir(&self) -> &Path {
        self.ca.parent().unwrap_or(Path::new("."))
    }
}

/// PEM files of a client certificate (`<name>.cert`, `<name>.key`) and of the CA that signed it.
#[derive(Debug, Clone)]
pub struct ClientFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A throwaway certificate authority.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
}

impl TestCa {
    /// A new CA ("registry-prober test CA", ECDSA P-256, valid 1975..4096).
    pub fn new() -> anyhow::Result<TestCa> {
        Self::with_name("registry-prober test CA")
    }

    /// A new CA with this common name.
    pub fn with_name(common_name: &str) -> anyhow::Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().context("generating the CA key")?;
        let cert = params
            .self_signed(&key)
            .context("self-signing the CA certificate")?;
        Ok(TestCa { cert, key })
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA certificate to `dir/ca.crt` and returns the path.
    pub fn write_ca(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        write(&dir.join("ca.crt"), &self.cert.pem())
    }

    /// Server leaf for 127.0.0.1 and localhost, valid now: `server.pem`, `server-key.pem`,
    /// `ca.crt` in `dir`.
    pub fn issue_server_cert(&self, dir: &Path) -> anyhow::Result<TlsFiles> {
        self.issue_server_cert_with(dir, "server", None)
    }

    /// Like [`issue_server_cert`](Self::issue_server_cert) but expired (valid 2000-01-01 to
    /// 2001-01-01): `expired-server.pem`, `expired-server-key.pem`, `ca.crt`.
    pub fn issue_expired_server_cert(&self, dir: &Path) -> anyhow::Result<TlsFiles> {
        self.issue_server_cert_with(
            dir,
            "expired-server",
            Some((
                rcgen::date_time_ymd(2000, 1, 1),
                rcgen::date_time_ymd(2001, 1, 1),
            )),
        )
    }

    /// A valid-looking server leaf issued by a *different*, fresh CA, while `ca` of the result
    /// still points at this CA's `ca.crt`: a client trusting `ca` must reject it. Files:
    /// `untrusted-server.pem`, `untrusted-server-key.pem`, `untrusted-ca.pem`, `ca.crt`.
    pub fn issue_untrusted_server_cert(&self, dir: &Path) -> anyhow::Result<TlsFiles> {
        let other = TestCa::with_name("registry-prober untrusted CA")?;
        write(&dir.join("untrusted-ca.pem"), &other.cert_pem())?;
        let files = other.issue_server_cert_with(dir, "untrusted-server", None)?;
        // `other` wrote its own ca.crt: put this (trusted) CA back in place.
        let ca = self.write_ca(dir)?;
        Ok(TlsFiles { ca, ..files })
    }

    /// Server leaf with a chosen file stem and optional (not_before, not_after).
    pub fn issue_server_cert_with(
        &self,
        dir: &Path,
        name: &str,
        validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
    ) -> anyhow::Result<TlsFiles> {
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name = dn("127.0.0.1");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if let Some((nb, na)) = validity {
            params.not_before = nb;
            params.not_after = na;
        }
        let key = KeyPair::generate().context("generating a server key")?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .with_context(|| format!("signing server certificate {name}"))?;
        Ok(TlsFiles {
            cert: write(&dir.join(format!("{name}.pem")), &cert.pem())?,
            key: write(&dir.join(format!("{name}-key.pem")), &key.serialize_pem())?,
            ca: self.write_ca(dir)?,
        })
    }

    /// Client leaf (EKU clientAuth, CN = `common_name`): `<common_name>.cert`,
    /// `<common_name>.key`, `ca.crt` in `dir`.
    pub fn issue_client_cert(&self, dir: &Path, common_name: &str) -> anyhow::Result<ClientFiles> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().context("generating a client key")?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .with_context(|| format!("signing client certificate {common_name}"))?;
        Ok(ClientFiles {
            cert: write(&dir.join(format!("{common_name}.cert")), &cert.pem())?,
            key: write(
                &dir.join(format!("{common_name}.key")),
                &key.serialize_pem(),
            )?,
            ca: self.write_ca(dir)?,
        })
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn write(path: &Path, contents: &str) -> anyhow::Result<PathBuf> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_path_buf())
}
