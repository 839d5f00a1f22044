//! The pool: idle HTTP/1.1 connections per origin (a few, oldest dropped first) and one shared
//! HTTP/2 connection, and the short wait for a busy HTTP/1.1 connection to come free.
//! Hand-rolled: hyper-util's pooled Client opens connections no request is charged with (see
//! docs/http-pool-spike.md).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::MutexGuard;

use hyper::client::conn::{http1, http2};

use super::{Origin, ReqBody, Sender, Transport, BUSY_GRACE, MAX_IDLE_H1_PER_ORIGIN};

pub(super) struct Pooled<S> {
    pub(super) sender: S,
    pub(super) remote_addr: Option<SocketAddr>,
}

#[derive(Default)]
pub(super) struct OriginPool {
    /// Oldest first. Includes senders whose previous response body is still being read:
    /// they become ready once it has been consumed.
    pub(super) h1: VecDeque<Pooled<http1::SendRequest<ReqBody>>>,
    /// HTTP/2 multiplexes, so one shared connection per origin is enough.
    pub(super) h2: Option<Pooled<http2::SendRequest<ReqBody>>>,
}

/// What a checkout found.
pub(super) enum Checkout {
    Ready(Sender, Option<SocketAddr>),
    /// Only HTTP/1.1 connections still reading a previous body.
    Busy,
    Empty,
}

impl Transport {
    pub(super) fn checkout(&self, origin: &Origin) -> Checkout {
        let mut pool = self.lock_pool();
        let Some(entry) = pool.get_mut(origin) else {
            return Checkout::Empty;
        };
        let mut found = Checkout::Empty;
        if let Some(h2) = &entry.h2 {
            if h2.sender.is_closed() {
                entry.h2 = None;
            } else {
                found = Checkout::Ready(Sender::H2(h2.sender.clone()), h2.remote_addr);
            }
        }
        if matches!(found, Checkout::Empty) {
            entry.h1.retain(|idle| !idle.sender.is_closed());
            if let Some(at) = entry.h1.iter().position(|idle| idle.sender.is_ready()) {
                if let Some(idle) = entry.h1.remove(at) {
                    found = Checkout::Ready(Sender::H1(idle.sender), idle.remote_addr);
                }
            } else if !entry.h1.is_empty() {
                found = Checkout::Busy;
            }
        }
        if entry.h1.is_empty() && entry.h2.is_none() {
            pool.remove(origin);
        }
        found
    }

    /// Like `checkout`, but when only busy HTTP/1.1 connections are pooled, waits up to
    /// BUSY_GRACE for one of them to come free.
    pub(super) async fn checkout_or_wait(&self, origin: &Origin) -> Checkout {
        match self.checkout(origin) {
            Checkout::Busy => {}
            found => return found,
        }
        tokio::time::timeout(
            BUSY_GRACE,
            std::future::poll_fn(|cx| self.poll_busy(origin, cx)),
        )
        .await
        .unwrap_or(Checkout::Empty)
    }

    /// Takes the first pooled HTTP/1.1 sender that is ready; otherwise registers this task to
    /// be woken when one becomes ready (or closes).
    fn poll_busy(
        &self,
        origin: &Origin,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Checkout> {
        use std::task::Poll;
        let mut pool = self.lock_pool();
        let Some(entry) = pool.get_mut(origin) else {
            return Poll::Ready(Checkout::Empty);
        };
        let mut ready_at = None;
        let mut at = 0;
        entry.h1.retain_mut(|idle| {
            let keep = match idle.sender.poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    ready_at.get_or_insert(at);
                    true
                }
                // Closed while we waited.
                Poll::Ready(Err(_)) => false,
                Poll::Pending => true,
            };
            if keep {
                at += 1;
            }
            keep
        });
        let found = ready_at
            .and_then(|at| entry.h1.remove(at))
            .map(|idle| Checkout::Ready(Sender::H1(idle.sender), idle.remote_addr));
        let empty = entry.h1.is_empty() && entry.h2.is_none();
        if empty {
            pool.remove(origin);
        }
        match found {
            Some(found) => Poll::Ready(found),
            None if empty => Poll::Ready(Checkout::Empty),
            None => Poll::Pending,
        }
    }

    pub(super) fn checkin_h1(
        &self,
        origin: &Origin,
        sender: http1::SendRequest<ReqBody>,
        remote_addr: Option<SocketAddr>,
    ) {
        if sender.is_closed() {
            return;
        }
        let mut pool = self.lock_pool();
        let entry = pool.entry(origin.clone()).or_default();
        entry.h1.push_back(Pooled {
            sender,
            remote_addr,
        });
        while entry.h1.len() > MAX_IDLE_H1_PER_ORIGIN {
            // Dropping a sender lets its connection finish the exchange under way, then close.
            entry.h1.pop_front();
        }
    }

    pub(super) fn lock_pool(&self) -> MutexGuard<'_, HashMap<Origin, OriginPool>> {
        // The map holds no invariant a panicking holder could have broken half-way.
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
