//! How the prober reaches an endpoint: its TLS settings, turned into the rustls client config
//! here, once (a missing or broken CA, certificate or key file is a config error, not a failure
//! of every run), and where its credentials come from (the environment, a password file, a
//! docker config and its credential helpers), each checked here so a broken one is a config
//! error.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::durations::positive;
use super::model::Tls;
use super::raw::{RawAuth, RawTls};
use super::registry_url::host_port;
use super::{invalid, ConfigError};
use crate::http::auth::Credentials;
use crate::http::error_chain;
use crate::http::keychain::{CredentialSource, Refresh};
use crate::http::tls::{self, ClientCert, TlsOptions};

/// Longer than this, a token from a helper could be used past its life (Artifact Registry's
/// last about an hour); a 401 would fetch a new one, but only after a failed request.
const MAX_REFRESH: Duration = Duration::from_secs(3600);
/// A helper slower than this would hold up every run it is asked in.
const MAX_HELPER_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// Where the endpoint's credentials come from, checked now: a password file or docker
    /// config must be readable and hold credentials for the registry, a credential helper it
    /// names must be on PATH, an inline identity token well-formed and unexpired.
    pub(super) fn validate(
        self,
        registry: &Url,
    ) -> Result<Option<Arc<CredentialSource>>, ConfigError> {
        let refresh = self.refresh()?;
        let source = match (
            self.username,
            self.password_file,
            self.password_env,
            self.docker_config,
        ) {
            (_, Some(_), Some(_), _) => {
                return Err(invalid("auth: set password_file or password_env, not both"))
            }
            (Some(_), _, _, Some(_)) | (None, Some(_), _, Some(_)) | (None, _, Some(_), Some(_)) => {
                return Err(invalid(
                    "auth: docker_config cannot be combined with username/password",
                ))
            }
            (Some(user), Some(path), None, None) => {
                CredentialSource::password_file(user, path, refresh.unwrap_or_default())
                    .map_err(|e| invalid(format!("auth.password_file: {}", error_chain(&e))))?
            }
            (Some(user), None, Some(var), None) => {
                let password = std::env::var(&var).map_err(|_| {
                    invalid(format!(
                        "auth.password_env: environment variable {var:?} is not set"
                    ))
                })?;
                if refresh.is_some() {
                    return Err(invalid(
                        "auth.refresh_interval is set, but a password from password_env is read \
                         once: use password_file or docker_config",
                    ));
                }
                CredentialSource::fixed(Credentials::new(user, password))
            }
            (Some(user), None, None, None) => {
                return Err(invalid(format!(
                    "auth.username {user:?} is set but no password: set auth.password_file or auth.password_env"
                )))
            }
            (None, Some(_), None, None) | (None, None, Some(_), None) => {
                return Err(invalid("auth: a password is set but auth.username is not"))
            }
            (None, None, None, Some(path)) => CredentialSource::docker_config(
                path,
                host_port(registry),
                refresh.unwrap_or_default(),
            )
            .map_err(|e| invalid(format!("auth.docker_config: {}", error_chain(&e))))?,
            (None, None, None, None) => {
                if refresh.is_some() {
                    return Err(invalid(
                        "auth.refresh_interval is set, but no credentials are",
                    ));
                }
                return Ok(None);
            }
        };
        Ok(Some(Arc::new(source)))
    }

    /// The refresh settings when any is given, each checked; helper_timeout only with a docker
    /// config, the only place a helper is named.
    fn refresh(&self) -> Result<Option<Refresh>, ConfigError> {
        if self.refresh_interval.is_none() && self.helper_timeout.is_none() {
            return Ok(None);
        }
        if self.helper_timeout.is_some() && self.docker_config.is_none() {
            return Err(invalid(
                "auth.helper_timeout is set but auth.docker_config is not (only a docker config \
                 names a credential helper)",
            ));
        }
        let defaults = Refresh::default();
        let interval = positive(
            "auth.refresh_interval",
            self.refresh_interval,
            defaults.interval,
        )?;
        at_most(
            "auth.refresh_interval",
            interval,
            MAX_REFRESH,
            "Artifact Registry's tokens last about an hour",
        )?;
        let helper_timeout = positive(
            "auth.helper_timeout",
            self.helper_timeout,
            defaults.helper_timeout,
        )?;
        at_most(
            "auth.helper_timeout",
            helper_timeout,
            MAX_HELPER_TIMEOUT,
            "a slower helper holds up every run",
        )?;
        Ok(Some(Refresh {
            interval,
            helper_timeout,
        }))
    }
}

/// `field` must not exceed `max`, for the reason given.
fn at_most(field: &str, d: Duration, max: Duration, why: &str) -> Result<(), ConfigError> {
    if d > max {
        return Err(invalid(format!(
            "{field}: {} is longer than {} ({why})",
            humantime::format_duration(d),
            humantime::format_duration(max)
        )));
    }
    Ok(())
}
