//! The chaos soak's prober configs and how they are reloaded. Every variant keeps the same
//! targets and size classes (so the run accounting of each class spans the whole soak) and
//! changes what a reload can change: layer sizes, upload modes, chunk sizes, manifest types,
//! intervals. The config path the prober was started with becomes a symlink to
//! `..data/prober.yml`, as a Kubernetes ConfigMap volume lays it out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use rand::Rng as _;

use super::{config_dir, Pace, GOLDEN_REPO, INSTANCE};
use crate::service::Service;
use crate::soak::ms;

/// How a reload was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// `..data` swapped to a new directory; no signal (the prober sees the file change).
    SymlinkSwap,
    /// The file replaced atomically in place, then SIGHUP.
    RewriteAndSighup,
    /// SIGHUP with the file unchanged.
    Sighup,
    /// A config the prober must refuse, swapped in; the old one keeps running.
    BadSwap,
}

impl Method {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Method::SymlinkSwap => "symlink swap",
            Method::RewriteAndSighup => "rewrite + SIGHUP",
            Method::Sighup => "SIGHUP, unchanged",
            Method::BadSwap => "bad config swapped in",
        }
    }
}

/// One reload of the soak.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reload {
    pub(crate) method: Method,
    /// Which variant the file holds afterwards (the bad one: `None`).
    pub(crate) variant: Option<usize>,
}

/// The variants of one soak.
pub(crate) struct Configs {
    listen_free: Vec<String>,
    max_run_time: Duration,
    repos: Vec<&'static str>,
}

const VARIANTS: usize = 3;
const ORDER: [Method; 4] = [
    Method::SymlinkSwap,
    Method::RewriteAndSighup,
    Method::Sighup,
    Method::BadSwap,
];

impl Configs {
    pub(crate) fn new(pace: &Pace, proxy: &str, registry: &str, golden: &str) -> Configs {
        let i = pace.interval;
        let t = pace.timeout();
        let cleanup = pace.interval.mul_f64(0.6);
        let h = ms(pace.hygiene);
        let variant = |v: usize| {
            let (oci, docker, direct, slower) = match v {
                0 => (
                    "    image: {layer_sizes: [4KiB, 64KiB]}\n",
                    "    upload: {mode: chunked, chunk_size: 64KiB}\n",
                    "    image: {layer_sizes: [16KiB]}\n",
                    1.0,
                ),
                1 => (
                    "    image: {layer_sizes: [8KiB, 32KiB]}\n    upload: {mode: chunked, chunk_size: 16KiB}\n",
                    "    upload: {mode: monolithic}\n",
                    "    image: {layer_sizes: [16KiB]}\n    manifest_type: docker\n",
                    1.0,
                ),
                _ => (
                    "    image: {layer_sizes: [4KiB]}\n    upload: {mode: monolithic}\n",
                    "    upload: {mode: streamed}\n",
                    "    image: {layer_sizes: [4KiB, 16KiB]}\n    upload: {mode: chunked, chunk_size: 4KiB}\n",
                    1.25,
                ),
            };
            format!(
                "instance: {INSTANCE}\nmax_concurrent_runs: 8\n\
                 defaults: {{interval: {}, timeout: {}, cleanup_timeout: {}}}\n\
                 targets:\n\
                 \x20 - name: oci\n    registry: \"{proxy}\"\n    repository: chaos/oci\n{oci}\
                 \x20   golden_images: [\"{golden}\"]\n\
                 \x20   canaries: {{enabled: true, every: 24h, keep: 2, layer_sizes: [4KiB]}}\n\
                 \x20   mount: {{enabled: true}}\n\
                 \x20   paths: [{{name: direct, registry: \"{registry}\"}}]\n\
                 \x20   hygiene: {{interval: {h}}}\n\
                 \x20 - name: docker\n    registry: \"{proxy}\"\n    repository: chaos/docker\n    manifest_type: docker\n{docker}\
                 \x20   sizes:\n\
                 \x20     - {{class: small, layer_sizes: [4KiB]}}\n\
                 \x20     - {{class: medium, layer_sizes: [256KiB, 1MiB], interval: {}, timeout: {}}}\n\
                 \x20   hygiene: {{interval: {h}}}\n\
                 \x20 - name: direct\n    registry: \"{registry}\"\n    repository: chaos/direct\n{direct}\
                 \x20   hygiene: {{interval: {h}}}\n",
                ms(i.mul_f64(slower)),
                ms(t.mul_f64(slower)),
                ms(cleanup),
                ms(i * 2),
                ms(t * 2),
            )
        };
        Configs {
            listen_free: (0..VARIANTS).map(variant).collect(),
            max_run_time: t * 2 + cleanup,
            repos: vec!["chaos/oci", "chaos/oci-mount", "chaos/docker", GOLDEN_REPO],
        }
    }

