//! OCI content, before anything is sent: digests and the streaming verifier, manifests and the
//! media types the prober speaks, the random image of a run (config, layers regenerated
//! from a seed, manifest), platforms and the index over one image per platform, artifacts and
//! the referrers index.

pub mod artifact;
pub mod digest;
pub mod image;
pub mod index;
pub mod manifest;
pub mod platform;
pub mod referrers;
