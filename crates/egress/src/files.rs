//! `local_files` roots: the directories a connection's path must resolve
//! inside. None configured means `local_files` is disabled. `/proc`, `/sys`
//! and `/dev` are never readable, whatever the roots say.

use std::path::{Component, Path, PathBuf};

use crate::{BadSetting, Denied};

/// Never a root, and never inside one.
const FORBIDDEN: &[&str] = &["/proc", "/sys", "/dev"];

/// The operator's roots, canonical where they exist.
#[derive(Debug, Clone, Default)]
pub struct Roots(Vec<PathBuf>);

impl Roots {
    pub fn new(roots: &[String]) -> Result<Roots, BadSetting> {
        let bad = |message: String| BadSetting {
            setting: "connectors.local_files.roots",
            message,
        };
        let mut kept = Vec::new();
        for root in roots
            .iter()
            .map(|root| root.trim())
            .filter(|r| !r.is_empty())
        {
            let path = Path::new(root);
            if !path.is_absolute() {
                return Err(bad(format!("{root:?} is not an absolute path")));
            }
            let path = std::fs::canonicalize(path).unwrap_or_else(|_| lexical(path));
            if forbidden(&path) || FORBIDDEN.iter().any(|f| Path::new(f).starts_with(&path)) {
                return Err(bad(format!(
                    "{root:?} cannot be a root: /proc, /sys and /dev are never readable"
                )));
            }
            kept.push(path);
        }
        Ok(Roots(kept))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The canonical form of `path` when it lies inside a root (symlinks
    /// and `..` resolved; a path that does not exist here is judged by its
    /// text, and the worker checks again where it reads).
    pub fn check(&self, path: &str) -> Result<PathBuf, Denied> {
        if self.0.is_empty() {
            return Err(Denied::Path(
                "local_files is disabled: an operator enables it by listing allowed \
                 directories in SYNCWAY_CONNECTORS__LOCAL_FILES__ROOTS"
                    .into(),
            ));
        }
        let given = Path::new(path);
        if !given.is_absolute() {
            return Err(Denied::Path(format!("{path} is not an absolute path")));
        }
        let resolved = std::fs::canonicalize(given).unwrap_or_else(|_| lexical(given));
        if !forbidden(&resolved) && self.0.iter().any(|root| resolved.starts_with(root)) {
            return Ok(resolved);
        }
        Err(Denied::Path(format!(
            "{path} is outside the directories local_files may read \
             (SYNCWAY_CONNECTORS__LOCAL_FILES__ROOTS)"
        )))
    }
}

fn forbidden(path: &Path) -> bool {
    FORBIDDEN.iter().any(|f| path.starts_with(f))
}

/// `path` with `.` and `..` resolved by its text alone.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(list: &[&str]) -> Result<Roots, BadSetting> {
        Roots::new(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn proc_sys_and_dev_are_never_roots() {
        for root in ["/proc", "/proc/self", "/sys/", "/dev", "/", "relative"] {
            assert!(roots(&[root]).is_err(), "{root}");
        }
    }

    #[test]
    fn no_roots_means_disabled() {
        let error = roots(&[])
            .expect("empty")
            .check("/tmp")
            .expect_err("disabled");
        assert!(error.to_string().contains("disabled"), "{error}");
    }

    #[test]
    fn paths_must_resolve_inside_a_root() {
        let base = std::env::temp_dir().join(format!("syncway-roots-{}", std::process::id()));
        let inside = base.join("data");
        std::fs::create_dir_all(&inside).expect("temp dir");
        let link = base.join("escape");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/etc", &link).expect("symlink");
        let roots = roots(&[inside.to_str().expect("utf-8")]).expect("roots");
        let text = |p: &Path| p.to_str().expect("utf-8").to_owned();
        assert!(roots.check(&text(&inside)).is_ok());
        assert!(roots.check(&text(&inside.join("missing/deeper"))).is_ok());
        for outside in [
            text(&base),
            text(&inside.join("..")),
            text(&inside.join("../escape")),
            text(&link),
            "/proc/self".to_owned(),
            "data".to_owned(),
        ] {
            assert!(roots.check(&outside).is_err(), "{outside}");
        }
        let _ = std::fs::remove_dir_all(&base);
    }
}
