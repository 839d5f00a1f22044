//! Writing OCI image layouts (`oci:DIR:TAG` for skopeo) with random layers, digests computed
//! here, so tests know every digest before anything is pushed.

use anyhow::Context as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Layers are uncompressed tars: push them with `--preserve-digests` or skopeo re-compresses.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// An image written by [`write_oci_layout`].
#[derive(Debug, Clone)]
pub struct OciImage {
    /// The layout directory.
    pub dir: PathBuf,
    pub tag: String,
    /// `sha256:<hex>` of `manifest`.
    pub manifest_digest: String,
    /// The manifest bytes exactly as stored (and as pushed with `--preserve-digests`).
    pub manifest: Vec<u8>,
    pub config_digest: String,
    /// Layer digests in manifest order.
    pub layer_digests: Vec<String>,
    /// Layer blob sizes in bytes, in manifest order.
    pub layer_sizes: Vec<u64>,
}

impl OciImage {
    /// `oci:DIR:TAG`, the skopeo source/destination reference.
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.tag)
    }

    /// Every blob digest: config then layers.
    pub fn blob_digests(&self) -> Vec<String> {
        let mut v = vec![self.config_digest.clone()];
        v.extend(self.layer_digests.iter().cloned());
        v
    }

    /// Total bytes of the config and layer blobs.
    pub fn total_blob_bytes(&self) -> anyhow::Result<u64> {
        let config = std::fs::metadata(blob_path(&self.dir, &self.config_digest))
            .with_context(|| format!("stat of config blob in {}", self.dir.display()))?
            .len();
        Ok(config + self.layer_sizes.iter().sum::<u64>())
    }
}

/// Path of `sha256:<hex>` in a layout: `DIR/blobs/sha256/<hex>`.
pub fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Lowercase hex of sha256(data), no `sha256:` prefix.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `sha256:<hex>` of data.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

fn write_blob(dir: &Path, data: &[u8]) -> anyhow::Result<String> {
    let digest = sha256_digest(data);
    let path = blob_path(dir, &digest);
    std::fs::write(&path, data).with_context(|| format!("writing blob {}", path.display()))?;
    Ok(digest)
}

/// Writes (or adds to) an OCI image layout in `dir` with one image tagged `tag`: one layer per
/// entry of `layer_sizes`, each an uncompressed tar holding one file of that many random
/// bytes (so each layer is `size` rounded up to 512 plus 1536 bytes), and a valid config whose
/// `rootfs.diff_ids` are the layer digests. An existing `index.json` keeps its other images.
pub fn write_oci_layout(dir: &Path, tag: &str, layer_sizes: &[usize]) -> anyhow::Result<OciImage> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    let oci_layout = dir.join("oci-layout");
    std::fs::write(&oci_layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
        .with_context(|| format!("writing {}", oci_layout.display()))?;

    let mut layer_digests = Vec::new();
    let mut layer_sizes_out = Vec::new();
    for (i, &size) in layer_sizes.iter().enumerate() {
        let (digest, len) = write_random_tar_layer(dir, &format!("layer-{i}.bin"), size)?;
        layer_digests.push(digest);
        layer_sizes_out.push(len);
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"org.example.registry-prober.nonce": hex::encode(rand::random::<[u8; 8]>())}},
        "rootfs": {"type": "layers", "diff_ids": layer_digests},
        "history": layer_digests.iter().map(|_| serde_json::json!({"created_by": "registry-prober-e2e"})).collect::<Vec<_>>(),
    });
    let layers: Vec<(&str, String, u64)> = layer_digests
        .iter()
        .zip(&layer_sizes_out)
        .map(|(d, &s)| (LAYER_MEDIA_TYPE, d.clone(), s))
        .collect();
    finish_layout(dir, tag, &config, &layers)
}

