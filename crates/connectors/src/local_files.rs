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
//! The path must resolve inside one of the operator's roots
//! (`connectors.local_files.roots`), checked again here at run time. A
//! symlink in the tree is followed only to a file inside the connection's
//! directory; one that leads out of it (or nowhere) counts as failed, with
//! the reason. Files are opened without following a final symlink, so a
//! file swapped for a link after the listing is not read through it.
//!
//! The first batch lists the tree (metadata only, symlinks not followed);
//! contents are read batch by batch, so memory holds one batch of contents.
//! A file that vanishes before it is read is skipped (a full sync then
//! deletes it); one that cannot be read, or whose name is not UTF-8, counts
//! as failed. Incremental syncs do not see deletions; full syncs do. A file
//! whose mtime is set back into the past (e.g. `cp -p`) is seen by the next
//! full sync only.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use syncway_model::LocalFilesConfig;

use crate::{EntityBatch, EntityFailure, Limits, Source, SourceEntity, SourceError, SyncStart};

#[derive(Debug, Clone)]
struct FileMeta {
    relative: String,
    path: PathBuf,
    modified: DateTime<Utc>,
    size: u64,
}

pub struct LocalFilesSource {
    config: LocalFilesConfig,
    /// The directory, canonical, checked against the roots.
    root: PathBuf,
    since: Option<DateTime<Utc>>,
    limits: Limits,
    /// The files still to emit, once listed.
    files: Option<std::vec::IntoIter<FileMeta>>,
    /// Entries the listing could not use, and why.
    unlisted: Vec<EntityFailure>,
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
        let root = start
            .policy
            .roots()
            .check(&config.path)
            .map_err(|denied| SourceError::denied(&denied))?;
        Ok(LocalFilesSource {
            config: config.clone(),
            root,
            since,
            limits: start.limits,
            files: None,
            unlisted: Vec::new(),
        })
    }
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Lists the files to emit, in (mtime, path) order, under the canonical
/// `root`.
fn list(
    config: &LocalFilesConfig,
    root: &Path,
    since: Option<DateTime<Utc>>,
) -> Result<(Vec<FileMeta>, Vec<EntityFailure>), SourceError> {
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
    let mut unlisted = Vec::new();
    let mut fail = |id: String, reason: &str| {
        unlisted.push(EntityFailure {
            entity_id: id,
            reason: reason.to_owned(),
        });
    };
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                let id = error
                    .path()
                    .and_then(|path| path.strip_prefix(root).ok())
                    .map(|path| path.to_string_lossy().into_owned())
                    .unwrap_or_default();
                fail(id, "cannot be listed");
                continue;
            }
        };
        let kind = entry.file_type();
        if !kind.is_file() && !kind.is_symlink() {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(root) else {
            fail(
                entry.path().to_string_lossy().into_owned(),
                "outside the directory",
            );
            continue;
        };
        let parts: Option<Vec<&str>> = relative
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect();
        let Some(parts) = parts else {
            // Not UTF-8: cannot be an entity id.
            fail(
                relative.to_string_lossy().into_owned(),
                "the file name is not UTF-8",
            );
            continue;
        };
        let relative = parts.join("/");
        if matcher
            .as_ref()
            .is_some_and(|matcher| !matcher.is_match(&relative))
        {
            continue;
        }
        // A symlink is read only when it leads to a file inside the
        // directory; the file is then read at its real path.
        let path = if kind.is_symlink() {
            match std::fs::canonicalize(entry.path()) {
                Ok(target) if !target.starts_with(root) => {
                    fail(relative, "a symlink that leads outside the directory");
                    continue;
                }
                Ok(target) if target.is_file() => target,
                // A link to a directory inside: its files are listed there.
                Ok(_) => continue,
                Err(_) => {
                    fail(relative, "a symlink that leads nowhere");
                    continue;
                }
            }
        } else {
            entry.path().to_path_buf()
        };
        let Ok(meta) = std::fs::metadata(&path) else {
            fail(relative, "its metadata cannot be read");
            continue;
        };
        let modified: DateTime<Utc> = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH).into();
        if since.is_some_and(|since| modified < since) {
            continue;
        }
        files.push(FileMeta {
            relative,
            path,
            modified,
            size: meta.len(),
        });
    }
    files.sort_by(|a, b| (a.modified, &a.relative).cmp(&(b.modified, &b.relative)));
    Ok((files, unlisted))
}

