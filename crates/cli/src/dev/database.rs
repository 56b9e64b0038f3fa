//! `syncway dev`'s database: the URL it uses when the user set none (the
//! one `scripts/dev` keeps in a local file), the database made when it is
//! missing, and a refused login explained with what to do about it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio_postgres::error::SqlState;

/// Where `scripts/dev` and `scripts/test` keep the database URL of the role
/// they made (`$XDG_CONFIG_HOME/syncway/database-url`, by default under
/// `~/.config`), when the local server asks for a password.
pub fn url_file() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(config.join("syncway").join("database-url"))
}

/// The URL in `file`, if it holds one.
pub fn read_url(file: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(file) {
        Ok(text) => {
            let url = text.trim();
            if url.is_empty() {
                return Ok(None);
            }
            url::Url::parse(url)
                .with_context(|| format!("{} holds no database URL", file.display()))?;
            Ok(Some(url.to_owned()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("reading {}", file.display())),
    }
}

/// `user@host:port` of a database URL: what to name in messages (never
/// the password).
fn who(url: &url::Url) -> String {
    let user = match url.username() {
        "" => "postgres",
        user => user,
    };
    format!(
        "{user}@{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    )
}

/// What to tell the user when the server refused the login, if it did.
pub fn refusal(error: &tokio_postgres::Error, url: &url::Url) -> Option<String> {
    let why = match error.code() {
        Some(code) if *code == SqlState::INVALID_PASSWORD => "the password is wrong".to_owned(),
        Some(code) if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
            // The server's own words: no such role, or no pg_hba.conf line.
            error.as_db_error().map_or_else(
                || "the login is not allowed".to_owned(),
                |db| db.message().to_owned(),
            )
        }
        None if std::error::Error::source(error)
            .is_some_and(|cause| cause.to_string().contains("password missing")) =>
        {
            "the server asks for a password and the URL has none (Debian's PostgreSQL \
             does on 127.0.0.1)"
                .to_owned()
        }
        _ => return None,
    };
    let file = url_file().map_or_else(
        || "~/.config/syncway/database-url".to_owned(),
        |file| file.display().to_string(),
    );
    Some(format!(
        "PostgreSQL refused the login as {}: {why}.\n\
         To fix it, either run scripts/dev from syncway's source tree as root (it makes a \
         PostgreSQL role `syncway` with a generated password, changes nothing else, and \
         keeps the role's URL in {file}, which syncway dev reads), or set \
         SYNCWAY_DATABASE__URL=postgres://USER:PASSWORD@HOST:5432/syncway for a role that \
         may create databases.",
        who(url)
    ))
}

/// Creates the database of `url` when it is missing.
pub async fn ensure(url: &str) -> anyhow::Result<()> {
    let mut admin = url::Url::parse(url).context("reading SYNCWAY_DATABASE__URL")?;
    let name = admin.path().trim_start_matches('/').to_owned();
    if name.is_empty() {
        bail!("SYNCWAY_DATABASE__URL names no database");
    }
    admin.set_path("/postgres");
    let (client, connection) =
        match tokio_postgres::connect(admin.as_str(), tokio_postgres::NoTls).await {
            Ok(connected) => connected,
            Err(error) => match refusal(&error, &admin) {
                Some(advice) => bail!(advice),
                None => {
                    return Err(error)
                        .with_context(|| format!("connecting to PostgreSQL as {}", who(&admin)));
                }
            },
        };
    let connection = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        client
            .batch_execute(&format!("CREATE DATABASE {quoted}"))
            .await
            .with_context(|| format!("creating the database {name}"))?;
        eprintln!("created the database {name}");
    }
    drop(client);
    let _ = connection.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_user_and_server_never_the_password() {
        let url =
            url::Url::parse("postgres://syncway:hunter2@127.0.0.1:5433/syncway").expect("a URL");
        assert_eq!(who(&url), "syncway@127.0.0.1:5433");
        let url = url::Url::parse("postgres://127.0.0.1/syncway").expect("a URL");
        assert_eq!(who(&url), "postgres@127.0.0.1:5432");
    }

    #[test]
    fn the_url_file_holds_one_url() {
        let dir = std::env::temp_dir().join(format!("syncway-url-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let file = dir.join("database-url");
        assert_eq!(read_url(&file).expect("no file is no URL"), None);
        std::fs::write(&file, "postgres://syncway:pw@127.0.0.1:5432/syncway\n").expect("write");
        assert_eq!(
            read_url(&file).expect("a URL").as_deref(),
            Some("postgres://syncway:pw@127.0.0.1:5432/syncway")
        );
        std::fs::write(&file, "not a url").expect("write");
        assert!(read_url(&file).is_err());
        std::fs::remove_dir_all(&dir).expect("cleaning up");
    }
}
