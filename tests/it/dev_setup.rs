//! Setting up a machine for syncway: `scripts/database-access` against a
//! PostgreSQL cluster of the test's own (trust first, then asking for a
//! password as Debian's does), and `syncway dev` explaining a refused login
//! (against a server that speaks just enough of the protocol to refuse).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::{TestEnv, free_port};

/// A PostgreSQL cluster in a temporary directory, run as the `postgres`
/// system user when the tests run as root (initdb refuses root), else as
/// this user; its socket in that directory. Its superuser is `postgres`,
/// whom the system user it runs as may be over the socket (peer, mapped),
/// as on Debian.
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// The system user the cluster runs as.
    owner: String,
}

fn root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn checked(command: &mut Command, what: &str) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("running {what}: {error}"));
    assert!(
        output.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl Cluster {
    fn start(hba: &str) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries under /usr/lib/postgresql")
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("bin"))
            .find(|bin| bin.join("initdb").exists())
            .expect("initdb under /usr/lib/postgresql/*/bin");
        let dir = std::env::temp_dir().join(format!("syncway-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("the cluster's directory");
        let owner = if root() {
            checked(
                Command::new("chown").arg("postgres:postgres").arg(&dir),
                "chown",
            );
            "postgres".to_owned()
        } else {
            std::env::var("USER").expect("USER names this user")
        };
        let cluster = Cluster {
            dir,
            bin,
            port: free_port(),
            owner,
        };
        checked(
            cluster
                .as_owner(
                    "initdb",
                    &[
                        "--auth-local=peer",
                        "--auth-host=trust",
                        "-U",
                        "postgres",
                        "-D",
                    ],
                )
                .arg(cluster.data()),
            "initdb",
        );
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\n",
            cluster.port,
            cluster.dir.display()
        );
        std::fs::write(cluster.data().join("postgresql.auto.conf"), conf).expect("its settings");
        let ident = format!("owner {} postgres\n", cluster.owner);
        std::fs::write(cluster.data().join("pg_ident.conf"), ident).expect("pg_ident.conf");
        cluster.set_hba(hba);
        checked(
            cluster
                .as_owner("pg_ctl", &["-w", "-D"])
                .arg(cluster.data())
                .arg("-l")
                .arg(cluster.dir.join("log"))
                .arg("start"),
            "pg_ctl start",
        );
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_owner(&self, tool: &str, args: &[&str]) -> Command {
        let mut command = if root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]);
            command.arg(self.bin.join(tool));
            command
        } else {
            Command::new(self.bin.join(tool))
        };
        command.args(args);
        command
    }

    /// Replaces pg_hba.conf: the local socket by peer, TCP by `host_auth`.
    fn set_hba(&self, host_auth: &str) {
        let hba = format!("local all all peer map=owner\nhost all all 127.0.0.1/32 {host_auth}\n");
        std::fs::write(self.data().join("pg_hba.conf"), hba).expect("pg_hba.conf");
    }

    fn reload(&self) {
        checked(
            self.as_owner("pg_ctl", &["-D"])
                .arg(self.data())
                .arg("reload"),
            "pg_ctl reload",
        );
    }

    fn hba(&self) -> String {
        std::fs::read_to_string(self.data().join("pg_hba.conf")).expect("pg_hba.conf")
    }

    /// Runs scripts/database-access against this cluster, with `config`
    /// as the configuration directory.
    fn database_access(&self, config: &Path) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/database-access");
        Command::new(script)
            .env_remove("SYNCWAY_DATABASE__URL")
            .env("PGPORT", self.port.to_string())
            .env("PGHOST", &self.dir)
            .env("XDG_CONFIG_HOME", config)
            .env("PGUSER", "postgres")
            .stdin(Stdio::null())
            .output()
            .expect("running scripts/database-access")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .as_owner("pg_ctl", &["-w", "-m", "immediate", "-D"])
            .arg(self.data())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn logs_in(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

#[tokio::test]
async fn database_access_changes_nothing_under_trust_and_makes_a_role_where_a_password_is_asked() {
    let cluster = Cluster::start("trust");
    let config = std::env::temp_dir().join(format!("syncway-config-{}", uuid::Uuid::new_v4()));
    let url_file = config.join("syncway/database-url");

    // Trust: the default login works; nothing is written.
    let trusted = cluster.database_access(&config);
    assert!(trusted.status.success(), "{}", text(&trusted.stderr));
    assert_eq!(
        text(&trusted.stdout),
        format!("postgres://postgres@127.0.0.1:{}/syncway", cluster.port)
    );
    assert!(!url_file.exists());

    // Debian's way: TCP logins need a password.
    cluster.set_hba("scram-sha-256");
    cluster.reload();
    let hba = cluster.hba();
    let made = cluster.database_access(&config);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let url = text(&made.stdout);
    let parsed = url::Url::parse(&url).expect("a URL");
    assert_eq!(parsed.username(), "syncway");
    assert_eq!(parsed.port(), Some(cluster.port));
    let password = parsed.password().expect("a password").to_owned();
    assert!(password.len() >= 32 && password.chars().all(|c| c.is_ascii_alphanumeric()));
    // Kept for syncway dev and scripts/test, readable by its owner only.
    assert_eq!(text(&std::fs::read(&url_file).expect("the URL file")), url);
    let mode = std::fs::metadata(&url_file)
        .expect("its metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Said what it changed, and never printed the password there.
    let said = text(&made.stderr);
    assert!(
        said.contains("role syncway") && said.contains("pg_hba.conf"),
        "{said}"
    );
    assert!(!said.contains(&password), "{said}");
    // Nothing else changed: the same pg_hba.conf, and no login without a
    // password.
    assert_eq!(cluster.hba(), hba);
    let without = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    assert!(logs_in(&without).await.is_err());
    // The role logs in and may make databases, as the tests and dev do.
    let mut admin = parsed.clone();
    admin.set_path("/postgres");
    let client = logs_in(admin.as_str()).await.expect("the role logs in");
    for statement in [
        "CREATE DATABASE syncway_made_by_the_role",
        "DROP DATABASE syncway_made_by_the_role",
    ] {
        client
            .batch_execute(statement)
            .await
            .expect("the role may create and drop databases");
    }

    // Run again: the kept URL still logs in, and nothing changes.
    let again = cluster.database_access(&config);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), url);

    // The file lost: the role gets a new password, and the old one stops.
    std::fs::remove_file(&url_file).expect("removing the file");
    let renewed = cluster.database_access(&config);
    assert!(renewed.status.success(), "{}", text(&renewed.stderr));
    let new_url = text(&renewed.stdout);
    assert_ne!(new_url, url);
    assert!(logs_in(admin.as_str()).await.is_err());
    let _ = std::fs::remove_dir_all(&config);
}

