//! The `local_files` connector: a directory tree, one entity per file.
//!
//! The entity id is the file's path relative to the root (`/`-separated);
//! the payload holds the path, size, modification time and, for UTF-8 text,
//! the content up to `max_content_bytes` (`truncated` says when it was cut).
//! The cursor is a modification time: files are emitted in (mtime, path)
//! order, so each batch's cursor (the last file's mtime) never passes a
//! file not yet emitted, and an incremental sync reads the files modified
//! at or after it (those at exactly the cursor again, unchanged by hash).
//!
//! The first batch lists the tree (metadata only, symlinks not followed);
//! contents are read batch by batch, so memory holds one batch of contents.
//! A file that vanishes before it is read is skipped (a full sync then
//! deletes it); one that cannot be read, or whose name is not UTF-8, counts
//! as failed. Incremental syncs do not see deletions; full syncs do. A file
//! whose mtime is set back into the past (e.g. `cp -p`) is seen by the next
//! full sync only.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use syncway_model::LocalFilesConfig;

use crate::{EntityBatch, Source, SourceEntity, SourceError, SyncStart};

#[derive(Debug, Clone)]
struct FileMeta {
    relative: String,
    path: PathBuf,
    modified: DateTime<Utc>,
    size: u64,
}

pub struct LocalFilesSource {
    config: LocalFilesConfig,
    since: Option<DateTime<Utc>>,
    /// The files still to emit, once listed.
    files: Option<std::vec::IntoIter<FileMeta>>,
    /// Entries the listing could not use.
    unlisted: u64,
}

impl LocalFilesSource {
    pub fn new(config: &LocalFilesConfig, start: &SyncStart) -> Result<Self, SourceError> {
        let since = match &start.cursor {
            None => None,
            Some(cursor) => Some(
                cursor
                    .as_str()
                    .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                    .map(|time| time.with_timezone(&Utc))
                    .ok_or_else(|| {
                        SourceError::Permanent(format!(
                            "stored cursor {cursor} is not a modification time; run a full sync"
                        ))
                    })?,
            ),
        };
        Ok(LocalFilesSource {
            config: config.clone(),
            since,
            files: None,
            unlisted: 0,
        })
    }
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Lists the files to emit, in (mtime, path) order.
fn list(
    config: &LocalFilesConfig,
    since: Option<DateTime<Utc>>,
) -> Result<(Vec<FileMeta>, u64), SourceError> {
    let root = Path::new(&config.path);
    match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(SourceError::Permanent(format!(
                "{} is not a directory",
                config.path
            )));
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(SourceError::Permanent(format!(
                "directory {} does not exist",
                config.path
            )));
        }
        Err(error) => {
            return Err(SourceError::Permanent(format!(
                "cannot read directory {}: {error}",
                config.path
            )));
        }
    }
    let matcher = config
        .matcher()
        .map_err(|error| SourceError::Permanent(error.to_string()))?;
    let mut files = Vec::new();
    let mut unlisted = 0;
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let Ok(entry) = entry else {
            unlisted += 1;
            continue;
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(root) else {
            unlisted += 1;
            continue;
        };
        let parts: Option<Vec<&str>> = relative
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect();
        let Some(parts) = parts else {
            // Not UTF-8: cannot be an entity id.
            unlisted += 1;
            continue;
        };
        let relative = parts.join("/");
        if matcher
            .as_ref()
            .is_some_and(|matcher| !matcher.is_match(&relative))
        {
            continue;
        }
        let Ok(meta) = entry.metadata() else {
            unlisted += 1;
            continue;
        };
        let modified: DateTime<Utc> = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH).into();
        if since.is_some_and(|since| modified < since) {
            continue;
        }
        files.push(FileMeta {
            relative,
            path: entry.path().to_path_buf(),
            modified,
            size: meta.len(),
        });
    }
    files.sort_by(|a, b| (a.modified, &a.relative).cmp(&(b.modified, &b.relative)));
    Ok((files, unlisted))
}

/// What reading one file came to.
enum FileRead {
    Payload(Value),
    Vanished,
    Failed,
}

fn read_file(file: &FileMeta, max: u64) -> FileRead {
    let mut handle = match std::fs::File::open(&file.path) {
        Ok(handle) => handle,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return FileRead::Vanished,
        Err(_) => return FileRead::Failed,
    };
    let mut bytes = Vec::new();
    // One byte more than kept tells whether the file was cut.
    if handle
        .by_ref()
        .take(max + 1)
        .read_to_end(&mut bytes)
        .is_err()
    {
        return FileRead::Failed;
    }
    let truncated = bytes.len() as u64 > max;
    bytes.truncate(max as usize);
    let content = match String::from_utf8(bytes) {
        Ok(text) => Some(text),
        // Cut inside a character: keep the whole characters.
        Err(error) if truncated && error.utf8_error().error_len().is_none() => {
            let valid = error.utf8_error().valid_up_to();
            let mut bytes = error.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).ok()
        }
        // Not text.
        Err(_) => None,
    };
    FileRead::Payload(json!({
        "path": file.relative,
        "size": file.size,
        "modified": rfc3339(file.modified),
        "content": content,
        "truncated": truncated,
    }))
}

fn read_batch(files: Vec<FileMeta>, max: u64, unlisted: u64) -> EntityBatch {
    let mut batch = EntityBatch {
        failed: unlisted,
        ..EntityBatch::default()
    };
    let mut last = None;
    for file in files {
        last = Some(file.modified);
        match read_file(&file, max) {
            FileRead::Payload(payload) => batch.entities.push(SourceEntity {
                id: file.relative,
                payload,
            }),
            FileRead::Vanished => {}
            FileRead::Failed => batch.failed += 1,
        }
    }
    batch.cursor = last.map(|time| Value::String(rfc3339(time)));
    batch
}

fn blocking_failed(error: tokio::task::JoinError) -> SourceError {
    SourceError::Transient {
        message: format!("reading files: {error}"),
        retry_after: None,
    }
}

impl Source for LocalFilesSource {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<EntityBatch>, SourceError>> {
        Box::pin(async move {
            if self.files.is_none() {
                let config = self.config.clone();
                let since = self.since;
                let (files, unlisted) = tokio::task::spawn_blocking(move || list(&config, since))
                    .await
                    .map_err(blocking_failed)??;
                self.files = Some(files.into_iter());
                self.unlisted = unlisted;
            }
            let Some(files) = self.files.as_mut() else {
                return Ok(None);
            };
            let take: Vec<FileMeta> = files
                .by_ref()
                .take(self.config.batch_size as usize)
                .collect();
            let unlisted = std::mem::take(&mut self.unlisted);
            if take.is_empty() && unlisted == 0 {
                return Ok(None);
            }
            let max = u64::from(self.config.max_content_bytes);
            let batch = tokio::task::spawn_blocking(move || read_batch(take, max, unlisted))
                .await
                .map_err(blocking_failed)?;
            Ok(Some(batch))
        })
    }
}
