//! A test token server for the registry's `auth.token` mode: basic auth (GET), or an OAuth2
//! form (POST: the password and refresh-token grants) in, an ES256 JWT out. It can speak the
//! dialects real services do: answer with `token`, `access_token` or both, with or without
//! expiry fields, without a token at all, and refuse POST (405) so a client falls back to GET.
//! Plain HTTP on 127.0.0.1, one thread per connection.
//!
//! The registry trusts the signing key through `rootcertbundle` (a self-signed certificate of
//! the same key) and finds it by the JWT header `kid`, which must be the libtrust key ID of
//! the public key (see [`libtrust_key_id`]).

use anyhow::Context as _;
use base64::Engine as _;
use p256::ecdsa::{signature::Signer as _, Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod handle;
use handle::handle;

/// `service` the registry is configured with (the JWT `aud`).
pub const SERVICE: &str = "registry-prober-test";
/// `issuer` the registry is configured with (the JWT `iss`).
pub const ISSUER: &str = "registry-prober-test-issuer";

/// What the server may grant: `actions` on resources of `resource_type` named `name` (exact,
/// or a prefix when it ends with `*`), to the listed users only, or to every authenticated
/// user when `users` is `None`. Granted actions are the requested ones that are listed.
#[derive(Debug, Clone)]
pub struct Grant {
    pub resource_type: String,
    pub name: String,
    pub actions: Vec<String>,
    pub users: Option<Vec<String>>,
}

impl Grant {
    /// `actions` on repository `name` (`"probe/x"`, or a prefix like `"probe/*"`, or `"*"`).
    pub fn repository(name: &str, actions: &[&str]) -> Grant {
        Grant {
            resource_type: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
            users: None,
        }
    }

    /// `registry:catalog:*`, for `GET /v2/_catalog`.
    pub fn catalog() -> Grant {
        Grant {
            resource_type: "registry".into(),
            name: "catalog".into(),
            actions: vec!["*".into()],
            users: None,
        }
    }

    /// Restricts the grant to these users.
    pub fn for_users(mut self, users: &[&str]) -> Grant {
        self.users = Some(users.iter().map(|u| u.to_string()).collect());
        self
    }

    fn matches(&self, user: Option<&str>, rtype: &str, name: &str) -> bool {
        let name_ok = match self.name.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.name == name,
        };
        let user_ok = match (&self.users, user) {
            (None, _) => true,
            (Some(list), Some(u)) => list.iter().any(|l| l == u),
            (Some(_), None) => false,
        };
        self.resource_type == rtype && name_ok && user_ok
    }
}

/// One request the server answered (for assertions on caching and scopes).
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub method: String,
    /// The user authenticated (basic, the password grant, or whom a refresh token was for).
    pub user: Option<String>,
    pub service: Option<String>,
    pub scopes: Vec<String>,
    /// A POST form's `grant_type` and `client_id`.
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub status: u16,
}

/// The shape of a successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `token` and `access_token`, `expires_in` and `issued_at` (the default).
    Full,
    /// `access_token` only, as OAuth2 services answer.
    AccessTokenOnly,
    /// `token` only, without `expires_in` or `issued_at`.
    NoExpiry,
    /// 200 with `expires_in` but neither `token` nor `access_token`.
    NoToken,
}

/// How a POST token request is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Post {
    /// The OAuth2 password and refresh-token grants (the default).
    Accept,
    /// 405 Method Not Allowed: a service that speaks GET only.
    Refuse,
}

struct Shared {
    users: BTreeMap<String, String>,
    grants: Vec<Grant>,
    anonymous: bool,
    expires_in: AtomicU64,
    failing: AtomicBool,
    answer: Mutex<Answer>,
    post: Mutex<Post>,
    /// Refresh (identity) tokens issued, with the user each is for.
    refresh_tokens: Mutex<BTreeMap<String, String>>,
    signing_key: SigningKey,
    kid: String,
    count: AtomicU64,
    log: Mutex<Vec<TokenRequest>>,
}