/// What reading one file came to.
enum FileRead {
    Payload(Value, usize),
    Vanished,
    Failed(&'static str),
}

fn read_file(file: &FileMeta, max: u64) -> FileRead {
    // O_NOFOLLOW: a file replaced by a symlink since the listing is refused
    // (ELOOP), not followed out of the directory.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&file.path);
    let mut handle = match opened {
        Ok(handle) => handle,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return FileRead::Vanished,
        Err(_) => return FileRead::Failed("cannot be opened"),
    };
    // Only regular files: a FIFO or device put in its place is not read.
    if !handle.metadata().is_ok_and(|meta| meta.is_file()) {
        return FileRead::Failed("not a regular file");
    }
    let mut bytes = Vec::new();
    // One byte more than kept tells whether the file was cut.
    if handle
        .by_ref()
        .take(max + 1)
        .read_to_end(&mut bytes)
        .is_err()
    {
        return FileRead::Failed("cannot be read");
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
    let kept = content.as_ref().map_or(0, String::len);
    FileRead::Payload(
        json!({
            "path": file.relative,
            "size": file.size,
            "modified": rfc3339(file.modified),
            "content": content,
            "truncated": truncated,
        }),
        kept,
    )
}

/// Reads files from `files` until the batch holds `batch_size` of them or
/// `max_bytes` of content.
fn read_batch(
    files: &mut std::vec::IntoIter<FileMeta>,
    batch_size: usize,
    max_content: u64,
    max_bytes: u64,
    unlisted: Vec<EntityFailure>,
) -> EntityBatch {
    let mut batch = EntityBatch::default();
    for failure in unlisted {
        batch.fail(failure.entity_id, failure.reason);
    }
    let mut last = None;
    let mut bytes = 0u64;
    for file in files.by_ref().take(batch_size) {
        last = Some(file.modified);
        match read_file(&file, max_content) {
            FileRead::Payload(payload, kept) => {
                bytes += kept as u64;
                batch.entities.push(SourceEntity {
                    id: file.relative,
                    payload,
                });
            }
            FileRead::Vanished => {}
            FileRead::Failed(reason) => batch.fail(file.relative, reason),
        }
        if bytes >= max_bytes {
            break;
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
                let root = self.root.clone();
                let since = self.since;
                let (files, unlisted) =
                    tokio::task::spawn_blocking(move || list(&config, &root, since))
                        .await
                        .map_err(blocking_failed)??;
                self.files = Some(files.into_iter());
                self.unlisted = unlisted;
            }
            let Some(mut files) = self.files.take() else {
                return Ok(None);
            };
            let unlisted = std::mem::take(&mut self.unlisted);
            if files.len() == 0 && unlisted.is_empty() {
                return Ok(None);
            }
            let batch_size = self.config.batch_size as usize;
            // The payload holds the content and a little metadata.
            let max_content = u64::from(self.config.max_content_bytes)
                .min(self.limits.max_entity_bytes.saturating_sub(1024));
            let max_bytes = self.limits.max_batch_bytes;
            let (files, batch) = tokio::task::spawn_blocking(move || {
                let batch = read_batch(&mut files, batch_size, max_content, max_bytes, unlisted);
                (files, batch)
            })
            .await
            .map_err(blocking_failed)?;
            self.files = Some(files);
            Ok(Some(batch))
        })
    }
}
