//! Propagation: a replicated path (a read replica, another region, a mirror fed by
//! replication) serves a pushed image only after a while. The run polls the path for the
//! manifest until it appears or the path's deadline passes; the delay is measured from the
//! manifest PUT's answer.

use http::header;
use http::{Method, StatusCode};
use tokio::time::Instant;

use super::push::check_digest_header;
use super::Run;
use crate::http::Request;
use crate::oci::image::Image;
use crate::outcome::{Failure, PropagationReport, Reason, Step};

/// Margin before the step deadline at which polling gives up, so the last answer is reported
/// as a propagation timeout rather than cut off by the step's own deadline.
const MARGIN: std::time::Duration = std::time::Duration::from_millis(5);

impl Run<'_> {
    /// On a path with a propagation timeout: poll `HEAD manifests/<tag>` until 200. Other paths
    /// serve the image at once and pass without a step.
    pub(super) async fn wait_propagation(
        &mut self,
        image: &Image,
        tag: &str,
    ) -> Result<(), Failure> {
        let Some(propagation) = self.endpoint().propagation else {
            return Ok(());
        };
        let c = self.client();
        let path = self.endpoint().name.clone();
        let url = c.url(&format!("manifests/{tag}"))?;
        let digest = image.manifest_digest.clone();
        let pushed = self.manifest_stored_at.unwrap_or_else(Instant::now);
        let deadline = (Instant::now() + propagation.timeout).min(self.deadline);
        let media_type = image.manifest_type.manifest_media_type();
        let timeout = propagation.timeout;
        let waited = std::sync::Mutex::new(None);
        let waited_ref = &waited;
        let result = self
            .step_until(Step::WaitPropagation, tag.to_string(), deadline, |deadline, mut tr| async move {
                let r = async {
                    let give_up = deadline.checked_sub(MARGIN).unwrap_or(deadline);
                    let mut polls = 0u32;
                    loop {
                        polls += 1;
                        let req = Request::new(Method::HEAD, url.clone()).header(header::ACCEPT, media_type);
                        let resp = match c.send(&req, give_up, &mut tr).await {
                            Err(f) if f.reason == Reason::Timeout => break,
                            other => other?,
                        };
                        if resp.status == StatusCode::OK {
                            check_digest_header(&resp, &digest)?;
                            c.discard(resp, give_up, &mut tr).await?;
                            if let Ok(mut w) = waited_ref.lock() {
                                *w = Some(pushed.elapsed());
                            }
                            return Ok(());
                        }
                        if resp.status != StatusCode::NOT_FOUND {
                            c.expect(resp, &[StatusCode::OK], Reason::ManifestUnknown, give_up, &mut tr).await?;
                            return Err(Failure::new(Reason::Protocol, "unexpected answer while polling"));
                        }
                        c.discard(resp, give_up, &mut tr).await?;
                        let next = Instant::now() + propagation.poll_interval;
                        if next >= give_up {
                            break;
                        }
                        tokio::time::sleep_until(next).await;
                    }
                    Err(Failure::new(
                        Reason::PropagationTimeout,
                        format!(
                            "HEAD {}: path {path:?} still answered 404 after {polls} polls; the pushed manifest {digest} did not propagate within {}",
                            crate::http::redact_url(&url),
                            humantime::format_duration(timeout)
                        ),
                    ))
                }
                .await;
                (r, tr)
            })
            .await;
        let delay = waited.into_inner().ok().flatten();
        self.propagation.push(PropagationReport {
            path: self.endpoint().name.clone(),
            delay_seconds: delay,
        });
        result
    }
}
