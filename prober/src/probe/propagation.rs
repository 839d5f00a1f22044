//! Propagation: a replicated path (a read replica, another region, a mirror fed by
//! replication) serves a pushed image only after a while. The run polls the path for the
//! manifest until it appears or the path's deadline passes; the delay is measured from the
//! manifest PUT's answer.

use std::time::Duration;

use http::header;
use http::{Method, StatusCode};
use tokio::time::Instant;

use super::content::Content;
use super::run::step;
use super::run::{Endpoint, Run};
use super::verify;
use crate::http::{redact_url, Request};
use crate::outcome::{Failure, PropagationReport, Reason, Step};

/// Margin before the step deadline at which polling gives up, so the last answer is reported
/// as a propagation timeout rather than cut off by the step's own deadline.
const MARGIN: Duration = Duration::from_millis(5);

impl<'a> Run<'a> {
    /// On a path with a propagation timeout: poll `HEAD manifests/<tag>` until 200. Other paths
    /// serve the image at once and pass without a step.
    pub(super) async fn wait_propagation(
        &mut self,
        endpoint: &'a Endpoint,
        content: &Content,
        tag: &str,
    ) -> Result<(), Failure> {
        let Some(propagation) = endpoint.propagation else {
            return Ok(());
        };
        let (digest, _, media_type) = content.top();
        let pushed = self.manifest_stored_at.unwrap_or_else(Instant::now);
        let mut delay = None;
        let result = step!(self, Step::WaitPropagation, endpoint, tag, |call| async {
            let url = call.url(&format!("manifests/{tag}"))?;
            let give_up = call
                .deadline()
                .checked_sub(MARGIN)
                .unwrap_or(call.deadline());
            call.narrow(give_up);
            let mut polls = 0u32;
            loop {
                polls += 1;
                let req =
                    Request::new(Method::HEAD, url.clone()).header(header::ACCEPT, media_type);
                let resp = match call.send(&req).await {
                    Err(f) if f.reason == Reason::Timeout => break,
                    other => other?,
                };
                if resp.status == StatusCode::OK {
                    verify::digest_header(&resp, digest)?;
                    call.tolerate(verify::digest_header_on_head(&resp));
                    call.discard(resp).await?;
                    delay = Some(pushed.elapsed());
                    return Ok(());
                }
                if resp.status != StatusCode::NOT_FOUND {
                    call.expect(resp, &[StatusCode::OK], Reason::ManifestUnknown)
                        .await?;
                    return Err(Failure::new(
                        Reason::Protocol,
                        "unexpected answer while polling",
                    ));
                }
                call.discard(resp).await?;
                let next = Instant::now() + propagation.poll_interval;
                if next >= give_up {
                    break;
                }
                tokio::time::sleep_until(next).await;
            }
            Err(Failure::new(
                    Reason::PropagationTimeout,
                    format!(
                        "HEAD {}: path {:?} still answered 404 after {polls} polls; the pushed manifest {digest} did not propagate within {}",
                        redact_url(&url),
                        endpoint.name,
                        humantime::format_duration(propagation.timeout)
                    ),
                ))
        });
        self.propagation.push(PropagationReport {
            path: endpoint.name.clone(),
            delay_seconds: delay,
        });
        result
    }
}
