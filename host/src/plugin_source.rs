//! Where plugin bytes come from: a local path or `file://` URI, `s3://bucket/key`, or
//! `https://` (plain `http://` only to loopback, for tests).
//!
//! Every source is read as a stream under a size cap (`PLUGIN_MAX_BYTES`), so an oversized or
//! endless plugin is refused after at most the cap, not after it filled memory. A download that
//! ends before its announced length is an error, never a short plugin.

use crate::aws::AwsSettings;
use anyhow::{Context, Result, bail};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::OnceCell;

/// How long a connection to an HTTPS plugin server may take to open, and how long a read may
/// stall, before the download fails (Lambda gives init 10 s in all).
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HTTP_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Where one plugin's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// A path, given as is or as a `file://` URI.
    Local(PathBuf),
    /// An S3 object, fetched with the AWS SDK (credentials and region from the standard chain).
    S3 {
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
    },
    /// An `https://` URL, or an `http://` one whose host is loopback.
    Http(url::Url),
}

impl PluginSource {
    /// Parses a location (without query string or fragment).
    pub fn parse(location: &str) -> Result<Self> {
        if let Some(path) = location.strip_prefix("file://") {
            return Ok(PluginSource::Local(PathBuf::from(path)));
        }
        if let Some(rest) = location.strip_prefix("s3://") {
            return match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
                    Ok(PluginSource::S3 {
                        bucket: bucket.to_string(),
                        key: key.to_string(),
                    })
                }
                _ => bail!("{location:?} is not an S3 object: write s3://bucket/key"),
            };
        }
        if location.starts_with("https://") || location.starts_with("http://") {
            let url = url::Url::parse(location)
                .with_context(|| format!("{location:?} is not a valid URL"))?;
            if url.scheme() == "http" && !is_loopback(&url) {
                bail!(
                    "{location:?} uses plain http://, which is allowed only to a loopback \
                     address (for tests): use https://"
                );
            }
            return Ok(PluginSource::Http(url));
        }
        if let Some((scheme, _)) = location.split_once("://") {
            bail!(
                "unsupported plugin location scheme {scheme:?} in {location:?}: use a path, \
                 file://, s3://bucket/key or https://"
            );
        }
        Ok(PluginSource::Local(PathBuf::from(location)))
    }

    /// The file name without its extension: the stage's default name.
    pub fn file_stem(&self) -> Option<String> {
        let path = match self {
            PluginSource::Local(path) => path.to_string_lossy().into_owned(),
            PluginSource::S3 { key, .. } => key.clone(),
            PluginSource::Http(url) => url.path().to_string(),
        };
        std::path::Path::new(&path)
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// Whether fetching goes over the network (and so is worth caching by digest).
    pub fn is_remote(&self) -> bool {
        !matches!(self, PluginSource::Local(_))
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost")
                || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// A SHA-256 digest: what `#sha256=` pins and what the cache is keyed by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    /// Parses 64 hex digits (either case).
    pub fn parse_hex(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("sha256 pin {text:?} is not 64 hex digits");
        }
        let mut digest = [0u8; 32];
        for (i, byte) in digest.iter_mut().enumerate() {
            *byte =
                u8::from_str_radix(&text[2 * i..2 * i + 2], 16).context("sha256 pin is not hex")?;
        }
        Ok(Sha256Digest(digest))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

/// Bytes read so far from one source, refusing to grow past the cap.
struct CappedBuffer<'a> {
    location: &'a str,
    limit: u64,
    bytes: Vec<u8>,
}

impl<'a> CappedBuffer<'a> {
    fn new(location: &'a str, limit: u64, announced: Option<u64>) -> Result<Self> {
        if let Some(size) = announced.filter(|&size| size > limit) {
            bail!(too_large(location, limit, Some(size)));
        }
        let capacity = announced.unwrap_or(0).min(limit);
        Ok(CappedBuffer {
            location,
            limit,
            bytes: Vec::with_capacity(usize::try_from(capacity).unwrap_or(0)),
        })
    }

    fn push(&mut self, chunk: &[u8]) -> Result<()> {
        if (self.bytes.len() + chunk.len()) as u64 > self.limit {
            bail!(too_large(self.location, self.limit, None));
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// The bytes, once the source said it was done; `announced` is the length it promised.
    fn finish(self, announced: Option<u64>) -> Result<Vec<u8>> {
        match announced {
            Some(size) if size != self.bytes.len() as u64 => bail!(
                "the download of {} was truncated: {} of {size} bytes arrived; \
                 check the server and retry",
                self.location,
                self.bytes.len()
            ),
            _ => Ok(self.bytes),
        }
    }
}

fn too_large(location: &str, limit: u64, announced: Option<u64>) -> String {
    let size = announced.map_or_else(|| "more".to_string(), |s| format!("{s} bytes, more"));
    format!(
        "plugin {location} is {size} than PLUGIN_MAX_BYTES ({limit} bytes): \
         raise PLUGIN_MAX_BYTES if the plugin is really that large"
    )
}

/// Fetches plugin bytes; the S3 and HTTP clients are built on first use only, so a pipeline
/// of local plugins never loads AWS configuration.
#[derive(Debug)]
pub struct Fetcher {
    max_bytes: u64,
    aws: AwsSettings,
    s3: OnceCell<aws_sdk_s3::Client>,
    http: OnceCell<reqwest::Client>,
}

impl Fetcher {
    /// A fetcher that refuses plugins over `max_bytes`.
    pub fn new(max_bytes: u64, aws: AwsSettings) -> Self {
        Fetcher {
            max_bytes,
            aws,
            s3: OnceCell::new(),
            http: OnceCell::new(),
        }
    }

    /// Reads the whole plugin at `location` (used in messages) from `source`.
    pub async fn fetch(&self, location: &str, source: &PluginSource) -> Result<Vec<u8>> {
        match source {
            PluginSource::Local(path) => self.read_file(location, path),
            PluginSource::S3 { bucket, key } => self.get_object(location, bucket, key).await,
            PluginSource::Http(url) => self.download(location, url).await,
        }
    }

    fn read_file(&self, location: &str, path: &Path) -> Result<Vec<u8>> {
        let reading = || format!("reading plugin {}", path.display());
        let file = std::fs::File::open(path).with_context(reading)?;
        let announced = file
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        let mut buffer = CappedBuffer::new(location, self.max_bytes, announced)?;
        // Read one byte past the cap at most: a file that grows while being read (or a device
        // file that never ends) is still caught.
        let mut bytes = Vec::new();
        file.take(self.max_bytes + 1)
            .read_to_end(&mut bytes)
            .with_context(reading)?;
        buffer.push(&bytes)?;
        buffer.finish(None)
    }

    async fn get_object(&self, location: &str, bucket: &str, key: &str) -> Result<Vec<u8>> {
        let client = self
            .s3
            .get_or_init(|| crate::aws::s3_client(&self.aws))
            .await;
        let output = client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error(location, bucket, key, e))?;
        let announced = output.content_length.and_then(|n| u64::try_from(n).ok());
        let mut buffer = CappedBuffer::new(location, self.max_bytes, announced)?;
        let mut body = output.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.with_context(|| {
                format!(
                    "the download of {location} was cut off after {} bytes",
                    buffer.bytes.len()
                )
            })?;
            buffer.push(&chunk)?;
        }
        buffer.finish(announced)
    }

    async fn download(&self, location: &str, url: &url::Url) -> Result<Vec<u8>> {
        let client = self
            .http
            .get_or_try_init(|| async {
                reqwest::Client::builder()
                    .connect_timeout(HTTP_CONNECT_TIMEOUT)
                    .read_timeout(HTTP_READ_TIMEOUT)
                    .redirect(reqwest::redirect::Policy::custom(|attempt| {
                        // A redirect may not downgrade to plain http outside loopback.
                        if attempt.previous().len() >= 5 {
                            attempt.error("more than 5 redirects")
                        } else if attempt.url().scheme() == "https" || is_loopback(attempt.url()) {
                            attempt.follow()
                        } else {
                            attempt.error("redirect to plain http outside loopback")
                        }
                    }))
                    .build()
                    .context("building the HTTPS client")
            })
            .await?;
        let mut response = client
            .get(url.clone())
            .send()
            .await
            .with_context(|| format!("downloading plugin {location}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "downloading plugin {location}: the server answered HTTP {status}{}",
                match status.as_u16() {
                    404 | 410 => " (no plugin at that URL: check the URI)",
                    401 | 403 => " (access denied: the URL needs no credentials to work here)",
                    _ => "",
                }
            );
        }
        let announced = response.content_length();
        let mut buffer = CappedBuffer::new(location, self.max_bytes, announced)?;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => buffer.push(&chunk)?,
                Ok(None) => break,
                Err(e) => bail!(
                    "the download of {location} was cut off after {} bytes: {e}",
                    buffer.bytes.len()
                ),
            }
        }
        buffer.finish(announced)
    }
}

