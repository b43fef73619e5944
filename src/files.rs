//! File access for tools (`files`, `relevant_files`, `files_checked`, `images`, precommit's
//! `path`): every path is checked against the file roots (`EXAI_FILE_ROOTS`) before anything
//! is opened, and what is read per call is capped (`EXAI_FILE_MAX_BYTES`).
//!
//! The check is two-fold. First lexically: a relative path is taken relative to the first
//! root, `.` and `..` are folded, and the result must lie under a root — so a path outside
//! the roots is refused without even learning whether it exists. Then the path is
//! canonicalized (symlinks resolved, which stats but does not open it) and must still lie
//! under a canonical root, so a symlink inside a root that points outside is refused too.
//!
//! Directories expand to the text files beneath them, in name order, skipping `.git`,
//! binary files (a NUL byte in the first block) and entries whose target escapes the roots.
//! Reading is blocking file I/O, so callers run [`FileRoots::gather`] on a blocking thread.

use std::io::Read as _;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::GatewayError;

/// The setting that names the roots, quoted in every refusal.
pub const ROOTS_ENV: &str = "EXAI_FILE_ROOTS";
/// Default cap on the bytes read per call.
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
/// Files a directory may expand to, at most (bounds the walk, not just the bytes).
pub const MAX_DIRECTORY_FILES: usize = 2_000;
/// Deepest directory level walked below a named directory.
pub const MAX_DEPTH: usize = 32;
/// Bytes sniffed for a NUL byte to tell binary from text.
const SNIFF_BYTES: usize = 8 * 1024;
/// Directories never expanded.
const SKIPPED_DIRS: &[&str] = &[".git"];

/// The roots and the per-call cap. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FileRoots {
    /// Canonical root directories.
    roots: Arc<[PathBuf]>,
    /// Bytes readable per call.
    max_bytes: usize,
}

/// One file's text, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileText {
    /// The canonical path.
    pub path: PathBuf,
    /// Its text (lossy UTF-8), possibly cut at the budget.
    pub text: String,
    /// Whether the text was cut.
    pub truncated: bool,
}

/// What a call read: the files, and notes on what was skipped or cut.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gathered {
    /// Files in the order named (directories expanded in name order).
    pub files: Vec<FileText>,
    /// Human-readable notes for the prompt: skipped binaries, escapes, the cap.
    pub notes: Vec<String>,
    /// Bytes read in total.
    pub bytes: usize,
}

impl Gathered {
    /// The files as prompt text: one fenced block per file, then the notes.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.files {
            out.push_str(&format!(
                "--- BEGIN FILE: {} ---\n{}\n--- END FILE: {}{} ---\n",
                f.path.display(),
                f.text,
                f.path.display(),
                if f.truncated { " (cut)" } else { "" }
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("NOTE: {note}\n"));
        }
        out
    }
}

/// Set when the call that asked for the files is cancelled, so a blocking walk stops early.
#[derive(Debug, Clone, Default)]
pub struct Cancellation(Arc<AtomicBool>);

impl Cancellation {
    /// Marks the call cancelled.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the call was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl FileRoots {
    /// Roots from already-canonical directories (see [`FileRoots::canonical_roots`]).
    pub fn new(roots: Vec<PathBuf>, max_bytes: usize) -> Self {
        Self {
            roots: roots.into(),
            max_bytes: max_bytes.max(1),
        }
    }

