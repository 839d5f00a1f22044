//! OCI content, before anything is sent: digests and the streaming verifier, manifests and the
//! media types the prober speaks, and the random image of a run (config, layers regenerated
//! from a seed, manifest).

pub mod digest;
pub mod image;
pub mod manifest;
