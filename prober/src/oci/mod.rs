//! OCI content, before anything is sent: digests and the streaming verifier, manifests and the
//! media types the prober speaks, the random image of a run (config, tar layers regenerated
//! from a seed and compressed, manifest), the check that a layer unpacks to its DiffID,
//! platforms and the index over one image per platform, artifacts and the referrers index.

pub mod artifact;
pub mod compression;
pub mod digest;
pub mod image;
pub mod index;
pub mod layer;
pub mod manifest;
pub mod platform;
pub(crate) mod random;
pub mod referrers;
pub mod tar;
pub mod unpack;
