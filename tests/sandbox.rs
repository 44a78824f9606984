//! Throwaway clusters: they start, accept connections on the socket in their data directory, and
//! are stopped and removed when dropped.

use pgdeck::db::{self, sandbox::Sandbox};

#[tokio::test]
async fn a_temporary_sandbox_is_stopped_and_removed_on_drop() {
    let sandbox = Sandbox::start_temporary().unwrap_or_else(|e| {
        panic!(
            "integration tests need PostgreSQL: {}\nhint: {}",
            e.cause, e.hint
        )
    });
    let dir = sandbox.data_dir().to_owned();
    let port = sandbox.port();
    assert!(
        dir.join(format!(".s.PGSQL.{port}")).exists(),
        "socket inside the data dir"
    );
    let session = db::connect(&sandbox.target("postgres")).await.unwrap();
    let user: String = session
        .client
        .query_one("SELECT current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "postgres");
    drop(session);

    let target = sandbox.target("postgres");
    drop(sandbox);
    assert!(!dir.exists(), "data directory removed");
    let err = match db::connect(&target).await {
        Ok(_) => panic!("the server still accepts connections after drop"),
        Err(e) => e,
    };
    assert!(err.cause.contains("cannot connect"), "{}", err.cause);
}
