//! Login sessions of the web UI, kept in the database so that every
//! `kino serve` replica on one database serves every logged-in user.
//!
//! Only a hash of a session id is stored (the caller hashes); a leaked
//! database does not hand out sessions.

use crate::{now_ms, Result, Store};

impl Store {
    /// Records a session (by the hash of its id) valid for `ttl_ms`, and
    /// drops expired ones.
    pub async fn create_session(&self, id_hash: &str, ttl_ms: i64) -> Result<()> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM sessions WHERE expires_ms <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO sessions (id_hash, created_ms, expires_ms) VALUES ($1, $2, $3)")
            .bind(id_hash)
            .bind(now)
            .bind(now.saturating_add(ttl_ms))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// When the session with this id hash expires (Unix ms), if it exists
    /// and has not expired.
    pub async fn session_expiry(&self, id_hash: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT expires_ms FROM sessions WHERE id_hash = $1 AND expires_ms > $2")
                .bind(id_hash)
                .bind(now_ms())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Ends a session. Returns whether it existed.
    pub async fn delete_session(&self, id_hash: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
