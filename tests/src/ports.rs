//! Free loopback ports for the servers a test starts.

use std::net::TcpListener;

/// Returns a port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, drop the
/// listener). Another process may take it before the caller binds; the window is tiny.
///
/// Panics only if the machine cannot bind 127.0.0.1 at all, which no test could survive.
pub fn free_port() -> u16 {
    try_free_port().unwrap_or_else(|e| panic!("{e:#}"))
}

/// [`free_port`] that returns the error instead of panicking.
pub fn try_free_port() -> anyhow::Result<u16> {
    use anyhow::Context as _;
    let listener =
        TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the local address of 127.0.0.1:0")?
        .port())
}
