//! Hostile HTTP input against a real listening server (real sockets, the
//! production accept loop): oversized bodies and query strings, path
//! traversal, malformed ranges, cross-site form posts with a session cookie,
//! token guessing, and a slowloris attack with thousands of idle connections
//! while a normal client measures its latency.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Fixture, TestDb};
use kino_store::Backend;
use kino_web::WebConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "hostile-test-token";

/// A response read off the socket.
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `request` (a whole HTTP/1.1 request; `Connection: close` is added)
/// on a new connection and reads the reply.
async fn raw(addr: SocketAddr, request: &str, body: &[u8]) -> Reply {
    let s = TcpStream::connect(addr).await.expect("connect");
    exchange(s, addr, request, body).await
}

/// [`raw`] from the loopback address `from` (127.0.0.0/8 is all loopback on
/// Linux, so each address is a different client to the guard).
async fn raw_from(from: std::net::Ipv4Addr, addr: SocketAddr, request: &str) -> Reply {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((from, 0))).unwrap();
    let s = sock.connect(addr).await.expect("connect");
    exchange(s, addr, request, b"").await
}

/// Writes `request` and `body` on `s` and reads the reply to the end.
async fn exchange(mut s: TcpStream, addr: SocketAddr, request: &str, body: &[u8]) -> Reply {
    let sep = if request.ends_with("\r\n") { "" } else { "\r\n" };
    let head = format!("{request}{sep}Host: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) and close before the whole body is sent.
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in reply to {request:?}: {head:?}"));
    Reply {
        status,
        head,
        body: buf.get(split + 4..).unwrap_or_default().to_vec(),
    }
}

fn auth(request: &str) -> String {
    format!("{request}\r\nAuthorization: Bearer {TOKEN}\r\n")
}

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(store: &kino_store::Store, config: WebConfig) -> Server {
        let listener = kino_web::listen::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(kino_web::serve_on(
            listener,
            config,
            store.clone(),
            common::engine(store),
            async move {
                let _ = rx.await;
            },
        ));
        Server {
            addr,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|tx| tx.send(()));
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("server stops within 15 s")
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_cleanly() {
    let db = TestDb::new(Backend::Sqlite);
    let store = db.open().await;
    let fx = Fixture::build(&store).await;
    let config = WebConfig {
        token: Some(TOKEN.into()),
        ..fx.config()
    };
    let srv = Server::start(&store, config).await;
    let a = srv.addr;

    // Oversized body and query string.
    let big = vec![b'a'; 1 << 20];
    let r = raw(
        a,
        &auth(&format!(
            "POST /api/ask HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
            big.len()
        )),
        &big,
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.head);
    let long_q = "x".repeat(10_000);
    let r = raw(a, &auth(&format!("GET /api/search?q={long_q} HTTP/1.1")), b"").await;
    assert_eq!(r.status, 414, "{}", r.head);
    // A request head far over any sane size is cut off, not buffered.
    let huge_header = format!("GET /healthz HTTP/1.1\r\nX-Pad: {}\r\n", "p".repeat(1 << 20));
    let r = raw(a, &huge_header, b"").await;
    assert_eq!(r.status, 431, "{}", r.head);

    // Path traversal, encoded every way: never a file outside the library.
    for path in [
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2fetc%2fpasswd",
        "/static/%252e%252e/etc/passwd",
        "/media/..%2f..%2f..%2fetc%2fpasswd",
        "/media/1/../../../etc/passwd",
        "/media/%2e%2e",
        "/thumbnails/..%5c..%5cetc%5cpasswd",
        "//etc/passwd",
        "/media/-1",
        "/media/99999999999999999999999",
        "/videos/1%00",
    ] {
        let r = raw(a, &auth(&format!("GET {path} HTTP/1.1")), b"").await;
        assert!((400..500).contains(&r.status), "{path}: {}", r.head);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("root:"),
            "{path} leaked a file"
        );
    }
    // The fixture's own traps: a symlink out of the library and a `..` path.
    for id in [fx.link_out, fx.outside, fx.dotdot] {
        let r = raw(a, &auth(&format!("GET /media/{id} HTTP/1.1")), b"").await;
        assert_eq!(r.status, 404, "media {id}: {}", r.head);
    }

    // Malformed and absurd ranges: 416 or the whole file, never a 5xx.
    let media = format!("GET /media/{} HTTP/1.1", fx.kitchen);
    let whole = raw(a, &auth(&media), b"").await;
    assert_eq!(whole.status, 200);
    let len = whole.body.len();
    let many: Vec<String> = (0..500).map(|i| format!("{i}-{i}")).collect();
    for range in [
        "bytes=abc".to_string(),
        "bytes=5-1".into(),
        "bytes=99999999999999-".into(),
        "bytes=-0".into(),
        "bytes=0-18446744073709551616".into(),
        "items=0-10".into(),
        format!("bytes={}", many.join(",")),
        format!("bytes={len}-"),
    ] {
        let r = raw(a, &auth(&format!("{media}\r\nRange: {range}")), b"").await;
        assert!(
            r.status == 416 || r.status == 200 || r.status == 206,
            "Range {range}: {}",
            r.head
        );
        if r.status == 206 {
            assert!(r.body.len() <= len, "Range {range}: more bytes than the file");
        }
    }
    let r = raw(a, &auth(&format!("{media}\r\nRange: bytes=10-19")), b"").await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, whole.body[10..20]);

    // Cross-site form posts are refused even with a valid session cookie;
    // the same post from kino's own page passes.
    let login = raw(
        a,
        &format!(
            "POST /login HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}",
            TOKEN.len() + 6
        ),
        format!("token={TOKEN}").as_bytes(),
    )
    .await;
    assert_eq!(login.status, 303, "{}", login.head);
    let session = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let body = r#"{"stale":true}"#;
    let post = |origin: &str| {
        format!(
            "POST /api/reindex HTTP/1.1\r\nCookie: {session}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{origin}",
            body.len()
        )
    };
    for hostile in [
        "Origin: http://evil.example\r\n",
        "Origin: null\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
    ] {
        let r = raw(a, &post(hostile.trim_end()), body.as_bytes()).await;
        assert_eq!(r.status, 403, "{hostile}: {}", r.head);
        assert!(String::from_utf8_lossy(&r.body).contains("cross-site"));
    }
    let own = raw(a, &post(&format!("Origin: http://{a}")), body.as_bytes()).await;
    assert!(own.status < 400, "same-origin post: {}", own.head);
    // A cross-site login post (login CSRF) is refused too.
    let r = raw(
        a,
        "POST /login HTTP/1.1\r\nOrigin: http://evil.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5",
        b"token",
    )
    .await;
    assert_eq!(r.status, 403);

    // Guessing tokens: ten wrong ones, then this address is refused for the
    // window, even with the right token; the server still answers others
    // (`/healthz` is open).
    for i in 0..kino_web::guard::MAX_FAILURES {
        let r = raw(
            a,
            &format!("GET /api/videos HTTP/1.1\r\nAuthorization: Bearer guess{i}\r\n"),
            b"",
        )
        .await;
        assert_eq!(r.status, 401, "guess {i}");
    }
    let r = raw(a, &auth("GET /api/videos HTTP/1.1"), b"").await;
    assert_eq!(r.status, 429, "{}", r.head);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    let r = raw(a, "GET /healthz HTTP/1.1\r\n", b"").await;
    assert_eq!(r.status, 200);

    srv.stop().await;
    db.finish(store).await;
}