/// Turns an S3 error into one an operator can act on.
fn s3_error(
    location: &str,
    bucket: &str,
    key: &str,
    error: aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_object::GetObjectError>,
) -> anyhow::Error {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let detail = aws_sdk_s3::error::DisplayErrorContext(&error).to_string();
    let hint = match error.code() {
        Some("NoSuchKey") => format!("the object {key:?} does not exist in bucket {bucket:?}"),
        Some("NoSuchBucket") => format!("the bucket {bucket:?} does not exist"),
        Some("AccessDenied" | "Forbidden" | "InvalidAccessKeyId" | "SignatureDoesNotMatch") => {
            format!(
                "access denied: the function's role needs s3:GetObject on \
                 arn:aws:s3:::{bucket}/{key}"
            )
        }
        _ => match error.raw_response().map(|r| r.status().as_u16()) {
            Some(404) => format!("the object {key:?} does not exist in bucket {bucket:?}"),
            Some(403) => format!(
                "access denied: the function's role needs s3:GetObject on \
                 arn:aws:s3:::{bucket}/{key}"
            ),
            _ => "S3 could not be reached or refused the request".to_string(),
        },
    };
    anyhow::anyhow!("fetching plugin {location}: {hint} ({detail})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_print_and_parse_as_hex() {
        let d = Sha256Digest::of(b"abc");
        let hex = d.to_string();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Sha256Digest::parse_hex(&hex.to_uppercase()).unwrap(), d);
        assert!(Sha256Digest::parse_hex("xyz").is_err());
    }

    #[test]
    fn plain_http_is_for_loopback_only() {
        for ok in [
            "http://127.0.0.1:8/a.wasm",
            "http://localhost/a.wasm",
            "http://[::1]/a.wasm",
        ] {
            assert!(PluginSource::parse(ok).is_ok(), "{ok}");
        }
        let e = PluginSource::parse("http://10.0.0.1/a.wasm").unwrap_err();
        assert!(format!("{e}").contains("https://"), "{e}");
    }

    #[test]
    fn the_cap_applies_while_reading() {
        let mut b = CappedBuffer::new("x", 4, None).unwrap();
        b.push(b"abc").unwrap();
        assert!(format!("{}", b.push(b"de").unwrap_err()).contains("PLUGIN_MAX_BYTES"));
        assert!(CappedBuffer::new("x", 4, Some(5)).is_err());
        let short = CappedBuffer::new("x", 10, Some(8)).unwrap();
        assert!(format!("{}", short.finish(Some(8)).unwrap_err()).contains("truncated"));
    }
}
