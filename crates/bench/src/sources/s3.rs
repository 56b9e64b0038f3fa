//! The `s3` source: moto's S3 server with `rows` objects of 1 KiB; its own
//! read rate is a LIST of the bucket and a GET of every object, eight at a
//! time (as the connector fetches).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use serde_json::json;

use super::Prepared;

const SIGNED: Duration = Duration::from_secs(3600);

pub struct Source {
    port: u16,
    server: Child,
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Source {
    pub async fn create(moto: &str, objects: u64) -> anyhow::Result<Self> {
        let port = syncway_testkit::free_port()?;
        let server = Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {moto} (scripts/test installs it)"))?;
        let endpoint = format!("http://127.0.0.1:{port}").parse()?;
        let bucket = Bucket::new(endpoint, UrlStyle::Path, "bench", "us-east-1")?;
        let source = Source {
            port,
            server,
            bucket,
            credentials: Credentials::new("bench", "bench"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while source
            .http
            .get(format!("http://127.0.0.1:{port}/moto-api/"))
            .send()
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("moto_server did not answer within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let url = source
            .bucket
            .create_bucket(&source.credentials)
            .sign(SIGNED);
        source
            .http
            .put(url)
            .header("content-length", "0")
            .send()
            .await?
            .error_for_status()?;
        let body = "x".repeat(1024);
        let puts = futures_util::stream::iter(0..objects)
            .map(|i| {
                let url = source
                    .bucket
                    .put_object(Some(&source.credentials), &format!("docs/{i:06}.txt"))
                    .sign(SIGNED);
                let request = source.http.put(url).body(body.clone()).send();
                async move { request.await?.error_for_status().map(|_| ()) }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        puts.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(source)
    }

    pub async fn prepare(&self) -> anyhow::Result<Prepared> {
        let started = Instant::now();
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            if let Some(token) = &token {
                action.with_continuation_token(token.as_str());
            }
            let body = self
                .http
                .get(action.sign(SIGNED))
                .send()
                .await?
                .text()
                .await?;
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&body)?;
            keys.extend(page.contents.into_iter().map(|object| object.key));
            match page.next_continuation_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        let fetched = futures_util::stream::iter(keys.iter())
            .map(|key| {
                let url = self
                    .bucket
                    .get_object(Some(&self.credentials), key)
                    .sign(SIGNED);
                let request = self.http.get(url).send();
                async move { request.await?.bytes().await.map(|body| body.len()) }
            })
            .buffered(8)
            .collect::<Vec<_>>()
            .await;
        let read = fetched
            .into_iter()
            .collect::<Result<Vec<usize>, _>>()?
            .len();
        let own_rate = read as f64 / started.elapsed().as_secs_f64();
        Ok(Prepared {
            short_name: "s3",
            config: json!({"bucket": "bench", "endpoint": format!("http://127.0.0.1:{}", self.port),
                           "force_path_style": true}),
            credentials: json!({"access_key_id": "bench", "secret_access_key": "bench"}),
            own_rate,
            own_read: "LIST + GET, 8 at a time",
        })
    }
}
