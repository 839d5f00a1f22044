//! The exposition: OpenMetrics text for scrapers that ask for it, the Prometheus text format for
//! the rest, either gzipped as it is encoded when the scraper accepts gzip.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::registry::Registry;

/// The `Content-Type` of what [`encode`] returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The length of the last text encoded: the next buffer is allocated at that size once, instead
/// of doubling its way up (which at a thousand targets holds ~1.5x the ~44 MB text at the end).
static LAST_TEXT_LEN: AtomicUsize = AtomicUsize::new(0);

fn text_buffer() -> String {
    let last = LAST_TEXT_LEN.load(Ordering::Relaxed);
    String::with_capacity(last + last / 16 + 4096)
}

/// The two text formats /metrics serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0, for scrapers that ask for it (Prometheus does).
    OpenMetrics,
    /// The Prometheus text format 0.0.4, for scrapers and linters that do not negotiate
    /// OpenMetrics (curl, promtool 2.42): a counter's family is named with its `_total` and
    /// there is no `# UNIT` or `# EOF`, the translation Prometheus itself makes when it ingests
    /// OpenMetrics. Translated line by line as it is encoded, so only one text is ever held.
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => CONTENT_TYPE,
            Format::Text => TEXT_CONTENT_TYPE,
        }
    }
}

/// The OpenMetrics text of `registry`, ending with `# EOF`.
#[cfg(test)]
pub(super) fn encode(registry: &Registry) -> String {
    encode_as(registry, Format::OpenMetrics)
}

/// Content type of the Prometheus text format (0.0.4), for scrapers that do not ask for OpenMetrics.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `registry` in `format`, as one string.
pub fn encode_as(registry: &Registry, format: Format) -> String {
    let text = encode_into(registry, format, text_buffer());
    LAST_TEXT_LEN.store(text.len(), Ordering::Relaxed);
    text
}

/// `registry` in `format`, gzipped as it is encoded: the whole text is never held (at 1,000
/// targets it is ~44 MB, its gzip ~2.4 MB).
pub fn encode_gzip(registry: &Registry, format: Format) -> Vec<u8> {
    encode_into(registry, format, Gzip::new()).finish()
}

fn encode_into<W: fmt::Write>(registry: &Registry, format: Format, out: W) -> W {
    let expect = "writing to memory cannot fail and every label value encodes";
    match format {
        Format::OpenMetrics => {
            let mut out = out;
            prometheus_client::encoding::text::encode(&mut out, registry).expect(expect);
            out
        }
        Format::Text => {
            let mut text = TextFormat::new(out);
            prometheus_client::encoding::text::encode(&mut text, registry).expect(expect);
            text.finish()
        }
    }
}

#[cfg(test)]
pub(super) fn to_prometheus_text(openmetrics: &str) -> String {
    use std::fmt::Write as _;
    let mut text = TextFormat::new(String::new());
    text.write_str(openmetrics)
        .expect("writing to a String cannot fail");
    text.finish()
}

/// Writes OpenMetrics text through as the Prometheus text format: `# HELP` is held until the
/// next line says whether the family is a counter (whose name then gains `_total`).
struct TextFormat<W> {
    out: W,
    line: String,
    help: Option<String>,
}

impl<W: fmt::Write> TextFormat<W> {
    fn new(out: W) -> TextFormat<W> {
        TextFormat {
            out,
            line: String::new(),
            help: None,
        }
    }

    fn end_line(&mut self) -> fmt::Result {
        let line = std::mem::take(&mut self.line);
        let result = self.translate(&line);
        self.line = line;
        self.line.clear();
        result
    }

    fn translate(&mut self, line: &str) -> fmt::Result {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            return Ok(());
        }
        if line.starts_with("# HELP ") {
            self.flush_help()?;
            self.help = Some(line.to_string());
            return Ok(());
        }
        let Some(counter) = line
            .strip_prefix("# TYPE ")
            .and_then(|l| l.strip_suffix(" counter"))
        else {
            self.flush_help()?;
            return writeln!(self.out, "{line}");
        };
        if let Some(help) = self.help.take() {
            match help
                .strip_prefix("# HELP ")
                .and_then(|h| h.strip_prefix(counter))
            {
                Some(rest) if rest.starts_with(' ') => {
                    writeln!(self.out, "# HELP {counter}_total{rest}")?
                }
                _ => writeln!(self.out, "{help}")?,
            }
        }
        writeln!(self.out, "# TYPE {counter}_total counter")
    }

    fn flush_help(&mut self) -> fmt::Result {
        match self.help.take() {
            Some(help) => writeln!(self.out, "{help}"),
            None => Ok(()),
        }
    }

    fn finish(mut self) -> W {
        if !self.line.is_empty() {
            let _ = self.end_line();
        }
        let _ = self.flush_help();
        self.out
    }
}

impl<W: fmt::Write> fmt::Write for TextFormat<W> {
    fn write_str(&mut self, mut s: &str) -> fmt::Result {
        while let Some(end) = s.find('\n') {
            self.line.push_str(&s[..end]);
            self.end_line()?;
            s = &s[end + 1..];
        }
        self.line.push_str(s);
        Ok(())
    }
}

/// Text in, gzip out, through a 64 KiB buffer (the encoder writes many small pieces).
struct Gzip {
    pending: String,
    encoder: flate2::write::GzEncoder<Vec<u8>>,
}

impl Gzip {
    const BUFFER: usize = 64 * 1024;

    fn new() -> Gzip {
        Gzip {
            pending: String::with_capacity(Self::BUFFER),
            // The fastest level: the text is repetitive enough that it still shrinks ~20x.
            encoder: flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()),
        }
    }

    fn drain(&mut self) -> fmt::Result {
        use std::io::Write as _;
        self.encoder
            .write_all(self.pending.as_bytes())
            .map_err(|_| fmt::Error)?;
        self.pending.clear();
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        self.drain()
            .and_then(|()| self.encoder.finish().map_err(|_| fmt::Error))
            .expect("gzip into memory cannot fail")
    }
}

impl fmt::Write for Gzip {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.pending.push_str(s);
        if self.pending.len() >= Self::BUFFER {
            self.drain()?;
        }
        Ok(())
    }
}
