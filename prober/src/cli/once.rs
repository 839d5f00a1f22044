//! `registry-prober once`: its flags, the target they make (or a config file's), and the run
//! with its report and trace.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use super::{otlp_exporter, runtime, usage_error, Output, EXIT_FAILED, TRACE_FLUSH};
use crate::config::{
    Config, ConfigError, OtlpConfig, RawArtifact, RawAuth, RawCleanup, RawDefaults, RawImage,
    RawPlatforms, RawSize, RawTarget, RawTls, RawUpload,
};
use crate::outcome::RunReport;
use crate::probe::{Prober, Watch};
use crate::report;
use crate::report::export::{OtlpExporter, TraceExporter};
use crate::report::metrics::Metrics;

#[derive(Args)]
pub(super) struct OnceArgs {
    /// Take the target from this config file instead of the flags below.
    #[arg(long, conflicts_with_all = ["registry", "repository"])]
    config: Option<PathBuf>,
    /// With --config: the target to probe (default: the only one).
    #[arg(long, requires = "config")]
    target: Option<String>,
    /// With --config: the size class to run (default: the target's first).
    #[arg(long, requires = "config")]
    size_class: Option<String>,
    /// Registry base URL, e.g. http://127.0.0.1:5000.
    #[arg(long, required_unless_present = "config", requires = "repository")]
    registry: Option<String>,
    /// Repository to push to and delete from.
    #[arg(long)]
    repository: Option<String>,
    /// Accept any TLS certificate.
    #[arg(long)]
    insecure: bool,
    /// PEM CA bundle to trust in addition to the system roots.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// PEM client certificate (mTLS); needs --client-key-file.
    #[arg(long)]
    client_cert_file: Option<PathBuf>,
    /// PEM client key (mTLS).
    #[arg(long)]
    client_key_file: Option<PathBuf>,
    /// User name; the password comes from --password-file (never from the command line).
    #[arg(long, requires = "password_file")]
    username: Option<String>,
    /// File holding the password.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Docker config.json to take credentials from (inline, or from the credential helper it
    /// names).
    #[arg(long)]
    docker_config: Option<PathBuf>,
    /// How long a credential helper may take, e.g. 2s (default 5s).
    #[arg(long, requires = "docker_config")]
    helper_timeout: Option<humantime::Duration>,
    /// Number of layers.
    #[arg(long, allow_hyphen_values = true)]
    layers: Option<i64>,
    /// Size of each layer, e.g. 4KiB, 1MiB.
    #[arg(long, allow_hyphen_values = true)]
    layer_size: Option<String>,
    /// Manifest media type: oci or docker.
    #[arg(long)]
    manifest_type: Option<String>,
    /// Layer compression: gzip (default), zstd (oci manifests only) or none.
    #[arg(long)]
    compression: Option<String>,
    /// Also check the run's own layers against their DiffIDs as they are pulled.
    #[arg(long)]
    verify_diff_ids: bool,
    /// Fail a step on any tolerated deviation from the distribution spec (conformance testing).
    #[arg(long)]
    strict: bool,
    /// Upload mode: streamed (default), monolithic, chunked or post.
    #[arg(long)]
    upload_mode: Option<String>,
    /// Chunk size for chunked uploads, e.g. 5MiB.
    #[arg(long, allow_hyphen_values = true)]
    chunk_size: Option<String>,
    /// Run deadline, e.g. 60s.
    #[arg(long)]
    timeout: Option<humantime::Duration>,
    /// Leave the pushed image in place (for inspection or interoperability checks).
    #[arg(long)]
    no_cleanup: bool,
    /// Also pull and verify this image (repo@sha256:... or repo:tag); repeatable.
    #[arg(long = "golden")]
    golden: Vec<String>,
    /// Push an image index over one image per platform, e.g. linux/amd64,linux/arm64.
    #[arg(long, value_delimiter = ',')]
    platforms: Vec<String>,
    /// With --platforms: the platforms pulls resolve through the index, e.g. linux/arm64, or
    /// all (default: the first of --platforms).
    #[arg(long, requires = "platforms", value_delimiter = ',')]
    pull_platforms: Vec<String>,
    /// The platforms of a golden index to verify, e.g. linux/amd64, or all (the default).
    #[arg(long, requires = "golden", value_delimiter = ',')]
    golden_platforms: Vec<String>,
    /// Push an OCI 1.1 artifact about the run's image and find it again through the
    /// referrers API or the referrers tag schema.
    #[arg(long)]
    artifact: bool,
    /// The artifact's artifactType, e.g. application/spdx+json.
    #[arg(long, requires = "artifact")]
    artifact_type: Option<String>,
    /// Ask the referrers API with ?artifactType=.
    #[arg(long, requires = "artifact")]
    referrers_filter: bool,
    /// Seed of the random image (default: random), to reproduce a run's exact bytes.
    #[arg(long)]
    seed: Option<u64>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub(super) fn once(args: OnceArgs) -> ExitCode {
    let (target, file) = match once_target(&args) {
        Ok(t) => t,
        Err(e) => return usage_error(&e),
    };
    let otlp = match otlp_exporter(file) {
        Ok(otlp) => otlp.map(|(_, exporter)| exporter),
        Err(code) => return code,
    };
    let prober = Prober::new(target);
    let class = match &args.size_class {
        None => 0,
        Some(name) => match prober.target().sizes.iter().position(|c| &c.name == name) {
            Some(i) => i,
            None => {
                let names: Vec<&str> = prober
                    .target()
                    .sizes
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                return usage_error(&format!(
                    "--size-class: target {:?} has no size class {name:?} (it has: {})",
                    prober.target().name,
                    names.join(", ")
                ));
            }
        },
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    let report: RunReport = runtime().block_on(async {
        // On a worker thread, as in the service, not on this one: the tasks that drive the
        // connections then mostly hand it each frame of a body on their own thread instead of
        // waking this one. 8 pulls of a 64 MiB blob: 9,540 -> 5,014 context switches, 61 -> 55
        // ms of CPU and 65 -> 58 ms a pull (medians of 5 alternating pairs).
        let run =
            tokio::spawn(async move { prober.run_class(class, seed, &Watch::default()).await });
        let report = match run.await {
            Ok(report) => report,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        if let Some(otlp) = otlp {
            export_once(otlp, &report).await;
        }
        report
    });
    match args.output {
        Output::Text => print!("{}", report::text::render(&report)),
        Output::Json => println!("{}", report::json(&report)),
    }
    if report.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// Sends the trace of `once`'s run and waits for it to go out (failures are logged).
async fn export_once(otlp: OtlpExporter, report: &RunReport) {
    let metrics = Arc::new(Metrics::register(
        &mut prometheus_client::registry::Registry::default(),
    ));
    let traces = TraceExporter::start(otlp, metrics);
    traces.record(report);
    if !traces.flush(TRACE_FLUSH).await {
        tracing::error!("The run's trace was not sent within {TRACE_FLUSH:?}");
    }
}

/// The target of `once`, and the config file's `otlp` section if any: from a config file, or
/// built from the flags and validated by the same rules as a config file.
fn once_target(
    args: &OnceArgs,
) -> Result<(crate::config::Target, Option<OtlpConfig>), ConfigError> {
    if let Some(path) = &args.config {
        let config = Config::load(path)?;
        let otlp = config.otlp;
        let mut target = match &args.target {
            Some(name) => config
                .targets
                .into_iter()
                .find(|t| &t.name == name)
                .ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "--target: no target named {name:?} in {}",
                        path.display()
                    ))
                })?,
            None if config.targets.len() == 1 => {
                config.targets.into_iter().next().expect("one target")
            }
            None => {
                let names: Vec<String> = config
                    .targets
                    .iter()
                    .map(|t| format!("{:?}", t.name))
                    .collect();
                return Err(ConfigError::Invalid(format!(
                    "{} has {} targets ({}): choose one with --target",
                    path.display(),
                    names.len(),
                    names.join(", ")
                )));
            }
        };
        if args.no_cleanup {
            target.cleanup.enabled = false;
        }
        return Ok((target, otlp));
    }
    let size = |s: &Option<String>| s.clone().map(RawSize::Text);
    let raw = RawTarget {
        name: "cli".into(),
        registry: args.registry.clone().unwrap_or_default(),
        repository: args.repository.clone().unwrap_or_default(),
        manifest_type: args.manifest_type.clone(),
        strict: args.strict,
        interval: args.timeout.map(Into::into),
        timeout: Some(
            args.timeout
                .map_or(std::time::Duration::from_secs(60), Into::into),
        ),
        step_timeout: None,
        cleanup_timeout: None,
        confirmation_runs: None,
        confirmation_delay: None,
        allow_plain_http: true,
        tls: RawTls {
            ca_file: args.ca_file.clone(),
            client_cert_file: args.client_cert_file.clone(),
            client_key_file: args.client_key_file.clone(),
            insecure: args.insecure,
        },
        auth: RawAuth {
            username: args.username.clone(),
            password_file: args.password_file.clone(),
            password_env: None,
            docker_config: args.docker_config.clone(),
            refresh_interval: None,
            helper_timeout: args.helper_timeout.map(Into::into),
        },
        image: RawImage {
            layers: args.layers,
            layer_size: size(&args.layer_size),
            layer_sizes: None,
            compression: args.compression.clone(),
            verify_diff_ids: args.verify_diff_ids.then_some(true),
            platforms: (!args.platforms.is_empty()).then(|| args.platforms.clone()),
            pull_platforms: platform_choice(&args.pull_platforms),
        },
        upload: RawUpload {
            mode: args.upload_mode.clone(),
            chunk_size: size(&args.chunk_size),
        },
        cleanup: RawCleanup {
            enabled: !args.no_cleanup,
            ..RawCleanup::default()
        },
        golden_images: args.golden.clone(),
        golden_platforms: platform_choice(&args.golden_platforms),
        artifact: RawArtifact {
            enabled: args.artifact,
            artifact_type: args.artifact_type.clone(),
            size: None,
            filter: args.referrers_filter.then_some(true),
        },
        sizes: None,
        paths: Vec::new(),
        canaries: Default::default(),
        mount: Default::default(),
        hygiene: Default::default(),
    };
    let defaults = RawDefaults {
        interval: Some(std::time::Duration::from_secs(3600)),
        ..RawDefaults::default()
    };
    let target = raw.validate(&defaults, "default").map_err(|e| match e {
        ConfigError::Invalid(m) => ConfigError::Invalid(format!("invalid arguments: {m}")),
        other => other,
    })?;
    Ok((target, None))
}

/// A platform flag as the config file writes it: "all", or a list.
fn platform_choice(values: &[String]) -> Option<RawPlatforms> {
    match values {
        [] => None,
        [one] if one == "all" => Some(RawPlatforms::Word(one.clone())),
        list => Some(RawPlatforms::List(list.to_vec())),
    }
}
