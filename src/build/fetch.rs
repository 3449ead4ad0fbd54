//! ADD of a URL: download into the store's `tmp/`, hashing while writing. The content digest
//! goes into the step's cache key (as BuildKit does, the URL is fetched on every build and
//! only unchanged content hits); `--checksum=sha256:…` is verified. A download may not exceed
//! [`Limits::max_download_size`] (`BOX_MAX_DOWNLOAD_SIZE`): an announced length above it is
//! refused before the body is read, a body that grows past it is cut off, and the partial
//! file is removed.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};
use crate::limits::{self, Limits, LimitsError};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("ADD {url}: {why}")]
    Http { url: String, why: String },
    #[error("ADD {url}: write {}: {source}", path.display())]
    Io {
        url: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "ADD {url}: the download {} the {} limit for ADD downloads; stopped, nothing kept \
         (raise {} if the file is meant to be this big)",
        .announced.map_or("grew past".to_string(), |n| format!("is {} ({n} bytes), over", limits::human(n))),
        limits::human(*.limit),
        limits::MAX_DOWNLOAD_SIZE_VAR
    )]
    TooLarge {
        url: String,
        /// The Content-Length, when the server announced one above the limit.
        announced: Option<u64>,
        limit: u64,
    },
    #[error("ADD {url}: {source}")]
    Limits { url: String, source: LimitsError },
    #[error("ADD {url}: checksum mismatch: expected {expected}, the download is {actual}")]
    Checksum {
        url: String,
        expected: String,
        actual: Digest,
    },
}

/// A downloaded file; removed when dropped (as a [`super::git::Checkout`] is).
#[derive(Debug)]
pub struct Download {
    pub path: tempfile::TempPath,
    pub digest: Digest,
    /// The file name a directory destination gets: the URL path's last segment.
    pub name: String,
}

/// Fetch `url` into a new file under `tmp`.
pub fn fetch(url: &str, tmp: &Path, checksum: Option<&str>) -> Result<Download, FetchError> {
    let http = |why: String| FetchError::Http {
        url: url.to_string(),
        why,
    };
    let limit = Limits::from_env()
        .map_err(|source| FetchError::Limits {
            url: url.to_string(),
            source,
        })?
        .max_download_size;
    let too_large = |announced| FetchError::TooLarge {
        url: url.to_string(),
        announced,
        limit,
    };
    let file = tempfile::Builder::new()
        .prefix("add-url-")
        .tempfile_in(tmp)
        .map_err(|source| FetchError::Io {
            url: url.to_string(),
            path: tmp.to_path_buf(),
            source,
        })?;
    // `path` removes the file when dropped: on every error below, and after the step.
    let (file, path) = file.into_parts();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| http(format!("start the HTTP runtime: {e}")))?;
    let mut out = HashingWriter::new(std::io::BufWriter::new(file));
    let res: Result<(), FetchError> = rt.block_on(async {
        let client = crate::registry::client::http_client().map_err(|e| http(e.to_string()))?;
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| http(crate::registry::client::error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(http(format!("the server answered {}", resp.status())));
        }
        if let Some(n) = resp.content_length().filter(|n| *n > limit) {
            return Err(too_large(Some(n)));
        }
        let mut got = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| http(crate::registry::client::error_chain(&e)))?
        {
            got += chunk.len() as u64;
            if got > limit {
                return Err(too_large(None));
            }
            out.write_all(&chunk).map_err(|source| FetchError::Io {
                url: url.to_string(),
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(())
    });
    res?;
    let (w, digest, _) = out.finish();
    if let Err(e) = w.into_inner() {
        return Err(FetchError::Io {
            url: url.to_string(),
            path: path.to_path_buf(),
            source: e.into_error(),
        });
    }
    if let Some(c) = checksum
        && c != digest.to_string()
    {
        return Err(FetchError::Checksum {
            url: url.to_string(),
            expected: c.to_string(),
            actual: digest,
        });
    }
    let name = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && !n.contains(':'))
        .unwrap_or("download")
        .to_string();
    Ok(Download { path, digest, name })
}
