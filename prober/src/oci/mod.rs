//! OCI content, before anything is sent: digests and the streaming verifier, manifests and the
//! media types the prober speaks, the random image of a run (config, tar layers regenerated
//! from a seed and compressed, manifest), and the check that a layer unpacks to its DiffID.

pub mod compression;
pub mod digest;
pub mod image;
pub mod layer;
pub mod manifest;
pub(crate) mod random;
pub mod tar;
pub mod unpack;
