//! Locating the `registry-prober` binary that the workspace build put next to the tests.

use anyhow::{bail, Context as _};
use std::path::PathBuf;

/// Environment variable that overrides the binary's path.
pub const PROBER_BIN_ENV: &str = "REGISTRY_PROBER_BIN";

/// Path of the `registry-prober` binary in the target directory of the running test
/// executable (`target/<profile>/deps/<test>` -> `target/<profile>/registry-prober`), or the
/// path in `$REGISTRY_PROBER_BIN` when set. Errors if the file is missing: it is built by
/// `cargo test --workspace` (or `cargo build -p registry-prober`), not by
/// `cargo test -p registry-prober-e2e` alone.
pub fn prober_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(PROBER_BIN_ENV) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "${PROBER_BIN_ENV} is {} but no such file exists",
                p.display()
            );
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("finding the running test executable")?;
    let mut dir = exe
        .parent()
        .with_context(|| format!("test executable {} has no parent directory", exe.display()))?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let bin = dir.join(format!("registry-prober{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        bail!(
            "the registry-prober binary is not at {}: run `cargo test --workspace` (which builds it) \
             or `cargo build -p registry-prober` first, or set ${PROBER_BIN_ENV}",
            bin.display()
        );
    }
    Ok(bin)
}