/// Writes the config and the manifest of `layers` (media type, digest, size: blobs already in
/// the layout) and names the manifest `tag` in `index.json`, keeping its other images.
fn finish_layout(
    dir: &Path,
    tag: &str,
    config: &serde_json::Value,
    layers: &[(&str, String, u64)],
) -> anyhow::Result<OciImage> {
    let config_bytes = serde_json::to_vec(config)?;
    let config_digest = write_blob(dir, &config_bytes)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_bytes.len()},
        "layers": layers.iter().map(|(m, d, s)| serde_json::json!({
            "mediaType": m, "digest": d, "size": s,
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let manifest_digest = write_blob(dir, &manifest_bytes)?;

    let index_path = dir.join("index.json");
    let mut manifests: Vec<serde_json::Value> = match std::fs::read(&index_path) {
        Ok(b) => {
            let v: serde_json::Value = serde_json::from_slice(&b)
                .with_context(|| format!("parsing existing {}", index_path.display()))?;
            v.get("manifests")
                .and_then(|m| m.as_array())
                .cloned()
                .unwrap_or_default()
        }
        Err(_) => Vec::new(),
    };
    manifests.retain(|m| {
        m.pointer("/annotations/org.opencontainers.image.ref.name")
            .and_then(|t| t.as_str())
            != Some(tag)
    });
    manifests.push(serde_json::json!({
        "mediaType": MANIFEST_MEDIA_TYPE,
        "digest": manifest_digest,
        "size": manifest_bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }));
    let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
    std::fs::write(&index_path, serde_json::to_vec(&index)?)
        .with_context(|| format!("writing {}", index_path.display()))?;

    Ok(OciImage {
        dir: dir.to_path_buf(),
        tag: tag.to_string(),
        manifest_digest,
        manifest: manifest_bytes,
        config_digest,
        layer_digests: layers.iter().map(|(_, d, _)| d.clone()).collect(),
        layer_sizes: layers.iter().map(|(_, _, s)| *s).collect(),
    })
}

/// Streams a one-file ustar archive of `size` random bytes into the layout; returns
/// (digest, blob length).
fn write_random_tar_layer(
    dir: &Path,
    file_name: &str,
    size: usize,
) -> anyhow::Result<(String, u64)> {
    let tmp = dir.join(format!(
        "blobs/sha256/.tmp-{}",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut put = |w: &mut std::io::BufWriter<std::fs::File>, bytes: &[u8]| -> anyhow::Result<()> {
        hasher.update(bytes);
        len += bytes.len() as u64;
        w.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))
    };
    put(&mut w, &tar_header(file_name, size as u64))?;
    let mut rng = rand::rng();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill_bytes(&mut buf[..n]);
        put(&mut w, &buf[..n])?;
        left -= n;
    }
    let pad = (512 - size % 512) % 512;
    put(&mut w, &vec![0u8; pad + 1024])?; // padding + end-of-archive (two zero blocks)
    w.flush()
        .with_context(|| format!("flushing {}", tmp.display()))?;
    drop(w);
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    let dest = blob_path(dir, &digest);
    std::fs::rename(&tmp, &dest)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    Ok((digest, len))
}

fn tar_header(name: &str, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], off: usize, s: &[u8]| h[off..off + s.len()].copy_from_slice(s);
    put(&mut h, 0, &name.as_bytes()[..name.len().min(100)]);
    put(&mut h, 100, b"0000644\0");
    put(&mut h, 108, b"0000000\0");
    put(&mut h, 116, b"0000000\0");
    put(&mut h, 124, format!("{size:011o}\0").as_bytes());
    put(&mut h, 136, b"00000000000\0");
    put(&mut h, 148, b"        ");
    h[156] = b'0';
    put(&mut h, 257, b"ustar\0");
    put(&mut h, 263, b"00");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    h
}

/// One layer of [`write_oci_layout_of`]: its media type and blob bytes as pushed.
pub struct LayoutLayer {
    pub media_type: String,
    pub blob: Vec<u8>,
}

/// Writes (or adds to) an OCI image layout in `dir` an image tagged `tag` of exactly these
/// layer blobs and a config listing `diff_ids` (right or wrong: the caller's), so a test can
/// push, with `skopeo copy --preserve-digests`, an image no well-behaved builder would make.
pub fn write_oci_layout_of(
    dir: &Path,
    tag: &str,
    layers: &[LayoutLayer],
    diff_ids: &[String],
) -> anyhow::Result<OciImage> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .with_context(|| format!("writing {}/oci-layout", dir.display()))?;
    let mut descriptors = Vec::new();
    for layer in layers {
        let digest = write_blob(dir, &layer.blob)?;
        descriptors.push((layer.media_type.as_str(), digest, layer.blob.len() as u64));
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| serde_json::json!({"created_by": "registry-prober-e2e"})).collect::<Vec<_>>(),
    });
    finish_layout(dir, tag, &config, &descriptors)
}

/// A one-file ustar archive of `data` named `name` (two zero blocks at its end).
pub fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = tar_header(name, data.len() as u64).to_vec();
    out.extend_from_slice(data);
    out.resize(out.len() + (512 - data.len() % 512) % 512 + 1024, 0);
    out
}
