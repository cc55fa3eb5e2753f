//! The Hugging Face hub protocol, as far as installing a model needs it.
//!
//! `HEAD {endpoint}/{repo}/resolve/{revision}/{file}` (redirects not
//! followed) tells what a file is: a small file answers `200` with its git
//! blob hash in `ETag`; a large (LFS) file answers with a redirect to
//! another host and its SHA-256 in `X-Linked-Etag`, its size in
//! `X-Linked-Size`. Both carry the resolved commit in `X-Repo-Commit`.
//! The file is then fetched with `GET` from where the redirect points,
//! resuming a partial file with `Range: bytes=N-`, and checked against that
//! digest before it is kept.
//!
//! Environment: `HF_ENDPOINT` (default the public hub), `HF_TOKEN` (sent to
//! the endpoint's host only, never to the host a large file is redirected
//! to), `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use sha1::Sha1;

use crate::error::{ModelError, Result};
use crate::progress::Reporter;

/// The public hub, when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How a downloaded file is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    /// SHA-256 (hex) of the content: large files.
    Sha256(String),
    /// Git blob SHA-1 (hex) of the content: small files.
    GitSha1(String),
    /// The hub gave nothing to check against.
    Unknown,
}

/// What the hub says of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Where to `GET` the content (after the hub's redirect).
    pub url: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// The digest to check the content against.
    pub digest: Digest,
    /// The commit the revision resolved to.
    pub commit: Option<String>,
}

/// A client of one hub endpoint.
pub struct Hub {
    endpoint: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// The host part of a URL (`scheme://host[:port]`).
fn origin(url: &str) -> &str {
    let after = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[after..].find('/').map(|i| after + i).unwrap_or(url.len());
    &url[..end]
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().trim_start_matches("W/").trim_matches('"').to_string())
}

impl Hub {
    /// A client of `HF_ENDPOINT` (default [`DEFAULT_ENDPOINT`]) with
    /// `HF_TOKEN` and the proxy variables of the environment.
    pub fn from_env() -> Hub {
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let token = std::env::var("HF_TOKEN").ok().filter(|s| !s.trim().is_empty());
        Hub::new(&endpoint, token)
    }

