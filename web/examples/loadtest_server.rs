//! Load-test server: seeds a SQLite store with N segments (default 10,000:
//! 100 videos × 100 segments of generated subtitle text with bag-of-words
//! embeddings) and serves kino's web app on loopback until killed.
//!
//! ```text
//! cargo run --release -p kino-web --example loadtest_server -- DB_FILE [SEGMENTS] [ADDR_FILE]
//! ```
//! The bound address (`127.0.0.1:PORT`) is printed and, when given, written to ADDR_FILE.
//! The query engine is the web tests' one (exact search over the store's
//! index); `scripts/bench.d/web.sh` drives it with `wrk`.

#[path = "../tests/common/mod.rs"]
mod common;

use kino_store::{NewVideo, Store};

const WORDS: &[&str] = &[
    "kitchen", "bread", "dough", "oven", "bicycle", "wall", "river", "bridge", "mountain", "snow", "train", "station",
    "city", "night", "music", "guitar", "piano", "dance", "market", "fish", "boat", "harbour", "storm", "rain", "sun",
    "garden", "flower", "tree", "forest", "wolf", "fox", "cat", "dog", "horse", "field", "tractor", "farmer", "school",
    "teacher", "lesson", "map", "island", "beach", "wave", "surfer", "castle", "king", "queen", "knight", "dragon",
    "robot", "rocket", "moon", "star", "planet", "engine", "car", "road", "tunnel", "light",
];

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let db = args
        .first()
        .ok_or_else(|| anyhow::anyhow!("usage: loadtest_server DB_FILE [SEGMENTS] [ADDR_FILE]"))?;
    let n: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(10_000);
    let store = Store::open(db).await?;
    let have = store.segment_count().await? as usize;
    if have < n {
        let per_video = 100;
        let mut seed: u64 = 42;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for v in 0..n.div_ceil(per_video) {
            let video = store
                .upsert_video(&NewVideo {
                    path: format!("/videos/load-{v:04}.mp4"),
                    size_bytes: 1,
                    ..Default::default()
                })
                .await?;
            let segs: Vec<_> = (0..per_video)
                .map(|i| {
                    let text = (0..8)
                        .map(|_| WORDS[next() % WORDS.len()])
                        .collect::<Vec<_>>()
                        .join(" ");
                    let start = i as i64 * 5000;
                    common::seg(
                        start,
                        start + 5000,
                        &text,
                        vec![WORDS[next() % WORDS.len()].to_string()],
                        None,
                    )
                })
                .collect();
            store.replace_segments(video.id, &segs, &common::versions()).await?;
        }
    }
    store.load_index().await?;
    let count = store.with_index(|i| i.len()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    eprintln!("loadtest_server: {count} segments indexed, listening on http://{addr}");
    if let Some(f) = args.get(2) {
        std::fs::write(f, addr.to_string())?;
    }
    println!("{addr}");
    let config = kino_web::WebConfig::default();
    kino_web::serve_on(listener, config, store.clone(), common::engine(&store), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
