//! TLS client configuration: system roots, a custom CA file, a client certificate (mTLS),
//! or the explicit insecure switch.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How to trust a target's server and how to present ourselves to it.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// PEM bundle added to the roots (system roots still used).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mTLS.
    pub client_cert: Option<ClientCert>,
    /// Accept any server certificate (explicit switch; the handshake still completes and
    /// its signatures are still checked).
    pub insecure: bool,
}

/// PEM files of a client certificate chain (leaf first) and its private key.
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("reading CA file {}", path.display())]
    ReadCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CA file {} holds no PEM certificates", path.display())]
    NoCaCerts { path: PathBuf },
    #[error("CA file {} holds a certificate that cannot be a root", path.display())]
    BadCaCert {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("reading client certificate file {}", path.display())]
    ReadClientCert {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("client certificate file {} holds no PEM certificates", path.display())]
    NoClientCerts { path: PathBuf },
    #[error("reading client key file {}", path.display())]
    ReadClientKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("client key file {} holds no private key", path.display())]
    NoClientKey { path: PathBuf },
    #[error("invalid client certificate")]
    ClientCert {
        #[source]
        source: rustls::Error,
    },
    #[error("choosing tls protocol versions")]
    Protocol {
        #[source]
        source: rustls::Error,
    },
}

/// Builds the rustls config for one target. ALPN offers h2 then http/1.1.
///
/// Targets with the default options (system roots, no client certificate) share one config,
/// and with it one TLS session cache: a config costs ~14 KiB, 14 MiB at 1,000 targets.
pub fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, TlsConfigError> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let is_default = opts.ca_file.is_none() && opts.client_cert.is_none() && !opts.insecure;
    if !is_default {
        return build_client_config(opts);
    }
    if let Some(config) = DEFAULT.get() {
        return Ok(config.clone());
    }
    let config = build_client_config(opts)?;
    Ok(DEFAULT.get_or_init(|| config).clone())
}

fn build_client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, TlsConfigError> {
    // No process-wide provider is installed, so name ring explicitly everywhere.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsConfigError::Protocol { source })?;

    let builder = if opts.insecure {
        // The CA file is not read: with every certificate accepted it could change nothing.
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new(&provider)))
    } else {
        builder.with_root_certificates(root_store(opts.ca_file.as_deref())?)
    };

    let mut config = match &opts.client_cert {
        Some(client) => {
            let chain = read_client_chain(&client.cert_file)?;
            let key = read_client_key(&client.key_file)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| TlsConfigError::ClientCert { source })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The system roots, read once per process and shared by every target's config: reading and
/// parsing them per target cost ~8 ms and ~90 KiB each (8 s and 90 MiB for 1,000 targets).
/// A config reload re-reads CA files, not the system store.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            if !native.errors.is_empty() {
                // A broken system store must not stop a target that brings its own CA.
                tracing::debug!(errors = ?native.errors, "some system root certificates could not be loaded");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(added, ignored, "loaded system root certificates");
            Arc::new(roots)
        })
        .clone()
}

