//! The `kino` binary's foundation: `db migrate` on Postgres and SQLite,
//! bad URLs, configuration precedence, exit codes.

mod common;

use common::pg_base;

use std::process::Command;

fn kino() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kino"));
    c.env_remove("KINO_DATABASE_URL")
        .env_remove("KINO_HOME")
        .env_remove("KINO_MODELS");
    c
}

fn psql(sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-tAc", sql])
        .output()
        .expect("psql runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn db_migrate_on_postgres_creates_and_migrates_the_database() {
    let name = format!("kino_cli_test_{}", std::process::id());
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    let url = format!("{}/{name}", pg_base());
    let out = kino().args(["db", "migrate", "--db", &url]).output().unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("schema version 7"));
    let tables = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", &name, "-tAc"])
        .arg("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'")
        .output()
        .unwrap();
    let tables = String::from_utf8_lossy(&tables.stdout).to_string();
    for t in [
        "answers",
        "cues",
        "document_windows",
        "documents",
        "index_changes",
        "index_generation",
        "jobs",
        "models",
        "queries",
        "segments",
        "sessions",
        "videos",
    ] {
        assert!(tables.contains(t), "table {t} missing from {tables}");
    }
    // Running it again is a no-op.
    let again = kino().args(["db", "migrate", "--db", &url]).output().unwrap();
    assert!(again.status.success());
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

#[test]
fn db_migrate_on_a_sqlite_path_and_through_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub/kino.db");
    let out = kino().args(["db", "migrate", "--db"]).arg(&db).output().unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(db.exists());
    // Environment variable, and the default under --home.
    let db2 = dir.path().join("env.db");
    let out = kino()
        .args(["db", "migrate"])
        .env("KINO_DATABASE_URL", &db2)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(db2.exists());
    let home = dir.path().join("home");
    let out = kino().args(["db", "migrate", "--home"]).arg(&home).output().unwrap();
    assert!(out.status.success());
    assert!(home.join("kino.db").exists());
}

#[test]
fn flags_beat_environment_beat_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let from_file = dir.path().join("file.db");
    std::fs::write(home.join("kino.toml"), format!("db = \"{}\"\n", from_file.display())).unwrap();
    // Config file only.
    assert!(kino()
        .args(["db", "migrate", "--home"])
        .arg(&home)
        .status()
        .unwrap()
        .success());
    assert!(from_file.exists());
    // Environment beats the file.
    let from_env = dir.path().join("env.db");
    assert!(kino()
        .args(["db", "migrate", "--home"])
        .arg(&home)
        .env("KINO_DATABASE_URL", &from_env)
        .status()
        .unwrap()
        .success());
    assert!(from_env.exists());
    // The flag beats both.
    let from_flag = dir.path().join("flag.db");
    assert!(kino()
        .args(["db", "migrate", "--home"])
        .arg(&home)
        .env("KINO_DATABASE_URL", &from_env)
        .arg("--db")
        .arg(&from_flag)
        .status()
        .unwrap()
        .success());
    assert!(from_flag.exists());
    // A broken config file is bad input, named.
    std::fs::write(home.join("kino.toml"), "db = [1, 2\n").unwrap();
    let out = kino().args(["db", "migrate", "--home"]).arg(&home).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kino.toml"));
}

#[test]
fn bad_database_urls_exit_2_with_one_line() {
    for url in ["mysql://root@localhost/kino", "postgres://127.0.0.1", "redis:thing"] {
        let out = kino().args(["db", "migrate", "--db", url]).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "one line for {url}: {err}");
        assert!(err.contains("bad database URL"), "{err}");
    }
}

#[test]
fn unreachable_postgres_exits_1() {
    let out = kino()
        .args(["db", "migrate", "--db", "postgres://postgres@127.0.0.1:1/kino"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open database"));
}

#[test]
fn help_documents_configuration() {
    let out = kino().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "KINO_HOME",
        "KINO_DATABASE_URL",
        "KINO_MODELS",
        "--log-format",
        "serve",
        "ingest",
        "reindex",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}