    /// A client of `endpoint`.
    pub fn new(endpoint: &str, token: Option<String>) -> Hub {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .max_redirects_will_error(false)
            .http_status_as_error(false)
            .proxy(ureq::Proxy::try_from_env())
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .user_agent(concat!("kino/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Hub {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            agent,
        }
    }

    /// The endpoint asked.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The URL of a file of a repository at a revision.
    pub fn file_url(&self, repo: &str, revision: &str, file: &str) -> String {
        format!("{}/{repo}/resolve/{revision}/{file}", self.endpoint)
    }

    fn network(&self, url: &str, e: ureq::Error) -> ModelError {
        let msg = match e {
            ureq::Error::Io(e) => format!(
                "cannot reach the hub at {} ({e}); offline? set HF_ENDPOINT to a reachable mirror, or install the files by hand",
                self.endpoint
            ),
            e => e.to_string(),
        };
        ModelError::Network { url: url.into(), msg }
    }

    /// Sends `req`, with the token when it goes to the endpoint's host.
    fn call<B>(
        &self,
        url: &str,
        req: ureq::RequestBuilder<B>,
        send: impl FnOnce(ureq::RequestBuilder<B>) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let req = match &self.token {
            Some(t) if origin(url) == origin(&self.endpoint) => req.header("Authorization", format!("Bearer {t}")),
            _ => req,
        };
        send(req).map_err(|e| self.network(url, e))
    }

    /// What the hub says of `file` in `repo` at `revision`. Redirects on
    /// the hub's own host (a renamed repository) are followed; one to
    /// another host is where a large file's content lives.
    pub fn file_meta(&self, repo: &str, revision: &str, file: &str) -> Result<FileMeta> {
        let mut url = self.file_url(repo, revision, file);
        for _ in 0..5 {
            let resp = self.call(&url, self.agent.head(&url), |r| r.call())?;
            let status = resp.status().as_u16();
            let commit = header(&resp, "x-repo-commit");
            match status {
                200 => {
                    let size = header(&resp, "content-length").and_then(|s| s.parse().ok());
                    let digest = match header(&resp, "x-linked-etag").or_else(|| header(&resp, "etag")) {
                        Some(e) if e.len() == 64 && e.bytes().all(|b| b.is_ascii_hexdigit()) => Digest::Sha256(e),
                        Some(e) if e.len() == 40 && e.bytes().all(|b| b.is_ascii_hexdigit()) => Digest::GitSha1(e),
                        _ => Digest::Unknown,
                    };
                    return Ok(FileMeta {
                        url,
                        size: header(&resp, "x-linked-size").and_then(|s| s.parse().ok()).or(size),
                        digest,
                        commit,
                    });
                }
                301 | 302 | 303 | 307 | 308 => {
                    let location = header(&resp, "location").ok_or_else(|| ModelError::Network {
                        url: url.clone(),
                        msg: format!("redirect ({status}) without a Location"),
                    })?;
                    let target = if location.starts_with('/') {
                        format!("{}{location}", origin(&url))
                    } else {
                        location
                    };
                    if let Some(sha) = header(&resp, "x-linked-etag") {
                        // A large file: its content lives where this points.
                        return Ok(FileMeta {
                            url: target,
                            size: header(&resp, "x-linked-size").and_then(|s| s.parse().ok()),
                            digest: Digest::Sha256(sha),
                            commit,
                        });
                    }
                    url = target;
                }
                401 | 403 | 404 => {
                    let code = header(&resp, "x-error-code").unwrap_or_default();
                    let msg = match code.as_str() {
                        "RepoNotFound" => format!(
                            "repository {repo} not found on {} (check the name; a private or gated repository needs HF_TOKEN)",
                            self.endpoint
                        ),
                        "RevisionNotFound" => format!("revision {revision} of {repo} not found"),
                        "EntryNotFound" => format!("{repo}@{revision} has no file {file}"),
                        _ => format!(
                            "HTTP {status}: {repo}@{revision}/{file} not found or not allowed (check the name; set HF_TOKEN for a gated repository)"
                        ),
                    };
                    return Err(ModelError::Network { url, msg });
                }
                s => {
                    return Err(ModelError::Network {
                        url,
                        msg: format!("the hub answered HTTP {s}"),
                    })
                }
            }
        }
        Err(ModelError::Network {
            url,
            msg: "too many redirects".into(),
        })
    }

    /// Downloads `meta` into `dest`, resuming from what `dest` already
    /// holds (`Range`), then checks the digest. A file that does not match
    /// is removed and refused; a download that breaks off is kept so the
    /// next run resumes it.
    pub fn download(&self, meta: &FileMeta, dest: &Path, label: &str, reporter: &Reporter) -> Result<()> {
        let have = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
        let have = match meta.size {
            Some(size) if have > size => {
                std::fs::remove_file(dest).map_err(|e| ModelError::io(dest, e))?;
                0
            }
            _ => have,
        };
        if meta.size != Some(have) || have == 0 {
            self.fetch_bytes(meta, dest, have, label, reporter)?;
        }
        check_digest(dest, &meta.digest, &meta.url)
    }

    fn fetch_bytes(&self, meta: &FileMeta, dest: &Path, have: u64, label: &str, reporter: &Reporter) -> Result<()> {
        let url = &meta.url;
        let mut req = self.agent.get(url);
        if have > 0 {
            req = req.header("Range", format!("bytes={have}-"));
        }
        let resp = self.call(url, req, |r| r.call())?;
        let status = resp.status().as_u16();
        let start = match status {
            206 => {
                let range = header(&resp, "content-range").unwrap_or_default();
                if !range.starts_with(&format!("bytes {have}-")) {
                    return Err(ModelError::Network {
                        url: url.clone(),
                        msg: format!("asked for bytes {have}- and got range {range:?}"),
                    });
                }
                have
            }
            200 => 0,
            416 => {
                // The partial file is not a prefix of this content: start over.
                std::fs::remove_file(dest).map_err(|e| ModelError::io(dest, e))?;
                return self.fetch_bytes(meta, dest, 0, label, reporter);
            }
            s => {
                return Err(ModelError::Network {
                    url: url.clone(),
                    msg: format!("download answered HTTP {s}"),
                })
            }
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(start > 0)
            .write(true)
            .truncate(start == 0)
            .open(dest)
            .map_err(|e| ModelError::io(dest, e))?;
        let total = meta.size;
        let bar = reporter.download(label, total, start);
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 256 << 10];
        let mut pos = start;
        let result = loop {
            match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    if let Err(e) = file.write_all(&buf[..n]) {
                        break Err(ModelError::io(dest, e));
                    }
                    pos += n as u64;
                    bar.set(pos);
                    // The reliability tests' kill point: past the first
                    // megabyte (or half of a smaller file).
                    let mark = total.map_or(1 << 20, |t| t.div_ceil(2).min(1 << 20));
                    if pos >= mark && pos - (n as u64) < mark {
                        kino_fault::point(|| "model-download".into());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(cut(url, pos, total, &e.to_string())),
            }
        };
        let result = result.and_then(|()| match total {
            Some(t) if pos < t => Err(cut(url, pos, total, "connection closed")),
            _ => file.flush().map_err(|e| ModelError::io(dest, e)),
        });
        bar.finish(result.is_ok());
        result
    }
}

fn cut(url: &str, pos: u64, total: Option<u64>, why: &str) -> ModelError {
    let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
    ModelError::Network {
        url: url.into(),
        msg: format!("download interrupted after {pos}{of} bytes ({why}); run `kino models fetch` again to resume"),
    }
}

/// Checks `path` against `digest`; removes it when it does not match.
pub fn check_digest(path: &Path, digest: &Digest, what: &str) -> Result<()> {
    let (expected, got) = match digest {
        Digest::Unknown => return Ok(()),
        Digest::Sha256(e) => (e, crate::manifest::sha256_file(path)?),
        Digest::GitSha1(e) => (e, git_blob_sha1(path)?),
    };
    if got.eq_ignore_ascii_case(expected) {
        return Ok(());
    }
    let _ = std::fs::remove_file(path);
    Err(ModelError::Checksum {
        what: what.into(),
        expected: expected.clone(),
        got,
    })
}

/// Git's blob hash of a file: SHA-1 of `blob {len}\0` and the content.
pub fn git_blob_sha1(path: &Path) -> Result<String> {
    let len = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?.len();
    crate::manifest::digest_file::<Sha1>(path, format!("blob {len}\0").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_hash_matches_git() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello\n").unwrap();
        // `echo hello | git hash-object --stdin`
        assert_eq!(git_blob_sha1(&p).unwrap(), "ce013625030ba8dba906f756967f9e9ca394464a");
    }

    #[test]
    fn origin_is_scheme_and_host() {
        assert_eq!(origin("http://127.0.0.1:9/a/b"), "http://127.0.0.1:9");
        assert_eq!(origin("https://hub.example"), "https://hub.example");
    }

    #[test]
    fn an_unreachable_endpoint_says_so() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let hub = Hub::new(&format!("http://127.0.0.1:{port}"), None);
        let e = hub.file_meta("a/b", "main", "config.json").unwrap_err().to_string();
        assert!(
            e.contains("cannot reach the hub") && e.contains(&port.to_string()),
            "{e}"
        );
    }
}
