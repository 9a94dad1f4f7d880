//! The compiled-code cache on disk: a plugin's component compiled to native
//! code once, kept in `<plugins>/.cache`, loaded instead of compiling again
//! (a Python component compiles for ~10 s and loads in well under a
//! second).
//!
//! A cache entry is native code that is mapped and run without further
//! checks, so what is loaded must be exactly what this program wrote:
//!
//! - the directory is opened once per load and checked through that open
//!   descriptor: owned by the effective user and writable by no one else.
//!   Any other directory is not used at all (a warning says why; plugins
//!   are then compiled on every load);
//! - an entry is opened relative to that descriptor, checked on its own
//!   open descriptor (a regular file, ours, writable by no one else), and
//!   read from it: nothing is looked up by path twice, so there is no
//!   window in which the file could be swapped between check and load;
//! - an entry starts with the SHA-256 of the component it was compiled
//!   from and the SHA-256 of the compiled code; both are verified on the
//!   bytes read before wasmtime sees them, so a corrupted entry, or another
//!   plugin's entry put in its place, is compiled afresh, never loaded.
//!
//! The file name holds the component's hash and the engine's compatibility
//! hash, so an entry of another wasmtime version or configuration is never
//! even opened.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt, OpenOptionsExt as _};
use std::path::Path;

use cap_std::fs::{Dir, OpenOptionsExt as _};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The start of every entry: a format tag, then two SHA-256 digests.
const MAGIC: &[u8; 16] = b"cojobs-cwasm-v1\n";
const HEADER_LEN: usize = MAGIC.len() + 32 + 32;

/// The cache directory of one load, checked.
pub(super) struct Cache {
    dir: Dir,
    /// For messages.
    path: std::path::PathBuf,
}

/// This process's effective user id.
fn euid() -> u32 {
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid()
    }
}

/// Why a directory or file is not one this program may trust: `None` if it
/// is owned by the effective user and writable by no one else.
fn untrusted(m: &std::fs::Metadata) -> Option<String> {
    let me = euid();
    if m.uid() != me {
        return Some(format!(
            "it is owned by uid {}, not by this user (uid {me})",
            m.uid()
        ));
    }
    if m.mode() & 0o022 != 0 {
        return Some(format!(
            "it is writable by group or others (mode {:o})",
            m.mode() & 0o7777
        ));
    }
    None
}

