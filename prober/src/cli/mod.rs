//! The `registry-prober` command: `once` (one cycle, a readable report), `check-config`, and
//! `run` (the service). Exit status: 0 success, 1 a probe failed, 64 bad usage or config.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::{Config, OtlpConfig, OtlpSource};
use crate::report::export::{ExporterError, OtlpExporter, TraceExporter};
use crate::report::health::Health;
use crate::report::metrics::Metrics;
use crate::report::status::History;
use crate::server::{self, AppState};
use crate::service::reload;
use crate::service::sinks::Sinks;
use clap::{Parser, Subcommand, ValueEnum};

mod once;
use once::{once, OnceArgs};

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 64;
/// How long traces still queued at exit may take to go out.
const TRACE_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Parser)]
#[command(
    name = "registry-prober",
    version,
    about = "Synthetic end-to-end prober for OCI container registries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one probe cycle and print a step-by-step report (exit 0 all passed, 1 a step failed).
    Once(Box<OnceArgs>),
    /// Validate a config file (exit 0 valid, 64 invalid, naming the field and value).
    CheckConfig {
        /// The YAML config file.
        file: PathBuf,
    },
    /// Print the metric contract: every family with its type, HELP, samples and labels, and
    /// every value of a closed label (what alert rules and dashboards may name).
    MetricsContract {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Run the prober as a service: every target on its schedule.
    Run {
        /// The YAML config file.
        #[arg(long)]
        config: PathBuf,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Parses the command line and runs the command; the exit status says how it went.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
                println!("{}: valid, {} target(s)", file.display(), c.targets.len());
                for target in &c.targets {
                    for gets in crate::probe::cost::manifest_gets(target) {
                        println!(
                            "  target {:?}, size class {}: {} manifest GETs a run, every {}: {} a day (Docker Hub counts each as a pull)",
                            target.name,
                            gets.class,
                            gets.per_run,
                            humantime::format_duration(gets.interval),
                            gets.per_day()
                        );
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => usage_error(&e),
        },
        Command::MetricsContract { output } => {
            let contract = Metrics::contract();
            match output {
                Output::Text => print!("{}", contract.to_text()),
                Output::Json => println!("{}", contract.to_json()),
            }
            ExitCode::SUCCESS
        }
        Command::Once(args) => {
            init_logs(LogFormat::Text, "error");
            once(*args)
        }
        Command::Run { config, log_format } => {
            init_logs(log_format, "info");
            run(&config)
        }
    }
}

fn usage_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_USAGE)
}

fn init_logs(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

/// The trace exporter, if traces go anywhere: the config file's `otlp` section, else the
/// OTEL_* environment variables. Err is the exit status, the error printed: a setting the
/// exporter refuses is a config error.
fn otlp_exporter(file: Option<OtlpConfig>) -> Result<Option<(OtlpSource, OtlpExporter)>, ExitCode> {
    let source = match OtlpSource::resolve(file, |name| std::env::var(name).ok()) {
        Ok(Some(source)) => source,
        Ok(None) => return Ok(None),
        Err(e) => return Err(usage_error(&e)),
    };
    match OtlpExporter::build(&source) {
        Ok(exporter) => Ok(Some((source, exporter))),
        Err(ExporterError::Config(e)) => Err(usage_error(&format!("otlp: {e}"))),
        Err(e) => {
            eprintln!("error: otlp: {}", crate::http::error_chain(&e));
            Err(ExitCode::from(EXIT_FAILED))
        }
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    let otlp = match otlp_exporter(config.otlp.clone()) {
        Ok(otlp) => otlp,
        Err(code) => return code,
    };
    let result: anyhow::Result<()> = runtime().block_on(serve(path.to_path_buf(), config, otlp));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// A target on a short interval keeps a connection open per path between runs, so about a
/// thousand targets pass the soft limit of 1,024 open files that shells and service managers
/// often start a process with. The soft limit is raised to the hard one, as Go's runtime does;
/// the hard limit stays the operator's to set.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_none() || limit.current == limit.maximum {
        return;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(
            from = limit.current,
            to = limit.maximum,
            "Raised the soft limit of open files to the hard limit"
        ),
        Err(e) => tracing::warn!(
            soft = limit.current,
            hard = limit.maximum,
            error = %e,
            "Could not raise the soft limit of open files; each target needs one per path"
        ),
    }
}

/// The service: HTTP endpoints and the schedule, until SIGTERM or Ctrl-C; then the traces still
/// queued go out (within TRACE_FLUSH).
async fn serve(
    path: PathBuf,
    config: Config,
    otlp: Option<(OtlpSource, OtlpExporter)>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    raise_open_files_limit();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let traces = otlp.map(|(source, exporter)| {
        match &source {
            OtlpSource::File(file) => tracing::info!(
                url = %crate::http::redact_url(&file.traces_url),
                headers = ?file.headers,
                timeout_seconds = file.timeout.as_secs_f64(),
                "Exporting a trace of every run over OTLP/HTTP"
            ),
            OtlpSource::Env { timeout } => tracing::info!(
                from = "OTEL_EXPORTER_OTLP_* variables",
                timeout_seconds = timeout.as_secs_f64(),
                "Exporting a trace of every run over OTLP/HTTP"
            ),
        }
        TraceExporter::start(exporter, metrics.clone())
    });
    let sinks = Sinks {
        metrics,
        history: Arc::new(History::new(50, 10)),
        health: Arc::new(Health::default()),
        traces: traces.clone(),
    };
    let state = AppState {
        registry: Arc::new(registry),
        history: sinks.history.clone(),
        health: sinks.health.clone(),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    tracing::info!(listen = %config.listen, targets = config.targets.len(), "Serving /metrics, /healthz, /readyz and the status page");

    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("Shutdown requested");
        let _ = tx.send(true);
    });
    let mut server_stop = rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, server::router(state))
            .with_graceful_shutdown(async move {
                let _ = server_stop.wait_for(|s| *s).await;
            })
            .await
    });
    reload::serve(path, config, sinks, rx).await;
    if let Some(traces) = &traces {
        if !traces.flush(TRACE_FLUSH).await {
            tracing::warn!(
                within_seconds = TRACE_FLUSH.as_secs_f64(),
                "Traces still unsent at shutdown, dropping them"
            );
        }
    }
    server
        .await
        .context("the HTTP server task")?
        .context("the HTTP server")?;
    tracing::info!("Stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

    #[test]
    fn the_soft_limit_of_open_files_is_raised_to_the_hard_one() {
        let start = getrlimit(Resource::Nofile);
        let hard = start.maximum.expect("a finite hard limit of open files");
        let lowered = Rlimit {
            current: Some(hard.min(1024) - 1),
            maximum: Some(hard),
        };
        setrlimit(Resource::Nofile, lowered).expect("lowering the soft limit");
        super::raise_open_files_limit();
        assert_eq!(getrlimit(Resource::Nofile).current, Some(hard));
    }
}