/// A running token server; stopped on drop.
pub struct TokenServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    root_cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    /// Starts a server that knows these `(user, password)` pairs and these grants. Requests
    /// without credentials get 401 (see [`TokenServer::start_with_anonymous`]).
    pub fn start(users: &[(&str, &str)], grants: &[Grant]) -> anyhow::Result<TokenServer> {
        Self::start_inner(users, grants, false)
    }

    /// Like [`TokenServer::start`], but requests without credentials get a token too, with
    /// the grants whose `users` is `None` (like a registry with public repositories).
    pub fn start_with_anonymous(
        users: &[(&str, &str)],
        grants: &[Grant],
    ) -> anyhow::Result<TokenServer> {
        Self::start_inner(users, grants, true)
    }

    fn start_inner(
        users: &[(&str, &str)],
        grants: &[Grant],
        anonymous: bool,
    ) -> anyhow::Result<TokenServer> {
        let dir = tempfile::Builder::new()
            .prefix("token-server-")
            .tempdir()
            .context("creating the token server's temp dir")?;
        // One P-256 key: rcgen makes the certificate, p256 signs the JWTs.
        let key = rcgen::KeyPair::generate().context("generating the token signing key")?;
        let signing_key = SigningKey::from_pkcs8_der(&key.serialize_der())
            .map_err(|e| anyhow::anyhow!("loading the token signing key into p256: {e}"))?;
        let spki = signing_key
            .verifying_key()
            .to_public_key_der()
            .map_err(|e| anyhow::anyhow!("encoding the token public key: {e}"))?;
        let kid = libtrust_key_id(spki.as_bytes());
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "registry-prober test token signer",
        );
        let cert = params
            .self_signed(&key)
            .context("self-signing the token certificate")?;
        let root_cert = dir.path().join("token-root.pem");
        std::fs::write(&root_cert, cert.pem())
            .with_context(|| format!("writing {}", root_cert.display()))?;

        let listener =
            TcpListener::bind("127.0.0.1:0").context("binding the token server on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            grants: grants.to_vec(),
            anonymous,
            expires_in: AtomicU64::new(300),
            failing: AtomicBool::new(false),
            answer: Mutex::new(Answer::Full),
            post: Mutex::new(Post::Accept),
            refresh_tokens: Mutex::new(BTreeMap::new()),
            signing_key,
            kid,
            count: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("token-server-{}", addr.port()))
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        if let Ok(conn) = conn {
                            let shared = shared.clone();
                            std::thread::spawn(move || {
                                let _ = handle(&shared, conn);
                            });
                        }
                    }
                })
                .context("spawning the token server thread")?
        };
        Ok(TokenServer {
            shared,
            addr,
            stop,
            thread: Some(thread),
            root_cert,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT/token`, the realm.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// PEM certificate of the signing key, for the registry's `rootcertbundle`.
    pub fn root_cert_bundle(&self) -> &Path {
        &self.root_cert
    }

    /// The libtrust key ID put in every JWT's `kid`.
    pub fn key_id(&self) -> &str {
        &self.shared.kid
    }

    /// Number of requests to `/token` so far (answered or refused).
    pub fn token_requests(&self) -> u64 {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// Every request to `/token` so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// `expires_in` (and JWT lifetime) of tokens issued from now on; default 300 s.
    pub fn set_expires_in(&self, secs: u64) {
        self.shared.expires_in.store(secs, Ordering::SeqCst);
    }

    /// While true, `/token` answers 503 (a token-service outage).
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// The shape of successful answers from now on.
    pub fn set_answer(&self, answer: Answer) {
        if let Ok(mut a) = self.shared.answer.lock() {
            *a = answer;
        }
    }

    /// How POST requests are met from now on.
    pub fn set_post(&self, post: Post) {
        if let Ok(mut p) = self.shared.post.lock() {
            *p = post;
        }
    }

    /// An identity (refresh) token for `user`, as ACR's `/oauth2/exchange` hands out: a JWT
    /// valid for `valid_for`, traded at this server's refresh-token grant for access tokens.
    pub fn issue_refresh_token(&self, user: &str, valid_for: Duration) -> anyhow::Result<String> {
        let now = now_secs();
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": user,
            "aud": SERVICE,
            "grant_type": "refresh_token",
            "exp": now + valid_for.as_secs(),
            "iat": now,
            "jti": hex::encode(rand::random::<[u8; 16]>()),
        });
        let token = sign(&self.shared, &claims)?;
        self.shared
            .refresh_tokens
            .lock()
            .map_err(|_| anyhow::anyhow!("refresh token lock poisoned"))?
            .insert(token.clone(), user.to_string());
        Ok(token)
    }

    /// Issues a token directly (no HTTP), e.g. to craft requests in tests.
    pub fn issue(&self, user: Option<&str>, scopes: &[&str]) -> anyhow::Result<String> {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        jwt(&self.shared, user, SERVICE, &scopes)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// libtrust key ID of a public key: base32 (RFC 4648, no padding) of the first 30 bytes of
/// sha256(DER SubjectPublicKeyInfo), in 12 groups of 4 characters joined by ':'.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let b32 = data_encoding::BASE32_NOPAD.encode(&digest[..30]);
    b32.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn jwt(
    shared: &Shared,
    user: Option<&str>,
    service: &str,
    scopes: &[String],
) -> anyhow::Result<String> {
    let mut access = Vec::new();
    for scope in scopes {
        // type:name:actions, where name may itself contain ':' (host:port/repo).
        let Some((rtype, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let mut granted: Vec<String> = Vec::new();
        for action in actions.split(',').filter(|a| !a.is_empty()) {
            let ok = shared.grants.iter().any(|g| {
                g.matches(user, rtype, name) && g.actions.iter().any(|a| a == action || a == "*")
            });
            if ok && !granted.iter().any(|a| a == action) {
                granted.push(action.to_string());
            }
        }
        // Granted nothing: leave the resource out (the registry then answers 401/403).
        if !granted.is_empty() {
            access.push(serde_json::json!({"type": rtype, "name": name, "actions": granted}));
        }
    }
    let now = now_secs();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user.unwrap_or(""),
        "aud": service,
        "exp": now + shared.expires_in.load(Ordering::SeqCst),
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": hex::encode(rand::random::<[u8; 16]>()),
        "access": access,
    });
    sign(shared, &claims)
}

/// An ES256 JWT of `claims`, with the server's key ID in its header.
fn sign(shared: &Shared, claims: &serde_json::Value) -> anyhow::Result<String> {
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": shared.kid});
    let signing_input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(&header)?),
        b64url(&serde_json::to_vec(claims)?)
    );
    let sig: Signature = shared.signing_key.sign(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", b64url(&sig.to_bytes())))
}