impl Cache {
    /// Open (creating it, mode 0700, if missing) and check the cache
    /// directory. `None`, with a warning saying why, when it cannot be
    /// used.
    pub(super) fn open(path: &Path) -> Option<Cache> {
        let refuse = |why: String| {
            tracing::warn!(
                "not using the compiled-code cache {}: {why}; plugins are compiled on every load \
                 (make it the runner's own, mode 0700, or remove it)",
                path.display()
            );
            None
        };
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
        {
            return refuse(format!("cannot create it: {e}"));
        }
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)
        {
            Ok(f) => f,
            Err(e) => return refuse(format!("cannot open it: {e}")),
        };
        match file.metadata() {
            Err(e) => return refuse(format!("cannot read its metadata: {e}")),
            Ok(m) => {
                if let Some(why) = untrusted(&m) {
                    return refuse(why);
                }
            }
        }
        Some(Cache {
            dir: Dir::from_std_file(file),
            path: path.to_path_buf(),
        })
    }

    /// The compiled `component_bytes` (whose SHA-256 is `digest`) from the
    /// cache, if a sound entry named `name` is there. A missing entry is
    /// `None`; an unusable one is `None` with a warning.
    pub(super) fn load(&self, engine: &Engine, name: &str, digest: &[u8]) -> Option<Component> {
        let bytes = match self.read_entry(name) {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(why) => {
                tracing::warn!(
                    "ignoring compiled-code cache entry {}: {why}; compiling the plugin again",
                    self.path.join(name).display()
                );
                return None;
            }
        };
        let code = match verified_code(&bytes, digest) {
            Ok(code) => code,
            Err(why) => {
                tracing::warn!(
                    "ignoring compiled-code cache entry {}: {why}; compiling the plugin again",
                    self.path.join(name).display()
                );
                return None;
            }
        };
        // SAFETY: `code` is exactly what `store` wrote from
        // `Component::serialize` of this very component (its digest and the
        // code's own digest are checked above), read through one descriptor
        // of a file owned by this user and writable by no one else, in a
        // directory of the same kind; the engine's compatibility hash is in
        // the file name, and wasmtime checks its header again.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, code) };
        match loaded {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(
                    "ignoring compiled-code cache entry {}: {e:#}; compiling the plugin again",
                    self.path.join(name).display()
                );
                None
            }
        }
    }

    /// The entry's bytes, read through the descriptor its checks were made
    /// on. `Ok(None)` if there is no entry.
    fn read_entry(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        let file = match self.dir.open(name) {
            Ok(f) => f.into_std(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open it: {e}")),
        };
        let meta = file.metadata().map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("it is not a regular file".into());
        }
        if let Some(why) = untrusted(&meta) {
            return Err(why);
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        (&file)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read it: {e}"))?;
        Ok(Some(bytes))
    }

    /// Write `component` (compiled from bytes whose SHA-256 is `digest`) as
    /// the entry `name`, then remove older entries of the same plugin (their
    /// names start with `prefix`). A failure is a warning: the plugin runs
    /// anyway.
    pub(super) fn store(&self, name: &str, prefix: &str, digest: &[u8], component: &Component) {
        match self.write_entry(name, digest, component) {
            Ok(()) => self.remove_older(name, prefix),
            Err(e) => tracing::warn!(
                "could not write the compiled-code cache entry {}: {e}",
                self.path.join(name).display()
            ),
        }
    }

    /// Write the entry: a temporary file (mode 0600) renamed into place.
    fn write_entry(&self, name: &str, digest: &[u8], component: &Component) -> std::io::Result<()> {
        let code = component.serialize().map_err(std::io::Error::other)?;
        let tmp = format!(".tmp-{}-{name}", std::process::id());
        let mut file = self.dir.open_with(
            &tmp,
            cap_std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600),
        )?;
        let written = (|| {
            file.write_all(MAGIC)?;
            file.write_all(digest)?;
            file.write_all(&Sha256::digest(&code))?;
            file.write_all(&code)?;
            file.sync_all()?;
            self.dir.rename(&tmp, &self.dir, name)
        })();
        if written.is_err() {
            let _ = self.dir.remove_file(&tmp);
        }
        written
    }

    /// Remove this plugin's other entries: `<prefix><32 hex>-<16 hex>.cwasm`
    /// (another plugin's name could share the prefix only with a hex
    /// segment in the same place).
    fn remove_older(&self, keep: &str, prefix: &str) {
        let Ok(entries) = self.dir.entries() else {
            return;
        };
        for entry in entries.flatten() {
            let n = entry.file_name();
            let n = n.to_string_lossy();
            if n != keep
                && n.ends_with(".cwasm")
                && n.strip_prefix(prefix)
                    .is_some_and(|rest| rest.len() == 32 + 1 + 16 + 6)
            {
                let _ = self.dir.remove_file(n.as_ref());
            }
        }
    }
}

/// The compiled code of an entry, if it is sound: our format, compiled
/// from the component whose SHA-256 is `digest`, and the code unchanged
/// since it was written.
fn verified_code<'a>(bytes: &'a [u8], digest: &[u8]) -> Result<&'a [u8], String> {
    let (header, code) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or("it is too short to be a cache entry")?;
    let (magic, digests) = header.split_at(MAGIC.len());
    let (source, code_digest) = digests.split_at(32);
    if magic != MAGIC {
        return Err("it is not a cache entry of this program".into());
    }
    if source != digest {
        return Err("it was compiled from another component".into());
    }
    if code_digest != Sha256::digest(code).as_slice() {
        return Err("its contents changed after it was written (corrupted?)".into());
    }
    Ok(code)
}

/// The engine's compatibility hash as text: compiled code from another
/// wasmtime version or configuration is never loaded.
pub(super) fn engine_key(engine: &Engine) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(digest: &[u8], code: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(digest);
        v.extend_from_slice(&Sha256::digest(code));
        v.extend_from_slice(code);
        v
    }

    #[test]
    fn a_sound_entry_gives_its_code() {
        let digest = Sha256::digest(b"component");
        let e = entry(&digest, b"native code");
        assert_eq!(verified_code(&e, &digest), Ok(&b"native code"[..]));
    }

    #[test]
    fn corrupted_swapped_or_short_entries_are_refused() {
        let digest = Sha256::digest(b"component");
        let mut e = entry(&digest, b"native code");
        let last = e.len() - 1;
        e[last] ^= 1;
        assert!(verified_code(&e, &digest).is_err(), "corrupted code");
        let other = entry(&Sha256::digest(b"another"), b"native code");
        assert!(verified_code(&other, &digest).is_err(), "another's entry");
        assert!(verified_code(&e[..10], &digest).is_err(), "short");
        let mut bad_magic = entry(&digest, b"x");
        bad_magic[0] = b'X';
        assert!(verified_code(&bad_magic, &digest).is_err(), "magic");
    }

    #[test]
    fn a_world_writable_directory_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join(".cache");
        assert!(Cache::open(&cache).is_some(), "created, ours, 0700");
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(Cache::open(&cache).is_none());
    }
}