/// 500 slowloris connections (a header line every two seconds, never ending
/// the head) and 2,000 idle ones, while a normal client makes 1,000
/// searches on fresh connections: its p99 stays under 200 ms, and the server
/// closes the attackers' connections after the header deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_idle_connections_do_not_starve_a_normal_client() {
    let db = TestDb::new(Backend::Sqlite);
    let store = db.open().await;
    let fx = Fixture::build(&store).await;
    let srv = Server::start(&store, fx.config()).await;
    let a = srv.addr;

    let started = Instant::now();
    let mut attackers = Vec::new();
    for i in 0..2500 {
        let slow = i < 500;
        attackers.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(a).await.expect("attacker connects");
            let opened = Instant::now();
            if slow {
                s.write_all(format!("GET /api/search?q=bread HTTP/1.1\r\nHost: {a}\r\n").as_bytes())
                    .await
                    .unwrap();
            }
            let mut byte = [0u8; 1];
            loop {
                // Closed by the server: read returns 0 (or the write fails).
                match tokio::time::timeout(Duration::from_secs(2), s.read(&mut byte)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Some(opened.elapsed()),
                    Ok(Ok(_)) => {}
                    Err(_) if opened.elapsed() > Duration::from_secs(30) => return None,
                    Err(_) => {
                        if slow && s.write_all(b"X-Slow: 1\r\n").await.is_err() {
                            return Some(opened.elapsed());
                        }
                    }
                }
            }
        }));
    }
    // Let the attack settle, then measure a normal client.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut lat = Vec::with_capacity(1000);
    for i in 0..1000 {
        let t = Instant::now();
        let q = ["bread", "cat", "oven", "bicycle"][i % 4];
        let r = raw(a, &format!("GET /api/search?q={q} HTTP/1.1\r\n"), b"").await;
        lat.push(t.elapsed());
        assert_eq!(r.status, 200, "request {i} under attack: {}", r.head);
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
    lat.sort();
    let p50 = lat[lat.len() / 2];
    let p99 = lat[lat.len() * 99 / 100];
    println!(
        "under attack (500 slowloris + 2000 idle): p50 {:.1} ms, p99 {:.1} ms over {} requests in {:.1} s",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        lat.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(p99 <= Duration::from_millis(200), "p99 {p99:?} under attack");

    let mut closed_after = Vec::new();
    let mut open = (0, 0);
    for (i, t) in attackers.into_iter().enumerate() {
        match t.await.unwrap() {
            Some(d) => closed_after.push(d),
            None if i < 500 => open.0 += 1,
            None => open.1 += 1,
        }
    }
    assert_eq!(open, (0, 0), "(slow, idle) attacking connections still open after 30 s");
    closed_after.sort();
    let last = closed_after[closed_after.len() - 1];
    println!(
        "attacking connections closed by the server after {:.1}–{:.1} s",
        closed_after[0].as_secs_f64(),
        last.as_secs_f64()
    );
    assert!(closed_after[0] >= kino_web::listen::HEADER_READ_TIMEOUT - Duration::from_secs(1));
    assert!(last <= kino_web::listen::HEADER_READ_TIMEOUT + Duration::from_secs(5));
    srv.stop().await;
    db.finish(store).await;
}

/// Token guessing from about 200 addresses, 16 guessers at a time as fast
/// as the server answers, while a normal client with the right token makes 1,000
/// searches: every guesser is refused (401, then 429 once it has used its ten
/// tries), and the normal client's p99 stays under 200 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guessing_is_refused_and_a_normal_client_stays_fast() {
    let db = TestDb::new(Backend::Sqlite);
    let store = db.open().await;
    let fx = Fixture::build(&store).await;
    let mut config = fx.config();
    config.token = Some(TOKEN.into());
    let srv = Server::start(&store, config).await;
    let a = srv.addr;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut guessers = Vec::new();
    for g in 0..16u32 {
        let stop = stop.clone();
        guessers.push(tokio::spawn(async move {
            // (guesses, 401s, 429s, anything else)
            let mut seen = (0u32, 0u32, 0u32, 0u32);
            let mut k = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Guesser g walks its own addresses 127.1.g.1..; 25 guesses
                // from each: ten 401s, then 429s.
                let n = k / 25;
                let from = std::net::Ipv4Addr::new(127, 1, g as u8, (n % 250) as u8 + 1);
                let r = raw_from(
                    from,
                    a,
                    &format!("GET /api/search?q=bread HTTP/1.1\r\nAuthorization: Bearer guess-{g}-{k}"),
                )
                .await;
                seen.0 += 1;
                match r.status {
                    401 if k % 25 < kino_web::guard::MAX_FAILURES => seen.1 += 1,
                    429 if k % 25 >= kino_web::guard::MAX_FAILURES => seen.2 += 1,
                    _ => seen.3 += 1,
                }
                k += 1;
                if n >= 12 {
                    // About 200 addresses at full speed (16 × 12), then
                    // slower, so no guesser wraps round to an address it
                    // has used (the 60 s window outlasts the test).
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut lat = Vec::with_capacity(1000);
    for i in 0..1000 {
        let t = Instant::now();
        let q = ["bread", "cat", "oven", "bicycle"][i % 4];
        let r = raw(a, &auth(&format!("GET /api/search?q={q} HTTP/1.1")), b"").await;
        lat.push(t.elapsed());
        assert_eq!(r.status, 200, "request {i} during token guessing: {}", r.head);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = (0, 0, 0, 0);
    for g in guessers {
        let s = g.await.unwrap();
        total = (total.0 + s.0, total.1 + s.1, total.2 + s.2, total.3 + s.3);
    }
    lat.sort();
    let p50 = lat[lat.len() / 2];
    let p99 = lat[lat.len() * 99 / 100];
    println!(
        "during token guessing ({} guesses: {} answered 401, {} answered 429): p50 {:.1} ms, p99 {:.1} ms over {} searches",
        total.0,
        total.1,
        total.2,
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        lat.len()
    );
    assert_eq!(
        total.3, 0,
        "every guess is 401 within its address's ten tries, 429 after"
    );
    assert!(total.2 > 0 && total.1 > 0);
    assert!(p99 <= Duration::from_millis(200), "p99 {p99:?} during token guessing");
    srv.stop().await;
    db.finish(store).await;
}