    /// Canonicalizes configured roots; each must be an existing directory.
    pub fn canonical_roots(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            let canonical = p
                .canonicalize()
                .map_err(|e| format!("{}: {e}", p.display()))?;
            if !canonical.is_dir() {
                return Err(format!("{} is not a directory", p.display()));
            }
            out.push(canonical);
        }
        if out.is_empty() {
            return Err("at least one root is required".to_owned());
        }
        Ok(out)
    }

    /// The canonical roots.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Bytes readable per call.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The refusal for `raw` (an argument value) under `argument`.
    fn outside(&self, argument: &str, raw: &str) -> GatewayError {
        GatewayError::validation(
            argument,
            format!(
                "{raw:?} is outside the file roots; {ROOTS_ENV} allows only {}",
                self.roots_list()
            ),
        )
    }

    fn roots_list(&self) -> String {
        self.roots
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn under_roots(&self, path: &Path) -> bool {
        self.roots.iter().any(|root| path.starts_with(root))
    }

    /// Checks one path named by `argument` and returns it canonical. Nothing is opened: the
    /// lexical check comes first, then `canonicalize` (which resolves symlinks).
    pub fn check(&self, argument: &str, raw: &str) -> Result<PathBuf, GatewayError> {
        if raw.trim().is_empty() {
            return Err(GatewayError::validation(
                argument,
                "a path must not be empty",
            ));
        }
        if raw.contains('\0') {
            return Err(GatewayError::validation(
                argument,
                "a path must not contain NUL",
            ));
        }
        let given = Path::new(raw);
        let first = self.roots.first().cloned().unwrap_or_default();
        let joined = if given.is_absolute() {
            given.to_path_buf()
        } else {
            first.join(given)
        };
        let lexical = fold(&joined).ok_or_else(|| self.outside(argument, raw))?;
        if !self.under_roots(&lexical) {
            return Err(self.outside(argument, raw));
        }
        let canonical = lexical.canonicalize().map_err(|e| {
            GatewayError::validation(argument, format!("{raw:?} cannot be read: {e}"))
        })?;
        if !self.under_roots(&canonical) {
            return Err(self.outside(argument, raw));
        }
        Ok(canonical)
    }

    /// Checks every path of `argument` (nothing is read).
    pub fn check_all(&self, argument: &str, raws: &[String]) -> Result<(), GatewayError> {
        for raw in raws {
            self.check(argument, raw)?;
        }
        Ok(())
    }

    /// Reads the text of `paths` (files or directories) named by `argument`, within
    /// `budget` bytes. Every path is checked first; a refused path fails the whole call.
    pub fn gather(
        &self,
        argument: &str,
        paths: &[String],
        budget: usize,
        cancel: &Cancellation,
    ) -> Result<Gathered, GatewayError> {
        let mut checked = Vec::with_capacity(paths.len());
        for raw in paths {
            checked.push(self.check(argument, raw)?);
        }
        let mut out = Gathered::default();
        let mut seen = std::collections::HashSet::new();
        let mut cut = false;
        for path in checked {
            let mut files = Vec::new();
            if path.is_dir() {
                self.expand(&path, 0, &mut files, &mut out.notes, cancel);
            } else {
                files.push(path);
            }
            for file in files {
                if cancel.is_cancelled() {
                    return Err(GatewayError::ToolFailed("cancelled".to_owned()));
                }
                if !seen.insert(file.clone()) {
                    continue;
                }
                let remaining = budget.saturating_sub(out.bytes);
                if remaining == 0 {
                    cut = true;
                    out.notes.push(format!("{} not included", file.display()));
                    continue;
                }
                match read_text(&file, remaining) {
                    Ok(Some((text, truncated, bytes))) => {
                        out.bytes += bytes;
                        cut |= truncated;
                        out.files.push(FileText {
                            path: file,
                            text,
                            truncated,
                        });
                    }
                    Ok(None) => out
                        .notes
                        .push(format!("{} skipped: binary file", file.display())),
                    Err(e) => out.notes.push(format!("{} skipped: {e}", file.display())),
                }
            }
        }
        if cut {
            out.notes.push(format!(
                "file content was cut at {budget} bytes for this call (EXAI_FILE_MAX_BYTES)"
            ));
        }
        Ok(out)
    }

    /// The files under `dir`, in name order, within the walk bounds.
    fn expand(
        &self,
        dir: &Path,
        depth: usize,
        files: &mut Vec<PathBuf>,
        notes: &mut Vec<String>,
        cancel: &Cancellation,
    ) {
        if depth > MAX_DEPTH || files.len() >= MAX_DIRECTORY_FILES || cancel.is_cancelled() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            notes.push(format!("{} skipped: cannot list it", dir.display()));
            return;
        };
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for entry in entries {
            if files.len() >= MAX_DIRECTORY_FILES {
                notes.push(format!(
                    "{} expanded to its first {MAX_DIRECTORY_FILES} files",
                    dir.display()
                ));
                return;
            }
            let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if SKIPPED_DIRS.contains(&name) {
                continue;
            }
            // A symlink is followed only when its target stays under the roots.
            let Ok(target) = entry.canonicalize() else {
                continue;
            };
            if !self.under_roots(&target) {
                notes.push(format!(
                    "{} skipped: it resolves outside {ROOTS_ENV}",
                    entry.display()
                ));
                continue;
            }
            if target.is_dir() {
                self.expand(&target, depth + 1, files, notes, cancel);
            } else if target.is_file() {
                files.push(target);
            }
        }
    }

    /// Reads an image named by `argument` as a data URL, within `budget` bytes.
    pub fn image_data_url(
        &self,
        argument: &str,
        raw: &str,
        budget: usize,
    ) -> Result<(String, usize), GatewayError> {
        let path = self.check(argument, raw)?;
        let mime = image_mime(&path).ok_or_else(|| {
            GatewayError::validation(
                argument,
                format!("{raw:?} is not a png, jpeg, gif or webp image"),
            )
        })?;
        let len = std::fs::metadata(&path)
            .map_err(|e| GatewayError::validation(argument, format!("{raw:?}: {e}")))?
            .len();
        if usize::try_from(len).map_or(true, |l| l > budget) {
            return Err(GatewayError::validation(
                argument,
                format!(
                    "{raw:?} is {len} bytes, over what is left of this call's {} byte \
                     budget (EXAI_FILE_MAX_BYTES)",
                    self.max_bytes
                ),
            ));
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| GatewayError::validation(argument, format!("{raw:?}: {e}")))?;
        let n = bytes.len();
        Ok((format!("data:{mime};base64,{}", base64(&bytes)), n))
    }
}

