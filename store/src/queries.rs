//! Stored questions and answers, and the models table.

use sqlx::Row;

use crate::{now_ms, Feedback, ModelRecord, NewQuery, QueryRecord, Result, Store};

/// Inserts one query row; returns its id.
async fn insert_query(tx: &mut sqlx::Transaction<'static, sqlx::Any>, q: &NewQuery, now: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO queries (question, kind, latency_ms, model_version, created_ms) VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&q.question)
    .bind(&q.kind)
    .bind(q.latency_ms)
    .bind(&q.model_version)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}

impl Store {
    /// Records a question (or search) and, when given, its answer with
    /// citations, in one transaction. Returns the query id.
    pub async fn record_query(&self, q: &NewQuery, answer: Option<(&str, &serde_json::Value)>) -> Result<i64> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let id = insert_query(&mut tx, q, now).await?;
        if let Some((text, citations)) = answer {
            sqlx::query("INSERT INTO answers (query_id, answer, citations, created_ms) VALUES ($1, $2, $3, $4)")
                .bind(id)
                .bind(text)
                .bind(citations.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Records several searches (no answers) in one transaction, in order.
    /// Returns their ids. Many concurrent searches are written this way in
    /// one commit each batch instead of one commit each.
    pub async fn record_queries(&self, queries: &[NewQuery]) -> Result<Vec<i64>> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let mut ids = Vec::with_capacity(queries.len());
        for q in queries {
            ids.push(insert_query(&mut tx, q, now).await?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Recent questions with their answers, newest first.
    pub async fn recent_queries(&self, limit: i64) -> Result<Vec<QueryRecord>> {
        let rows = sqlx::query(
            "SELECT q.id, q.question, q.kind, q.latency_ms, q.model_version, q.created_ms, a.answer, a.citations \
             FROM queries q LEFT JOIN answers a ON a.query_id = q.id ORDER BY q.id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let citations: Option<String> = r.try_get("citations")?;
                Ok(QueryRecord {
                    id: r.try_get("id")?,
                    question: r.try_get("question")?,
                    kind: r.try_get("kind")?,
                    latency_ms: r.try_get("latency_ms")?,
                    model_version: r.try_get("model_version")?,
                    created_ms: r.try_get("created_ms")?,
                    answer: r.try_get("answer")?,
                    citations: citations
                        .and_then(|c| serde_json::from_str(&c).ok())
                        .unwrap_or(serde_json::Value::Array(vec![])),
                })
            })
            .collect()
    }

    /// Records (or updates) a model.
    pub async fn upsert_model(&self, m: &ModelRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO models (name, kind, version, checksum, source, path, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, version = excluded.version, checksum = excluded.checksum, \
             source = excluded.source, path = excluded.path, updated_ms = excluded.updated_ms",
        )
        .bind(&m.name)
        .bind(&m.kind)
        .bind(&m.version)
        .bind(&m.checksum)
        .bind(&m.source)
        .bind(&m.path)
        .bind(if m.updated_ms == 0 { now_ms() } else { m.updated_ms })
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a mark on a search result; returns its id.
    pub async fn record_feedback(&self, f: &Feedback) -> Result<i64> {
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO feedback (query, video_id, start_ms, end_ms, verdict, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&f.query)
        .bind(f.video_id)
        .bind(f.start_ms)
        .bind(f.end_ms)
        .bind(if f.right { 1i64 } else { -1 })
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Every mark, oldest first.
    pub async fn feedback(&self) -> Result<Vec<Feedback>> {
        let rows =
            sqlx::query("SELECT id, query, video_id, start_ms, end_ms, verdict, created_ms FROM feedback ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(Feedback {
                    id: r.try_get("id")?,
                    query: r.try_get("query")?,
                    video_id: r.try_get("video_id")?,
                    start_ms: r.try_get("start_ms")?,
                    end_ms: r.try_get("end_ms")?,
                    right: r.try_get::<i64, _>("verdict")? > 0,
                    created_ms: r.try_get("created_ms")?,
                })
            })
            .collect()
    }

    /// All recorded models, by name.
    pub async fn models(&self) -> Result<Vec<ModelRecord>> {
        let rows =
            sqlx::query("SELECT name, kind, version, checksum, source, path, updated_ms FROM models ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(ModelRecord {
                    name: r.try_get("name")?,
                    kind: r.try_get("kind")?,
                    version: r.try_get("version")?,
                    checksum: r.try_get("checksum")?,
                    source: r.try_get("source")?,
                    path: r.try_get("path")?,
                    updated_ms: r.try_get("updated_ms")?,
                })
            })
            .collect()
    }
}
