//! Local S3-compatible servers for `s3` sources, each on a free port of
//! its own, path-style, killed on drop: moto's server (`moto[server]` from
//! PyPI, which `scripts/test` installs into target/s3-venv;
//! `SYNCWAY_MOTO_SERVER` names another), which takes any credentials; and
//! s3rver (npm, into target/s3rver; `SYNCWAY_S3RVER`), which refuses a
//! presigned request whose access key is not its own, `S3RVER` (moto, asked
//! to check credentials, fails on presigned requests instead).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::{eventually, free_port};

fn binary() -> String {
    std::env::var("SYNCWAY_MOTO_SERVER").unwrap_or_else(|_| {
        format!(
            "{}/../target/s3-venv/bin/moto_server",
            env!("CARGO_MANIFEST_DIR")
        )
    })
}

pub struct S3Server {
    pub port: u16,
    process: Child,
    http: reqwest::Client,
    /// s3rver's directory, removed on drop.
    data: Option<std::path::PathBuf>,
}

impl S3Server {
    /// moto: takes any credentials.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// s3rver, with `bucket` made: it knows only the access key `S3RVER`.
    pub async fn start_checking_credentials(bucket: &str) -> Self {
        let binary = std::env::var("SYNCWAY_S3RVER").unwrap_or_else(|_| {
            format!(
                "{}/../target/s3rver/node_modules/.bin/s3rver",
                env!("CARGO_MANIFEST_DIR")
            )
        });
        let data =
            std::env::temp_dir().join(format!("syncway-s3rver-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data).expect("s3rver's directory");
        let port = free_port();
        let mut command = Command::new(binary);
        command.arg("-d").arg(&data).args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-s",
            "--configure-bucket",
            bucket,
        ]);
        Self::run(command, port, "/", Some(data)).await
    }

    async fn start_with(vars: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut command = Command::new(binary());
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        for (name, value) in vars {
            command.env(name, value);
        }
        Self::run(command, port, "/moto-api/", None).await
    }

    async fn run(
        mut command: Command,
        port: u16,
        probe: &str,
        data: Option<std::path::PathBuf>,
    ) -> Self {
        let process = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the S3 server (scripts/test installs it)");
        let server = S3Server {
            port,
            process,
            http: reqwest::Client::new(),
            data,
        };
        let url = format!("{}{probe}", server.endpoint());
        eventually("moto_server to answer", Duration::from_secs(30), || {
            let request = server.http.get(&url).send();
            async move { request.await.ok().map(|_| ()) }
        })
        .await;
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn credentials() -> Credentials {
        Credentials::new("test-key", "test-secret")
    }

    pub fn bucket(&self, name: &str) -> Bucket {
        let endpoint = self.endpoint().parse().expect("an endpoint URL");
        Bucket::new(endpoint, UrlStyle::Path, name.to_owned(), "us-east-1").expect("a bucket")
    }

    pub async fn create_bucket(&self, name: &str) -> Bucket {
        let bucket = self.bucket(name);
        let credentials = Self::credentials();
        let url = bucket
            .create_bucket(&credentials)
            .sign(Duration::from_secs(60));
        let answer = self
            .http
            .put(url)
            .header("content-length", "0")
            .send()
            .await
            .expect("creating a bucket");
        assert!(answer.status().is_success(), "{}", answer.status());
        bucket
    }

    pub async fn put(&self, bucket: &Bucket, key: &str, body: Vec<u8>, content_type: &str) {
        let credentials = Self::credentials();
        let url = bucket
            .put_object(Some(&credentials), key)
            .sign(Duration::from_secs(60));
        let answer = self
            .http
            .put(url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("putting an object");
        assert!(answer.status().is_success(), "{key}: {}", answer.status());
    }

    /// Puts many small text objects, sixteen at a time.
    pub async fn put_many(&self, bucket: &Bucket, keys: impl Iterator<Item = String>) {
        futures_util::stream::iter(keys)
            .map(|key| async move {
                let body = format!("content of {key}").into_bytes();
                self.put(bucket, &key, body, "text/plain").await;
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
    }

    pub async fn delete(&self, bucket: &Bucket, key: &str) {
        let credentials = Self::credentials();
        let url = bucket
            .delete_object(Some(&credentials), key)
            .sign(Duration::from_secs(60));
        let answer = self
            .http
            .delete(url)
            .send()
            .await
            .expect("deleting an object");
        assert!(answer.status().is_success(), "{key}: {}", answer.status());
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        if let Some(data) = &self.data {
            let _ = std::fs::remove_dir_all(data);
        }
    }
}