/// Folds `.` and `..` of an absolute path; `None` when `..` climbs above the filesystem root.
fn fold(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Prefix(p) => out.push(p.as_os_str()),
            Component::RootDir => out.push(Component::RootDir.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Some(out)
}

/// A file's text within `limit` bytes: `None` when it looks binary; else the text, whether it
/// was cut, and the bytes read.
fn read_text(path: &Path, limit: usize) -> std::io::Result<Option<(String, bool, usize)>> {
    let file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(&mut buf)?;
    if buf[..buf.len().min(SNIFF_BYTES)].contains(&0) {
        return Ok(None);
    }
    let truncated = buf.len() > limit;
    buf.truncate(limit);
    let n = buf.len();
    Ok(Some((
        String::from_utf8_lossy(&buf).into_owned(),
        truncated,
        n,
    )))
}

/// The MIME type of an image, by extension.
fn image_mime(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

/// Standard base64 with padding (images are small and rare; not worth a dependency).
fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let at = |shift: u32| char::from(TABLE[((n >> shift) & 63) as usize]);
        out.push(at(18));
        out.push(at(12));
        out.push(if chunk.len() > 1 { at(6) } else { '=' });
        out.push(if chunk.len() > 2 { at(0) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn folds_and_encodes() {
        assert_eq!(
            fold(Path::new("/a/b/../c/./d")),
            Some(PathBuf::from("/a/c/d"))
        );
        assert_eq!(fold(Path::new("/..")), None);
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(b"hi!"), "aGkh");
        assert_eq!(base64(b"h"), "aA==");
    }

    #[test]
    fn checks_paths_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub/.git")).unwrap();
        std::fs::write(root.join("sub/a.txt"), "alpha").unwrap();
        std::fs::write(root.join("sub/.git/config"), "secret").unwrap();
        std::fs::write(root.join("sub/0.bin"), [0u8, 1, 2]).unwrap();
        std::fs::write(dir.path().join("outside.txt"), "nope").unwrap();
        let roots = FileRoots::new(
            FileRoots::canonical_roots(std::slice::from_ref(&root)).unwrap(),
            3,
        );
        assert!(roots.check("files", "../outside.txt").is_err());
        assert!(roots.check("files", "sub/a.txt").is_ok());
        let got = roots
            .gather("files", &["sub".into()], 3, &Cancellation::default())
            .unwrap();
        assert_eq!(got.files.len(), 1);
        assert_eq!(got.files[0].text, "alp");
        assert!(got.files[0].truncated);
        assert!(got.notes.iter().any(|n| n.contains("binary")));
        assert!(got.notes.iter().any(|n| n.contains("EXAI_FILE_MAX_BYTES")));
    }
}
