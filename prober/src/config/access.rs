//! How the prober reaches an endpoint: its TLS settings, turned into the rustls client config
//! here, once (a missing or broken CA, certificate or key file is a config error, not a failure
//! of every run), and its credentials, read from files or the environment.

use std::path::Path;

use url::Url;

use super::model::Tls;
use super::raw::{RawAuth, RawTls};
use super::registry_url::host_port;
use super::{invalid, ConfigError};
use crate::http::auth::{docker_config_credentials, Credentials};
use crate::http::tls::{self, ClientCert, TlsOptions};

impl RawTls {
    pub(super) fn validate(self) -> Result<Tls, ConfigError> {
        let client_cert = match (self.client_cert_file, self.client_key_file) {
            (Some(cert_file), Some(key_file)) => Some(ClientCert {
                cert_file,
                key_file,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "tls.client_cert_file is set but tls.client_key_file is not",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "tls.client_key_file is set but tls.client_cert_file is not",
                ))
            }
        };
        let options = TlsOptions {
            ca_file: self.ca_file,
            client_cert,
            insecure: self.insecure,
        };
        let client_config = tls::client_config(&options)
            .map_err(|e| invalid(format!("tls: {}", crate::http::error_chain(&e))))?;
        Ok(Tls::new(options, client_config))
    }
}

impl RawAuth {
    pub(super) fn validate(self, registry: &Url) -> Result<Option<Credentials>, ConfigError> {
        let password = match (&self.password_file, &self.password_env) {
            (Some(_), Some(_)) => {
                return Err(invalid("auth: set password_file or password_env, not both"))
            }
            (Some(path), None) => Some(read_password_file(path)?),
            (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
                invalid(format!(
                    "auth.password_env: environment variable {var:?} is not set"
                ))
            })?),
            (None, None) => None,
        };
        match (self.username, password, self.docker_config) {
            (Some(_), _, Some(_)) | (None, Some(_), Some(_)) => {
                Err(invalid("auth: docker_config cannot be combined with username/password"))
            }
            (Some(u), Some(p), None) => Ok(Some(Credentials::new(u, p))),
            (Some(u), None, None) => Err(invalid(format!(
                "auth.username {u:?} is set but no password: set auth.password_file or auth.password_env"
            ))),
            (None, Some(_), None) => Err(invalid("auth: a password is set but auth.username is not")),
            (None, None, Some(path)) => {
                let host = host_port(registry);
                docker_config_credentials(&path, &host)
                    .map_err(|e| invalid(format!("auth.docker_config: {e}")))?
                    .map(Some)
                    .ok_or_else(|| invalid(format!("auth.docker_config: {} has no credentials for {host}", path.display())))
            }
            (None, None, None) => Ok(None),
        }
    }
}

/// Reads a password file; one trailing newline (as `echo` writes) is not part of the password.
fn read_password_file(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(format!(
            "auth.password_file: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let password = text
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(invalid(format!(
            "auth.password_file: {} is empty",
            path.display()
        )));
    }
    Ok(password.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret\n").expect("write");
        assert_eq!(read_password_file(&p).expect("read"), "s3cret");
    }
}
