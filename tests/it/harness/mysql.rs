//! A MySQL/MariaDB database of the test's own, for `mysql` sources, on the
//! tests' server (`SYNCWAY_TEST_MYSQL_URL`, default root on
//! 127.0.0.1:3306; `scripts/setup test` makes a login where root has none
//! over TCP). Dropped on drop, even when the test panics.

use mysql_async::prelude::Queryable;
use uuid::Uuid;

const DEFAULT_MYSQL: &str = "mysql://root@127.0.0.1:3306";

fn server_url() -> url::Url {
    let configured = std::env::var("SYNCWAY_TEST_MYSQL_URL")
        .ok()
        .filter(|url| !url.trim().is_empty());
    let text = configured.as_deref().unwrap_or(DEFAULT_MYSQL);
    url::Url::parse(text.trim()).expect("SYNCWAY_TEST_MYSQL_URL is a mysql:// URL")
}

pub struct MysqlDb {
    pub name: String,
}

impl MysqlDb {
    pub async fn new() -> Self {
        let name = format!("syncway_test_{}", Uuid::new_v4().simple());
        let mut conn = admin().await;
        conn.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .expect("creating the MySQL source database");
        MysqlDb { name }
    }

    /// The database's URL, with the tests' login.
    pub fn url(&self) -> String {
        let mut url = server_url();
        url.set_path(&format!("/{}", self.name));
        url.to_string()
    }

    /// The URL with another password (the login's is refused).
    pub fn url_with_password(&self, password: &str) -> String {
        let mut url = url::Url::parse(&self.url()).expect("a URL");
        url.set_password(Some(password))
            .expect("a mysql URL takes a password");
        url.to_string()
    }

    pub async fn conn(&self) -> mysql_async::Conn {
        mysql_async::Conn::from_url(self.url())
            .await
            .expect("connecting to the MySQL source database")
    }

    /// Runs statements (`;`-separated, none containing one).
    pub async fn sql(&self, sql: &str) {
        let mut conn = self.conn().await;
        conn.query_drop(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        let _ = conn.disconnect().await;
    }
}

async fn admin() -> mysql_async::Conn {
    mysql_async::Conn::from_url(server_url().as_str())
        .await
        .expect("connecting to the tests' MySQL server (scripts/setup test starts it)")
}

impl Drop for MysqlDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let mut conn = admin().await;
                if let Err(error) = conn
                    .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                    .await
                {
                    eprintln!("could not drop MySQL test database {name}: {error}");
                }
                let _ = conn.disconnect().await;
            });
        });
        let _ = cleanup.join();
    }
}