/// What a Postgres server answers after the startup message.
#[derive(Clone, Copy)]
enum Refusal {
    /// Asks for a cleartext password (a URL without one cannot answer).
    AsksForPassword,
    /// Takes the password and refuses it (SQLSTATE 28P01).
    WrongPassword,
}

/// Serves one kind of refusal to every connection.
async fn refusing_server(refusal: Refusal) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let port = listener.local_addr().expect("its address").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                // SSLRequest or GSSENCRequest first, perhaps: "no".
                loop {
                    let Ok(length) = socket.read_i32().await else {
                        return;
                    };
                    let mut rest = vec![0; usize::try_from(length - 4).unwrap_or(0)];
                    if socket.read_exact(&mut rest).await.is_err() {
                        return;
                    }
                    let code = rest
                        .get(..4)
                        .map(|code| i32::from_be_bytes([code[0], code[1], code[2], code[3]]));
                    if matches!(code, Some(80_877_103 | 80_877_104)) {
                        let _ = socket.write_all(b"N").await;
                        continue;
                    }
                    break;
                }
                // AuthenticationCleartextPassword.
                let _ = socket.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await;
                if let Refusal::WrongPassword = refusal {
                    let mut kind = [0u8; 1];
                    if socket.read_exact(&mut kind).await.is_err() {
                        return;
                    }
                    let Ok(length) = socket.read_i32().await else {
                        return;
                    };
                    let mut password = vec![0; usize::try_from(length - 4).unwrap_or(0)];
                    let _ = socket.read_exact(&mut password).await;
                    let mut fields = Vec::new();
                    for (tag, value) in [
                        (b'S', "FATAL"),
                        (b'V', "FATAL"),
                        (b'C', "28P01"),
                        (b'M', "password authentication failed for user \"postgres\""),
                    ] {
                        fields.push(tag);
                        fields.extend_from_slice(value.as_bytes());
                        fields.push(0);
                    }
                    fields.push(0);
                    let mut message = vec![b'E'];
                    let length = i32::try_from(fields.len() + 4).expect("a short message");
                    message.extend_from_slice(&length.to_be_bytes());
                    message.extend_from_slice(&fields);
                    let _ = socket.write_all(&message).await;
                }
            });
        }
    });
    port
}

/// Runs `syncway dev` against `database_url` until it gives up.
async fn dev_against(env: &TestEnv, database_url: String) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_syncway-test-cli"));
    command
        .arg("dev")
        .env("SYNCWAY_DATABASE__URL", database_url)
        .env("SYNCWAY_AMQP__NAMESPACE", &env.namespace)
        .env("SYNCWAY_API__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env(
            "SYNCWAY_METRICS__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the thread")
        .expect("running syncway dev")
}

#[tokio::test]
async fn syncway_dev_explains_a_refused_login_without_showing_the_password() {
    let env = TestEnv::new().await;

    let port = refusing_server(Refusal::AsksForPassword).await;
    let out = dev_against(
        &env,
        format!("postgres://postgres@127.0.0.1:{port}/syncway"),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(
        said.contains(&format!("refused the login as postgres@127.0.0.1:{port}")),
        "{said}"
    );
    assert!(
        said.contains("asks for a password and the URL has none"),
        "{said}"
    );
    assert!(
        said.contains("scripts/dev") && said.contains("SYNCWAY_DATABASE__URL"),
        "{said}"
    );

    let port = refusing_server(Refusal::WrongPassword).await;
    let secret = "not-the-password-7f3a";
    let out = dev_against(
        &env,
        format!("postgres://postgres:{secret}@127.0.0.1:{port}/syncway"),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(said.contains("the password is wrong"), "{said}");
    assert!(
        !said.contains(secret) && !text(&out.stdout).contains(secret),
        "{said}"
    );
}
