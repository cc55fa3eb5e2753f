//! A stand-in for the Hugging Face hub, on loopback only, for tests.
//!
//! Like the hub, it answers `HEAD`/`GET /{repo}/resolve/{revision}/{file}`:
//! small files with `200`, their git blob hash in `ETag` and the commit in
//! `X-Repo-Commit`; large files (`.safetensors`, `.bin`) with a `302` to a
//! second port (the "CDN") and their SHA-256 in `X-Linked-Etag`, size in
//! `X-Linked-Size`. The CDN serves `Range: bytes=N-` with `206`. Tests can
//! make the next download break off after some bytes, serve content that
//! does not match its checksum, and read the log of requests.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// One request the stand-in saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `hub` or `cdn` (what the request was for), or `proxy` (the stand-in
    /// was asked as a proxy; the request itself is logged after it).
    pub port: &'static str,
    /// `HEAD` or `GET`.
    pub method: String,
    /// The path asked for.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `Authorization` header, if any.
    pub auth: Option<String>,
}

#[derive(Default)]
struct State {
    /// (repo, file) → content.
    files: HashMap<(String, String), Vec<u8>>,
    /// The next CDN GET sends only this many body bytes, then closes.
    cut_next: Option<usize>,
    /// Files whose served bytes differ from their advertised digest.
    corrupt: Vec<String>,
    seen: Vec<Seen>,
}

/// The stand-in hub.
pub struct StandIn {
    /// Its endpoint (`HF_ENDPOINT`).
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

/// The commit every revision resolves to.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn is_large(file: &str) -> bool {
    file.ends_with(".safetensors") || file.ends_with(".bin")
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn git_sha1(b: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", b.len()).as_bytes());
    h.update(b);
    hex::encode(h.finalize())
}

impl StandIn {
    /// Starts both ports.
    pub fn start() -> StandIn {
        let state = Arc::new(Mutex::new(State::default()));
        let hub = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn = TcpListener::bind("127.0.0.1:0").unwrap();
        let cdn_base = format!("http://127.0.0.1:{}", cdn.local_addr().unwrap().port());
        let endpoint = format!("http://127.0.0.1:{}", hub.local_addr().unwrap().port());
        for (listener, port) in [(hub, "hub"), (cdn, "cdn")] {
            let state = state.clone();
            let cdn_base = cdn_base.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    let state = state.clone();
                    let cdn_base = cdn_base.clone();
                    std::thread::spawn(move || {
                        let _ = serve(conn, port, &state, &cdn_base);
                    });
                }
            });
        }
        StandIn { endpoint, state }
    }

    /// Adds a file to a repository.
    pub fn put(&self, repo: &str, file: &str, content: Vec<u8>) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert((repo.into(), file.into()), content);
    }

    /// The next download from the CDN breaks off after `bytes`.
    pub fn cut_next_download(&self, bytes: usize) {
        self.state.lock().unwrap().cut_next = Some(bytes);
    }

    /// `file` is served with one byte changed (its digest is the true one).
    pub fn corrupt(&self, file: &str) {
        self.state.lock().unwrap().corrupt.push(file.into());
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

/// Reads one request head: method, target, headers (lower-case names).
fn read_head(reader: &mut BufReader<TcpStream>) -> std::io::Result<(String, String, HashMap<String, String>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_lowercase(), v.trim().to_string());
        }
    }
    Ok((method, target, headers))
}

