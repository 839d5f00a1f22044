//! A request as a step describes it, and its body, which can be made again: after a 401
//! challenge the request is repeated, and a generated layer is regenerated from its seed rather
//! than buffered.

use std::ops::Range;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::Method;
use http_body_util::{BodyExt, Empty, Full};
use url::Url;

use super::transport::{BoxError, ReqBody};
use crate::oci::image::Layer;

#[derive(Clone, Debug)]
pub enum BodySource {
    Empty,
    Bytes(Bytes),
    Layer { layer: Layer, range: Range<u64> },
}

impl BodySource {
    /// The number of bytes the body sends.
    pub(crate) fn len(&self) -> u64 {
        match self {
            BodySource::Empty => 0,
            BodySource::Bytes(b) => b.len() as u64,
            BodySource::Layer { range, .. } => range.end - range.start,
        }
    }

    /// The bytes in `range` of this body (a chunk of a chunked upload).
    pub fn slice(&self, range: Range<u64>) -> BodySource {
        match self {
            BodySource::Layer { layer, range: own } => BodySource::Layer {
                layer: layer.clone(),
                range: own.start + range.start..own.start + range.end,
            },
            BodySource::Bytes(b) => {
                BodySource::Bytes(b.slice(range.start as usize..range.end as usize))
            }
            BodySource::Empty => BodySource::Empty,
        }
    }

    pub(super) fn make(&self) -> ReqBody {
        match self {
            BodySource::Empty => Empty::<Bytes>::new()
                .map_err(|e| -> BoxError { match e {} })
                .boxed(),
            BodySource::Bytes(b) => Full::new(b.clone())
                .map_err(|e| -> BoxError { match e {} })
                .boxed(),
            BodySource::Layer { layer, range } => layer
                .body(range.clone())
                .map_err(|e| -> BoxError { match e {} })
                .boxed(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: BodySource,
}

impl Request {
    pub fn new(method: Method, url: Url) -> Request {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: BodySource::Empty,
        }
    }

    pub fn header(mut self, name: header::HeaderName, value: &str) -> Request {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub fn body(mut self, body: BodySource) -> Request {
        self.body = body;
        self
    }
}