    /// Variant `v` without the `listen` line (the service adds it).
    pub(crate) fn body(&self, v: usize) -> String {
        self.listen_free[v % VARIANTS].clone()
    }

    /// The repositories behind the fault proxy.
    pub(crate) fn repos(&self) -> Vec<&'static str> {
        self.repos.clone()
    }

    /// The longest a run of any variant can take (timeout + cleanup).
    pub(crate) fn max_run_time(&self) -> Duration {
        self.max_run_time
    }

    /// Makes the prober's config path a symlink to `..data/prober.yml` (same content, so no
    /// reload) and returns the handle that reloads it.
    pub(crate) fn install(&self, prober: &Service) -> anyhow::Result<Files> {
        let path = prober.config_path().to_path_buf();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let listen = text.lines().next().unwrap_or_default().to_string();
        let mut files = Files {
            dir: config_dir(prober),
            listen,
            bodies: self.listen_free.clone(),
            generation: 0,
            current: Some(0),
        };
        files.swap_data(&text)?;
        let link = files.dir.join("prober.yml.link");
        std::os::unix::fs::symlink("..data/prober.yml", &link)
            .with_context(|| format!("symlinking {}", link.display()))?;
        std::fs::rename(&link, &path).with_context(|| format!("replacing {}", path.display()))?;
        Ok(files)
    }
}

/// The config files of a running prober.
pub(crate) struct Files {
    dir: PathBuf,
    listen: String,
    bodies: Vec<String>,
    generation: usize,
    /// The variant in effect (`None` after a bad one, while the old one keeps running).
    current: Option<usize>,
}

impl Files {
    fn text(&self, v: usize) -> String {
        format!("{}\n{}", self.listen, self.bodies[v % VARIANTS])
    }

    /// A new `..data_N` directory with `prober.yml`, swapped in as `..data` atomically.
    fn swap_data(&mut self, text: &str) -> anyhow::Result<()> {
        self.generation += 1;
        let name = format!("..data_{}", self.generation);
        let data = self.dir.join(&name);
        std::fs::create_dir(&data).with_context(|| format!("creating {}", data.display()))?;
        write(&data.join("prober.yml"), text)?;
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&name, &tmp)
            .with_context(|| format!("symlinking {}", tmp.display()))?;
        std::fs::rename(&tmp, self.dir.join("..data")).context("swapping ..data")
    }

    /// The reload of turn `turn`: the methods in turn, each good one to another variant.
    pub(crate) fn next(
        &mut self,
        prober: &Service,
        turn: usize,
        rng: &mut rand::rngs::StdRng,
    ) -> anyhow::Result<Reload> {
        let method = ORDER[turn % ORDER.len()];
        let other = (self.current.unwrap_or(0) + rng.random_range(1..VARIANTS)) % VARIANTS;
        let variant = match method {
            Method::SymlinkSwap => {
                self.swap_data(&self.text(other))?;
                Some(other)
            }
            Method::RewriteAndSighup => {
                let file = self.dir.join("..data/prober.yml");
                write(&file, &self.text(other))?;
                prober.signal("HUP")?;
                Some(other)
            }
            Method::Sighup => {
                prober.signal("HUP")?;
                self.current
            }
            Method::BadSwap => {
                let bad = format!("{}\nnot_a_setting: true\n", self.text(other));
                self.swap_data(&bad)?;
                None
            }
        };
        if method != Method::BadSwap {
            self.current = variant;
        }
        Ok(Reload { method, variant })
    }

    /// Puts variant 0 back by a symlink swap plus SIGHUP, so the calm runs a good config.
    pub(crate) fn settle(&mut self, prober: &Service) -> anyhow::Result<()> {
        self.swap_data(&self.text(0))?;
        prober.signal("HUP")?;
        self.current = Some(0);
        Ok(())
    }
}

/// Writes `text` to a temp file next to `path` and renames it over `path`.
fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))
}
