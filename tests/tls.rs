//! TLS against a real server: a sandbox with `ssl = on` and a certificate signed by a CA made in
//! the test (with openssl). verify-full succeeds with that CA and the right host name, fails with
//! another name or another CA; require works without a CA; an environment with `require_tls`
//! refuses a URL that does not insist on TLS. This binary runs its own cluster.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Migrations, pgdeck_cmd, run};
use pgdeck::db::{self, sandbox::Sandbox};

const PASSWORD: &str = "tls-test-pw-42";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a server certificate for `localhost` only, signed by it; plus an unrelated CA.
fn certificates(dir: &Path) {
    for ca in ["ca", "other_ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=pgdeck test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName = DNS:localhost\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
}

#[tokio::test]
async fn verify_full_checks_the_ca_and_the_host_name_and_require_tls_refuses_plain_urls() {
    let sandbox = Sandbox::start_temporary().unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    // The server's key and certificate go into its data directory, owned by whoever runs it.
    for f in ["server.crt", "server.key"] {
        let to = sandbox.data_dir().join(f);
        std::fs::copy(certs.path().join(f), &to).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
        if nix::unistd::geteuid().is_root() {
            let pg = nix::unistd::User::from_name("postgres").unwrap().unwrap();
            nix::unistd::chown(&to, Some(pg.uid), Some(pg.gid)).unwrap();
        }
    }
    let admin = db::connect(&sandbox.target("postgres")).await.unwrap();
    for sql in [
        "ALTER SYSTEM SET ssl = on".to_owned(),
        format!("ALTER ROLE postgres PASSWORD '{PASSWORD}'"),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        admin.client.batch_execute(&sql).await.unwrap();
    }
    // The reload is asynchronous: wait until the server offers TLS.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let on: String = admin
            .client
            .query_one("SHOW ssl", &[])
            .await
            .unwrap()
            .get(0);
        if on == "on" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "ssl did not turn on");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let m = Migrations::new();
    let ca = certs.path().join("ca.crt");
    let other = certs.path().join("other_ca.crt");
    let url = |host: &str, query: &str| {
        format!(
            "postgresql://postgres:{PASSWORD}@{host}:{}/postgres?{query}",
            sandbox.port()
        )
    };
    let status = |url: String| {
        let mut c = pgdeck_cmd();
        c.args(["--database-url", &url, "--migrations"])
            .arg(m.path())
            .arg("status");
        run(c)
    };

    let ok = status(url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    ));
    assert_eq!(ok.code, 0, "verify-full with the right CA and name: {ok:?}");

    let wrong_name = status(url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    ));
    wrong_name.assert_clean_error(1);
    assert!(!wrong_name.stderr.contains(PASSWORD));

    let wrong_ca = status(url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", other.display()),
    ));
    wrong_ca.assert_clean_error(1);

    let verify_ca = status(url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", ca.display()),
    ));
    assert_eq!(
        verify_ca.code, 0,
        "verify-ca does not check the name: {verify_ca:?}"
    );

    let require = status(url("127.0.0.1", "sslmode=require"));
    assert_eq!(
        require.code, 0,
        "require encrypts without verifying: {require:?}"
    );
    // The session really is encrypted.
    let session = db::connect(
        &pgdeck::target::DbTarget::from_url(
            &url("127.0.0.1", "sslmode=require"),
            &|_: &str| -> Option<String> { None },
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let encrypted: bool = session
        .client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted);

    // An environment that requires TLS refuses a URL that does not insist on it.
    let config = certs.path().join("pgdeck.toml");
    std::fs::write(
        &config,
        "[environments.prod]\ndatabase_url_env = \"PGDECK_TLS_URL\"\nrequire_tls = true\n",
    )
    .unwrap();
    for query in ["sslmode=disable", "sslmode=prefer", ""] {
        let mut c = pgdeck_cmd();
        c.arg("--config")
            .arg(&config)
            .args(["--env", "prod", "status"])
            .env("PGDECK_TLS_URL", url("localhost", query));
        let r = run(c);
        r.assert_clean_error(2);
        assert!(r.stderr.contains("requires TLS"), "{query}: {}", r.stderr);
    }
    let mut c = pgdeck_cmd();
    c.arg("--config")
        .arg(&config)
        .args(["--env", "prod", "--migrations"])
        .arg(m.path())
        .arg("status")
        .env(
            "PGDECK_TLS_URL",
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
            ),
        );
    let r = run(c);
    assert_eq!(r.code, 0, "{r:?}");
}
