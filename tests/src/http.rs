//! A tiny blocking HTTP/1.1 client (plain or rustls TLS) for checking servers from tests,
//! independent of the prober's own client. One request per connection (`Connection: close`).

use anyhow::{bail, Context as _};
use base64::Engine as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A response: status, headers (names lower-cased, in order) and the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response body is not JSON: {}", self.text()))
    }
}

/// Blocking client. `HttpClient::new()` speaks plain HTTP and TLS trusting no CA; add a CA
/// with [`HttpClient::with_ca`] and a client certificate with [`HttpClient::with_client_cert`].
#[derive(Clone)]
pub struct HttpClient {
    roots: Vec<CertificateDer<'static>>,
    client_cert: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    timeout: Duration,
    insecure: bool,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    pub fn new() -> Self {
        HttpClient {
            roots: Vec::new(),
            client_cert: None,
            timeout: Duration::from_secs(10),
            insecure: false,
        }
    }

    /// Trusts the CA certificate(s) in this PEM file.
    pub fn with_ca(mut self, ca_pem: &Path) -> anyhow::Result<Self> {
        for cert in CertificateDer::pem_file_iter(ca_pem)
            .with_context(|| format!("reading CA certificates from {}", ca_pem.display()))?
        {
            self.roots
                .push(cert.with_context(|| format!("parsing {}", ca_pem.display()))?);
        }
        Ok(self)
    }

    /// Presents this client certificate (PEM chain + PEM key) in TLS handshakes.
    pub fn with_client_cert(mut self, cert_pem: &Path, key_pem: &Path) -> anyhow::Result<Self> {
        let chain = CertificateDer::pem_file_iter(cert_pem)
            .with_context(|| format!("reading {}", cert_pem.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing {}", cert_pem.display()))?;
        let key = PrivateKeyDer::from_pem_file(key_pem)
            .with_context(|| format!("reading private key {}", key_pem.display()))?;
        self.client_cert = Some((chain, Arc::new(key)));
        Ok(self)
    }

    /// Accepts any server certificate (still checks handshake signatures). For readiness
    /// checks only, never for assertions about TLS.
    pub fn insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Connect/read/write timeout of each request (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn get(&self, url: &str) -> anyhow::Result<Response> {
        self.request("GET", url, &[], &[])
    }

    /// GET with HTTP basic credentials.
    pub fn get_basic(&self, url: &str, user: &str, pass: &str) -> anyhow::Result<Response> {
        let auth = basic_auth(user, pass);
        self.request("GET", url, &[("Authorization", auth.as_str())], &[])
    }

    /// Sends one request and reads the whole response. `url` is `http(s)://host:port/path?q`.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Response> {
        self.request_inner(method, url, headers, body)
            .with_context(|| format!("{method} {url}"))
    }

    fn request_inner(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Response> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            bail!("URL must start with http:// or https://");
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().context("bad port in URL")?),
            None => (authority, if tls { 443 } else { 80 }),
        };
        let addr = (host, port)
            .to_socket_addrs()
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} resolves to no address"))?;
        let tcp = TcpStream::connect_timeout(&addr, self.timeout)
            .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_read_timeout(Some(self.timeout))?;
        tcp.set_write_timeout(Some(self.timeout))?;
        tcp.set_nodelay(true)?;

        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
        let mut has_len = false;
        for (n, v) in headers {
            has_len |= n.eq_ignore_ascii_case("content-length");
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !has_len && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");

        let raw = if tls {
            let config = self.tls_config()?;
            let name = ServerName::try_from(host.to_string())
                .with_context(|| format!("{host} is not a valid TLS server name"))?;
            let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            exchange(&mut stream, req.as_bytes(), body)?
        } else {
            let mut stream = tcp;
            exchange(&mut stream, req.as_bytes(), body)?
        };
        parse_response(&raw, method == "HEAD")
    }

    fn tls_config(&self) -> anyhow::Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in &self.roots {
            roots
                .add(c.clone())
                .context("adding a CA certificate to the trust store")?;
        }
        // Explicit provider: the workspace may enable more than one rustls backend.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        } else {
            builder.with_root_certificates(roots)
        };
        Ok(match &self.client_cert {
            Some((chain, key)) => builder.with_client_auth_cert(chain.clone(), key.clone_key())?,
            None => builder.with_no_client_auth(),
        })
    }
}

/// `Basic base64(user:pass)`.
pub fn basic_auth(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn exchange<S: Read + Write>(s: &mut S, head: &[u8], body: &[u8]) -> anyhow::Result<Vec<u8>> {
    s.write_all(head).context("sending request head")?;
    s.write_all(body).context("sending request body")?;
    s.flush()?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        // A TLS peer that closes without close_notify: the response is complete anyway.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e).context("reading response"),
    }
    Ok(raw)
}

fn parse_response(raw: &[u8], head_only: bool) -> anyhow::Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("incomplete response ({} bytes)", raw.len()))?;
    let head = std::str::from_utf8(&raw[..end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if head_only {
        Vec::new()
    } else if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunked body")?;
        let size_str = std::str::from_utf8(&data[..eol])?
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        let size = usize::from_str_radix(size_str, 16).context("bad chunk size")?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            bail!("truncated chunked body");
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