fn serve(conn: TcpStream, port: &'static str, state: &Mutex<State>, cdn_base: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let (mut method, mut path, mut headers) = read_head(&mut reader)?;
    let mut port = port;
    let cdn_host = cdn_base.trim_start_matches("http://");
    // Used as a proxy: a tunnel (CONNECT host:port), then the request inside
    // it; or a request in absolute form (http://host:port/path).
    if method == "CONNECT" {
        state.lock().unwrap().seen.push(Seen {
            port: "proxy",
            method: method.clone(),
            path: path.clone(),
            range: None,
            auth: headers.get("proxy-authorization").cloned(),
        });
        port = if path == cdn_host { "cdn" } else { "hub" };
        let mut out = conn.try_clone()?;
        out.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        out.flush()?;
        (method, path, headers) = read_head(&mut reader)?;
    }
    if let Some(rest) = path.strip_prefix("http://") {
        let (host, p) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        state.lock().unwrap().seen.push(Seen {
            port: "proxy",
            method: method.clone(),
            path: path.clone(),
            range: None,
            auth: None,
        });
        port = if host == cdn_host { "cdn" } else { "hub" };
        path = p.to_string();
    }
    let range = headers.get("range").cloned();
    state.lock().unwrap().seen.push(Seen {
        port,
        method: method.clone(),
        path: path.clone(),
        range: range.clone(),
        auth: headers.get("authorization").cloned(),
    });
    let mut out = conn;
    let head_only = method == "HEAD";
    let respond = |out: &mut TcpStream, status: &str, extra: &[(String, String)], body: &[u8], send: usize| {
        let mut resp = format!(
            "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in extra {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        out.write_all(resp.as_bytes())?;
        if !head_only {
            out.write_all(&body[..send.min(body.len())])?;
        }
        out.flush()
    };
    if port == "cdn" {
        // /blobs/{repo}/{file}
        let key = path.trim_start_matches("/blobs/");
        let Some((repo, file)) = key.rsplit_once("/f/") else {
            return respond(&mut out, "404 Not Found", &[], b"", 0);
        };
        let mut st = state.lock().unwrap();
        let Some(mut content) = st.files.get(&(repo.to_string(), file.to_string())).cloned() else {
            return respond(&mut out, "404 Not Found", &[], b"", 0);
        };
        if st.corrupt.iter().any(|c| c == file) {
            let last = content.len() - 1;
            content[last] ^= 0xff;
        }
        let cut = if head_only { None } else { st.cut_next.take() };
        drop(st);
        let start = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
        return match start {
            Some(s) if s >= content.len() => respond(&mut out, "416 Range Not Satisfiable", &[], b"", 0),
            Some(s) => {
                let body = &content[s..];
                let cr = vec![(
                    "Content-Range".to_string(),
                    format!("bytes {s}-{}/{}", content.len() - 1, content.len()),
                )];
                respond(&mut out, "206 Partial Content", &cr, body, cut.unwrap_or(body.len()))
            }
            None => respond(&mut out, "200 OK", &[], &content, cut.unwrap_or(content.len())),
        };
    }
    // The hub: /{owner}/{name}/resolve/{revision}/{file}
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if segs.len() < 5 || segs[2] != "resolve" {
        return respond(&mut out, "404 Not Found", &[], b"", 0);
    }
    let repo = format!("{}/{}", segs[0], segs[1]);
    let file = segs[4];
    let st = state.lock().unwrap();
    if !st.files.keys().any(|(r, _)| *r == repo) {
        let h = [("X-Error-Code".to_string(), "RepoNotFound".to_string())];
        return respond(&mut out, "401 Unauthorized", &h, b"", 0);
    }
    let Some(content) = st.files.get(&(repo.clone(), file.to_string())).cloned() else {
        let h = [("X-Error-Code".to_string(), "EntryNotFound".to_string())];
        return respond(&mut out, "404 Not Found", &h, b"", 0);
    };
    drop(st);
    let commit = ("X-Repo-Commit".to_string(), COMMIT.to_string());
    if is_large(file) {
        let h = [
            ("Location".to_string(), format!("{cdn_base}/blobs/{repo}/f/{file}")),
            ("X-Linked-Etag".to_string(), format!("\"{}\"", sha256(&content))),
            ("X-Linked-Size".to_string(), content.len().to_string()),
            commit,
        ];
        respond(&mut out, "302 Found", &h, b"", 0)
    } else {
        let h = [("ETag".to_string(), format!("\"{}\"", git_sha1(&content))), commit];
        respond(&mut out, "200 OK", &h, &content, content.len())
    }
}
