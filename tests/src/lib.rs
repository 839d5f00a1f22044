//! Test harness for registry-prober's end-to-end tests: starts real servers (CNCF Distribution
//! `docker-registry` and the other registry implementations scripts/install-registries
//! installs, a test token server, Prometheus, an OTLP trace receiver), makes test certificates
//! and images and a password store for docker-credential-pass, drives skopeo, and inspects the
//! registry's on-disk storage. No mocks of the registry.

pub mod alertmanager;
pub mod background;
pub mod bins;
pub mod certs;
pub mod compat;
pub mod container_registry;
pub mod fault_proxy;
pub mod ferro;
pub mod http;
pub mod installed;
pub mod object_store;
pub mod oci;
pub mod pass;
pub mod otlp;
pub mod ports;
pub mod prober;
pub mod process;
pub mod prometheus;
pub mod registry;
pub mod service;
pub mod skopeo;
pub mod storage;
pub mod token_server;
pub mod webhook;
pub mod zuul;

pub use bins::prober_bin;
pub use certs::{ClientFiles, TestCa, TlsFiles};
pub use http::{HttpClient, Response};
pub use oci::{write_oci_layout, OciImage};
pub use otlp::OtlpReceiver;
pub use pass::PassStore;
pub use ports::free_port;
pub use process::{run_with_timeout, ProcessOutput};
pub use registry::{Registry, RegistryAuth, RegistryOptions};
pub use skopeo::{skopeo, skopeo_copy, SKOPEO_TIMEOUT};
pub use storage::Storage;
pub use token_server::{Answer, Grant, Post, TokenServer};
