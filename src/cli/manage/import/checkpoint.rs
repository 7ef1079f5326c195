//! Where an interrupted import of a file stopped: a small JSON file beside the input
//! (`FILE.keyward-progress`), written atomically as batches are answered and removed when the
//! import ends. Running the same command again skips the lines it covers; a file that changed
//! since (size or modification time) starts over, which imports nothing twice either.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Most refused lines kept (and printed) by one import; the rest are counted.
pub(super) const MAX_KEPT_REJECTIONS: usize = 10_000;

/// The totals of an import so far.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Totals {
    /// Every line up to this one (1-based) has been answered.
    pub(super) line: u64,
    pub(super) imported: u64,
    pub(super) already_present: u64,
    pub(super) rejected: u64,
    /// The first [`MAX_KEPT_REJECTIONS`] refused lines and why.
    pub(super) rejections: Vec<(u64, String)>,
}

impl Totals {
    /// Counts a refused line.
    pub(super) fn reject(&mut self, line: u64, why: String) {
        self.rejected += 1;
        if self.rejections.len() < MAX_KEPT_REJECTIONS {
            self.rejections.push((line, why));
        }
    }
}

/// The saved state of one file's import.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Saved {
    /// Size and modification time (ns since the epoch) of the file when it was read.
    file_len: u64,
    modified_ns: u128,
    totals: Totals,
}

/// The checkpoint of one input file.
pub(super) struct Checkpoint {
    path: PathBuf,
    file_len: u64,
    modified_ns: u128,
    /// Whether saving failed once already (warned about once, then the import goes on).
    failed: bool,
}

impl Checkpoint {
    /// The checkpoint of `file`, whose metadata is `meta`.
    pub(super) fn of(file: &Path, meta: &std::fs::Metadata) -> Checkpoint {
        let mut name = file.as_os_str().to_owned();
        name.push(".keyward-progress");
        Checkpoint {
            path: PathBuf::from(name),
            file_len: meta.len(),
            modified_ns: meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos()),
            failed: false,
        }
    }

    /// The totals of an earlier, interrupted import of this same file, if any. A checkpoint
    /// of a file that changed since, or that cannot be read, is not used.
    pub(super) fn load(&self) -> Result<Option<Totals>, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
        };
        let saved: Saved = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not an import checkpoint: {e}", self.path.display()))?;
        if saved.file_len != self.file_len || saved.modified_ns != self.modified_ns {
            return Err(format!(
                "the file changed since the interrupted import ({} is stale)",
                self.path.display()
            ));
        }
        Ok(Some(saved.totals))
    }

    /// Saves `totals` (write to a temporary file, then rename: never half written). A
    /// checkpoint that cannot be written is warned about once; the import goes on.
    pub(super) fn save(&mut self, totals: &Totals) {
        if self.failed {
            return;
        }
        let saved = Saved {
            file_len: self.file_len,
            modified_ns: self.modified_ns,
            totals: totals.clone(),
        };
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let written = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            self.failed = true;
            eprintln!(
                "warning: cannot save the import's progress to {} ({e}); an interrupted import \
                 will start over (importing nothing twice)",
                self.path.display()
            );
        }
    }

    /// Forgets the checkpoint once the import has ended.
    pub(super) fn remove(&self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("warning: cannot remove {}: {e}", self.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_used_only_for_the_same_file() {
        let dir = std::env::temp_dir().join(format!("kw-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("keys.jsonl");
        std::fs::write(&file, "{}\n{}\n").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let mut checkpoint = Checkpoint::of(&file, &meta);
        assert_eq!(checkpoint.load(), Ok(None));
        let mut totals = Totals {
            line: 2,
            imported: 1,
            ..Totals::default()
        };
        totals.reject(1, "sha256: bad".into());
        checkpoint.save(&totals);
        assert_eq!(Checkpoint::of(&file, &meta).load(), Ok(Some(totals)));

        std::fs::write(&file, "{}\n{}\n{}\n").unwrap();
        let changed = Checkpoint::of(&file, &std::fs::metadata(&file).unwrap());
        assert!(changed.load().unwrap_err().contains("changed"));
        changed.remove();
        assert_eq!(changed.load(), Ok(None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
