//! ADD of a URL: download into the store's `tmp/`, hashing while writing. The content digest
//! goes into the step's cache key (as BuildKit does, the URL is fetched on every build and
//! only unchanged content hits); `--checksum=sha256:…` is verified.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};

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
    #[error("ADD {url}: checksum mismatch: expected {expected}, the download is {actual}")]
    Checksum {
        url: String,
        expected: String,
        actual: Digest,
    },
}

/// A downloaded file.
#[derive(Debug, Clone)]
pub struct Download {
    pub path: PathBuf,
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
    let file = tempfile::Builder::new()
        .prefix("add-url-")
        .tempfile_in(tmp)
        .map_err(|source| FetchError::Io {
            url: url.to_string(),
            path: tmp.to_path_buf(),
            source,
        })?;
    let (file, path) = file.keep().map_err(|e| FetchError::Io {
        url: url.to_string(),
        path: tmp.to_path_buf(),
        source: e.error,
    })?;
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
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| http(crate::registry::client::error_chain(&e)))?
        {
            out.write_all(&chunk).map_err(|source| FetchError::Io {
                url: url.to_string(),
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    });
    if let Err(e) = res {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    let (w, digest, _) = out.finish();
    if let Err(e) = w.into_inner() {
        let _ = std::fs::remove_file(&path);
        return Err(FetchError::Io {
            url: url.to_string(),
            path,
            source: e.into_error(),
        });
    }
    if let Some(c) = checksum
        && c != digest.to_string()
    {
        let _ = std::fs::remove_file(&path);
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
