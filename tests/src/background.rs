//! An in-process test server on 127.0.0.1: a free port, its own tokio runtime on a thread of
//! its own, stopped and joined on drop. The fault proxy and the OTLP receiver run on it.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub struct Background {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Binds a free port on 127.0.0.1 and runs `serve(listener, stop)` on a runtime with
    /// `workers` threads until `serve` returns (it should once `stop` fires); the runtime then
    /// gets `shutdown` to drop the tasks still running. `name` names the threads and errors.
    pub fn start<F, Fut>(
        name: &str,
        workers: usize,
        shutdown: Duration,
        serve: F,
    ) -> anyhow::Result<Background>
    where
        F: FnOnce(TcpListener, oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(format!("{name}-worker"))
            .enable_all()
            .build()
            .with_context(|| format!("building the {name}'s tokio runtime"))?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .with_context(|| format!("binding the {name} on 127.0.0.1"))?;
        std_listener
            .set_nonblocking(true)
            .with_context(|| format!("making the {name}'s listener non-blocking"))?;
        let addr = std_listener
            .local_addr()
            .with_context(|| format!("reading the {name}'s address"))?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener)
                .with_context(|| format!("registering the {name}'s listener"))?
        };
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(serve(listener, stopped));
                runtime.shutdown_timeout(shutdown);
            })
            .with_context(|| format!("spawning the {name}'s thread"))?;
        Ok(Background {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections until `stop` fires and hands each to `serve` on a task of its own. An
/// accept error (e.g. out of file descriptors) backs off briefly instead of spinning.
pub async fn accept_each<F, Fut>(listener: TcpListener, mut stop: oneshot::Receiver<()>, serve: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let tcp = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve(tcp));
    }
}