/// System roots plus the optional CA bundle.
fn root_store(ca_file: Option<&Path>) -> Result<Arc<RootCertStore>, TlsConfigError> {
    let system = system_roots();
    let Some(path) = ca_file else {
        return Ok(system);
    };
    let mut roots = RootCertStore::clone(&system);
    let pem = std::fs::read(path).map_err(|source| TlsConfigError::ReadCa {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(pem.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsConfigError::ReadCa {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCaCerts {
            path: path.to_path_buf(),
        });
    }
    for cert in certs {
        // Unlike the system store, every certificate here was put there on purpose,
        // so one that cannot be used is a configuration error.
        roots
            .add(cert)
            .map_err(|source| TlsConfigError::BadCaCert {
                path: path.to_path_buf(),
                source,
            })?;
    }
    Ok(Arc::new(roots))
}

fn read_client_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let read_err = |source| TlsConfigError::ReadClientCert {
        path: path.to_path_buf(),
        source,
    };
    let pem = std::fs::read(path).map_err(read_err)?;
    let chain = rustls_pemfile::certs(&mut BufReader::new(pem.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    if chain.is_empty() {
        return Err(TlsConfigError::NoClientCerts {
            path: path.to_path_buf(),
        });
    }
    Ok(chain)
}

fn read_client_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let read_err = |source| TlsConfigError::ReadClientKey {
        path: path.to_path_buf(),
        source,
    };
    let pem = std::fs::read(path).map_err(read_err)?;
    rustls_pemfile::private_key(&mut BufReader::new(pem.as_slice()))
        .map_err(read_err)?
        .ok_or_else(|| TlsConfigError::NoClientKey {
            path: path.to_path_buf(),
        })
}

/// The insecure switch: any certificate chain is accepted, but the handshake signatures are
/// still verified so the peer must hold the key of the certificate it presents.
#[derive(Debug)]
struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AcceptAnyServerCert {
    fn new(provider: &CryptoProvider) -> Self {
        Self {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AcceptAnyServerCert {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;
    use std::path::Path;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn targets_with_default_options_share_one_config_and_others_get_their_own() {
        let a = client_config(&TlsOptions::default()).expect("default config");
        let b = client_config(&TlsOptions::default()).expect("default config");
        assert!(Arc::ptr_eq(&a, &b));
        let insecure = TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        };
        let c = client_config(&insecure).expect("insecure config");
        let d = client_config(&insecure).expect("insecure config");
        assert!(!Arc::ptr_eq(&a, &c) && !Arc::ptr_eq(&c, &d));
        assert_eq!(a.alpn_protocols, c.alpn_protocols);
    }

    /// The error and its sources joined the way an operator sees them in a log line.
    fn chain(err: &dyn std::error::Error) -> String {
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    struct Pki {
        ca_cert: rcgen::Certificate,
        ca_key: KeyPair,
    }

    impl Pki {
        fn new() -> Self {
            let ca_key = KeyPair::generate().expect("generating a CA key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca_cert = params.self_signed(&ca_key).expect("self-signing the CA");
            Self { ca_cert, ca_key }
        }

        /// A leaf for `name` signed by this CA.
        fn issue(&self, name: &str) -> (rcgen::Certificate, KeyPair) {
            let key = KeyPair::generate().expect("generating a leaf key");
            let params = CertificateParams::new(vec![name.to_string()]).expect("leaf params");
            let cert = params
                .signed_by(&key, &self.ca_cert, &self.ca_key)
                .expect("signing the leaf");
            (cert, key)
        }
    }

    fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("writing a test file");
        path
    }

    /// A TLS server on 127.0.0.1 that completes one handshake and answers one byte; its task
    /// yields whether the client presented a certificate.
    async fn tls_server(
        cert: &rcgen::Certificate,
        key: &KeyPair,
        client_ca: Option<&rcgen::Certificate>,
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<bool>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                roots.add(ca.der().clone()).expect("adding client CA");
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::try_from(key.serialize_der()).expect("server key"),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accepting");
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return false;
            };
            let presented = tls.get_ref().1.peer_certificates().is_some();
            let _ = tls.write_all(b"x").await;
            let _ = tls.shutdown().await;
            presented
        });
        (addr, task)
    }

    async fn handshake(
        config: Arc<ClientConfig>,
        addr: std::net::SocketAddr,
        name: &str,
    ) -> std::io::Result<u8> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let server_name = ServerName::try_from(name.to_string()).expect("server name");
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await?;
        tls.read_u8().await
    }

    #[test]
    fn builds_default_config_offering_h2_then_http11() {
        let config = client_config(&TlsOptions::default()).expect("default config");
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(!config.client_auth_cert_resolver.has_certs());
    }

    #[tokio::test]
    async fn trusts_a_server_signed_by_the_ca_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new();
        let ca_file = write(dir.path(), "ca.pem", &pki.ca_cert.pem());
        let (cert, key) = pki.issue("localhost");
        let (addr, server) = tls_server(&cert, &key, None).await;

        let config = client_config(&TlsOptions {
            ca_file: Some(ca_file),
            ..TlsOptions::default()
        })
        .expect("config with CA file");
        assert_eq!(
            handshake(config, addr, "localhost")
                .await
                .expect("handshake"),
            b'x'
        );
        server.await.expect("server task");
    }

    #[tokio::test]
    async fn rejects_a_server_outside_the_roots() {
        let pki = Pki::new();
        let (cert, key) = pki.issue("localhost");
        let (addr, _server) = tls_server(&cert, &key, None).await;

        let config = client_config(&TlsOptions::default()).expect("default config");
        let err = handshake(config, addr, "localhost")
            .await
            .expect_err("untrusted server must fail");
        let rustls_err = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .expect("rustls error inside the io error");
        assert!(
            matches!(
                rustls_err,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            ),
            "{rustls_err:?}"
        );
    }

    #[tokio::test]
    async fn insecure_accepts_an_untrusted_server_and_completes_the_handshake() {
        let pki = Pki::new();
        // The name does not match either: insecure accepts that too.
        let (cert, key) = pki.issue("registry.invalid");
        let (addr, server) = tls_server(&cert, &key, None).await;

        let config = client_config(&TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        })
        .expect("insecure config");
        assert_eq!(
            handshake(config, addr, "localhost")
                .await
                .expect("handshake"),
            b'x'
        );
        server.await.expect("server task");
    }

    #[tokio::test]
    async fn presents_the_client_certificate_to_a_server_requiring_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new();
        let ca_file = write(dir.path(), "ca.pem", &pki.ca_cert.pem());
        let (server_cert, server_key) = pki.issue("localhost");
        let (client_cert, client_key) = pki.issue("prober");
        let cert_file = write(dir.path(), "client.pem", &client_cert.pem());
        let key_file = write(dir.path(), "client-key.pem", &client_key.serialize_pem());
        let (addr, server) = tls_server(&server_cert, &server_key, Some(&pki.ca_cert)).await;

        let config = client_config(&TlsOptions {
            ca_file: Some(ca_file),
            client_cert: Some(ClientCert {
                cert_file,
                key_file,
            }),
            insecure: false,
        })
        .expect("mTLS config");
        assert!(config.client_auth_cert_resolver.has_certs());
        assert_eq!(
            handshake(config, addr, "localhost")
                .await
                .expect("handshake"),
            b'x'
        );
        assert!(
            server.await.expect("server task"),
            "server saw no client certificate"
        );
    }

    #[test]
    fn reports_missing_ca_file_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        let err = client_config(&TlsOptions {
            ca_file: Some(path.clone()),
            ..TlsOptions::default()
        })
        .expect_err("missing CA file");
        assert!(matches!(err, TlsConfigError::ReadCa { .. }), "{err:?}");
        let io = err
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("io error kept as source");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(
            chain(&err),
            format!("reading CA file {}: {io}", path.display())
        );
    }

    #[test]
    fn reports_ca_file_without_certificates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "ca.pem", "not a certificate\n");
        let err = client_config(&TlsOptions {
            ca_file: Some(path.clone()),
            ..TlsOptions::default()
        })
        .expect_err("empty CA file");
        assert_eq!(
            err.to_string(),
            format!("CA file {} holds no PEM certificates", path.display())
        );
    }

    #[test]
    fn reports_ca_file_holding_an_unusable_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Valid PEM framing around bytes that are no certificate.
        let path = write(
            dir.path(),
            "ca.pem",
            "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
        );
        let err = client_config(&TlsOptions {
            ca_file: Some(path.clone()),
            ..TlsOptions::default()
        })
        .expect_err("garbage CA certificate");
        assert!(matches!(err, TlsConfigError::BadCaCert { .. }), "{err:?}");
        assert!(chain(&err).starts_with(&format!(
            "CA file {} holds a certificate that cannot be a root: ",
            path.display()
        )));
    }

    #[test]
    fn reports_missing_client_certificate_file_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert_file = dir.path().join("client.pem");
        let key_file = dir.path().join("client-key.pem");
        let err = client_config(&TlsOptions {
            client_cert: Some(ClientCert {
                cert_file: cert_file.clone(),
                key_file,
            }),
            ..TlsOptions::default()
        })
        .expect_err("missing client certificate");
        assert!(
            matches!(err, TlsConfigError::ReadClientCert { .. }),
            "{err:?}"
        );
        assert!(chain(&err).starts_with(&format!(
            "reading client certificate file {}: ",
            cert_file.display()
        )));
    }

    #[test]
    fn reports_client_certificate_file_without_certificates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = KeyPair::generate().expect("key");
        // A key where the certificate should be.
        let cert_file = write(dir.path(), "client.pem", &key.serialize_pem());
        let key_file = write(dir.path(), "client-key.pem", &key.serialize_pem());
        let err = client_config(&TlsOptions {
            client_cert: Some(ClientCert {
                cert_file: cert_file.clone(),
                key_file,
            }),
            ..TlsOptions::default()
        })
        .expect_err("client certificate file without certificates");
        assert_eq!(
            err.to_string(),
            format!(
                "client certificate file {} holds no PEM certificates",
                cert_file.display()
            )
        );
    }

    #[test]
    fn reports_missing_client_key_file_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, _key) = Pki::new().issue("prober");
        let cert_file = write(dir.path(), "client.pem", &cert.pem());
        let key_file = dir.path().join("client-key.pem");
        let err = client_config(&TlsOptions {
            client_cert: Some(ClientCert {
                cert_file,
                key_file: key_file.clone(),
            }),
            ..TlsOptions::default()
        })
        .expect_err("missing client key");
        assert!(
            matches!(err, TlsConfigError::ReadClientKey { .. }),
            "{err:?}"
        );
        assert!(
            chain(&err).starts_with(&format!("reading client key file {}: ", key_file.display()))
        );
    }

    #[test]
    fn reports_client_key_file_without_private_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, _key) = Pki::new().issue("prober");
        let cert_file = write(dir.path(), "client.pem", &cert.pem());
        // A certificate where the key should be.
        let key_file = write(dir.path(), "client-key.pem", &cert.pem());
        let err = client_config(&TlsOptions {
            client_cert: Some(ClientCert {
                cert_file,
                key_file: key_file.clone(),
            }),
            ..TlsOptions::default()
        })
        .expect_err("key file without key");
        assert_eq!(
            err.to_string(),
            format!(
                "client key file {} holds no private key",
                key_file.display()
            )
        );
    }

    #[test]
    fn reports_client_key_not_matching_the_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, _key) = Pki::new().issue("prober");
        let other_key = KeyPair::generate().expect("key");
        let cert_file = write(dir.path(), "client.pem", &cert.pem());
        let key_file = write(dir.path(), "client-key.pem", &other_key.serialize_pem());
        let err = client_config(&TlsOptions {
            client_cert: Some(ClientCert {
                cert_file,
                key_file,
            }),
            ..TlsOptions::default()
        })
        .expect_err("mismatched key");
        assert!(
            matches!(
                err,
                TlsConfigError::ClientCert {
                    source: rustls::Error::InconsistentKeys(_)
                }
            ),
            "{err:?}"
        );
        assert!(chain(&err).starts_with("invalid client certificate: "));
    }
}
