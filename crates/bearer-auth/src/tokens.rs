//! The server's tokens: parsing the `MCP_BEARER_TOKEN` syntax, the digest table that looks a
//! presented token up in constant time, and the token file that is re-read while serving.
//!
//! # Why keyed digests
//!
//! The presented token is digested with SipHash-2-4-128 under a random per-table key
//! ([`crate::mac`]; time depends on its length only). The low eight bytes of the digest select at
//! most one entry in a `HashMap`, and the full 16-byte digests are then compared in constant
//! time; a miss is compared against a digest that cannot match, so both paths do the same work.
//! The cost is flat in the number of tokens and does not depend on which token matched or on the
//! presented token's bytes. Without the key a client can neither aim at a bucket nor find a token
//! that shares another's digest. Only digests are kept: the configured secrets are dropped once
//! digested.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};
use std::task::Context;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tower_armor_mcp::signal::{Signal, SignalWait};
use tower_armor_mcp::{Principal, Secret};

use crate::error::ConfigError;
use crate::mac::{MacKey, ct_eq};
use crate::parse::check_token68;

/// The principal of a token configured without a `name:` prefix.
pub const DEFAULT_PRINCIPAL: &str = "default";

/// The longest principal name accepted in token specs.
pub(crate) const MAX_PRINCIPAL_LEN: usize = 64;

/// The largest token file read (64 KiB).
pub const MAX_TOKEN_FILE_BYTES: usize = 64 << 10;

/// Checks a principal name as token specs and `MCP_TOOL_ALLOW` take it: 1–64 characters of
/// `[A-Za-z0-9._@-]`, so it is safe to log. The error says what is wrong, never the name.
///
/// ```
/// use tower_armor_bearer_auth::check_principal;
/// assert!(check_principal("ops.alice@example").is_ok());
/// assert!(check_principal("").is_err() && check_principal("bob alice").is_err());
/// ```
pub fn check_principal(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty principal name");
    }
    if name.len() > MAX_PRINCIPAL_LEN {
        return Err("principal name longer than 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
    {
        return Err("principal name has a character outside [A-Za-z0-9._@-]");
    }
    Ok(())
}

/// Parses a token spec: entries separated by commas or newlines, each `token` or `name:token`,
/// blanks around entries and blank lines ignored. An empty entry between commas (`a:x,,b:y`, a
/// trailing comma) is an error, as in the other list settings: it is most likely a token that
/// went missing. Errors name `setting` and the entry's position, never its content.
pub(crate) fn parse_spec(
    spec: &str,
    setting: &'static str,
) -> Result<Vec<(Principal, Secret)>, ConfigError> {
    let mut out = Vec::new();
    let lines = spec
        .split(['\n', '\r'])
        .filter(|l| !l.trim_ascii().is_empty());
    for (i, entry) in lines.flat_map(|l| l.split(',')).enumerate() {
        let n = i + 1;
        let entry = entry.trim_ascii();
        if entry.is_empty() {
            return Err(ConfigError::new(
                setting,
                format!("entry {n}: empty (two commas in a row, or a comma at an end)"),
            ));
        }
        let (name, token) = match entry.split_once(':') {
            Some((name, token)) => (name.trim_ascii(), token.trim_ascii()),
            None => (DEFAULT_PRINCIPAL, entry),
        };
        check_principal(name).map_err(|e| ConfigError::new(setting, format!("entry {n}: {e}")))?;
        check_token(token.as_bytes())
            .map_err(|e| ConfigError::new(setting, format!("entry {n}: {e}")))?;
        out.push((Principal::new(name), Secret::new(token)));
    }
    if out.is_empty() {
        return Err(ConfigError::new(setting, "no token"));
    }
    Ok(out)
}

/// Checks that a configured token can ever match: non-empty `token68` (what a client can send
/// after `Bearer `).
pub(crate) fn check_token(token: &[u8]) -> Result<(), &'static str> {
    if token.is_empty() {
        return Err("empty token");
    }
    check_token68(token)
        .map_err(|_| "token has a character outside token68 ([A-Za-z0-9-._~+/] then optional '=')")
}

#[derive(Debug)]
struct Entry {
    digest: u128,
    principal: Principal,
}

/// Digests of the configured tokens, each with its principal.
#[derive(Debug)]
pub(crate) struct TokenTable {
    key: MacKey,
    map: HashMap<u64, Entry, PrefixHasher>,
    /// The length of the longest token, in bytes (whether it fits an `Authorization` header).
    longest: usize,
    /// The length of the shortest token, in bytes (0 for no token).
    shortest: usize,
}

/// Hashes a digest's low word, which is already uniform and keyed, with one multiply mixed with a
/// per-table random seed: SipHash again would cost more than the lookup itself.
#[derive(Clone, Copy, Debug)]
struct PrefixHasher {
    seed: u64,
}

impl Default for PrefixHasher {
    fn default() -> Self {
        use std::hash::BuildHasher;
        PrefixHasher {
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64) | 1,
        }
    }
}

impl std::hash::BuildHasher for PrefixHasher {
    type Hasher = PrefixHash;

    fn build_hasher(&self) -> PrefixHash {
        PrefixHash {
            seed: self.seed,
            value: 0,
        }
    }
}

/// The hasher of [`PrefixHasher`]: fed one `u64` (a digest prefix).
#[derive(Debug)]
struct PrefixHash {
    seed: u64,
    value: u64,
}

impl std::hash::Hasher for PrefixHash {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; fold anything else in byte by byte all the same.
        for &b in bytes {
            self.value = self.value.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.value ^= v;
    }

    fn finish(&self) -> u64 {
        let full = u128::from(self.value ^ self.seed) * u128::from(0x9e37_79b9_7f4a_7c15_u64);
        (full as u64) ^ ((full >> 64) as u64)
    }
}

impl TokenTable {
    /// Builds the table; a token configured twice is an error naming `setting`.
    pub(crate) fn build(
        entries: &[(Principal, Secret)],
        setting: &'static str,
    ) -> Result<Self, ConfigError> {
        Self::build_with_key(entries, setting, MacKey::random())
    }

    /// [`build`](Self::build) under `key`: a token file keeps one key for every table it loads,
    /// so that the digest a long-lived stream keeps can be looked up in a later table.
    fn build_with_key(
        entries: &[(Principal, Secret)],
        setting: &'static str,
        key: MacKey,
    ) -> Result<Self, ConfigError> {
        let mut map: HashMap<u64, Entry, PrefixHasher> =
            HashMap::with_capacity_and_hasher(entries.len(), PrefixHasher::default());
        let mut longest = 0;
        let mut shortest = usize::MAX;
        for (i, (principal, secret)) in entries.iter().enumerate() {
            longest = longest.max(secret.expose().len());
            shortest = shortest.min(secret.expose().len());
            check_token(secret.expose().as_bytes())
                .map_err(|e| ConfigError::new(setting, format!("entry {}: {e}", i + 1)))?;
            let d = key.mac(secret.expose().as_bytes());
            if let Some(e) = map.get(&(d as u64)) {
                let detail = if ct_eq(e.digest, d) {
                    "the same token is configured twice"
                } else {
                    // 2^-64 per pair under a random key; it goes away on the next start.
                    "two tokens share a digest prefix; replace one of them"
                };
                return Err(ConfigError::new(
                    setting,
                    format!("entry {}: {detail}", i + 1),
                ));
            }
            map.insert(
                d as u64,
                Entry {
                    digest: d,
                    principal: principal.clone(),
                },
            );
        }
        Ok(TokenTable {
            key,
            map,
            longest,
            shortest: if entries.is_empty() { 0 } else { shortest },
        })
    }

    /// The length of the longest token, in bytes.
    pub(crate) fn longest(&self) -> usize {
        self.longest
    }

    /// The length of the shortest token, in bytes (0 for no token).
    pub(crate) fn shortest(&self) -> usize {
        self.shortest
    }

    /// The principal of a presented token, in time independent of which entry matches.
    pub(crate) fn lookup(&self, token: &[u8]) -> Option<Principal> {
        self.lookup_digest(self.key.mac(token))
    }

    /// The principal of a token by its digest under this table's key, in time independent of
    /// which entry matches.
    fn lookup_digest(&self, d: u128) -> Option<Principal> {
        let (want, principal) = match self.map.get(&(d as u64)) {
            Some(e) => (e.digest, Some(&e.principal)),
            // Differs from `d` in one bit: the compare below runs and fails.
            None => (d ^ 1, None),
        };
        let eq = ct_eq(want, d);
        principal.filter(|_| eq).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The distinct principal names, sorted (for the start-up log line).
    pub(crate) fn principals(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .map
            .values()
            .map(|e| e.principal.name().to_owned())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Reads at most [`MAX_TOKEN_FILE_BYTES`] of a regular file (following symlinks).
///
/// Anything else is refused unread: the file is read from the request path, and reading a FIFO
/// waits for a writer (a device or socket may never end), which would hold the worker thread and
/// every request behind it. The kind is checked before opening (a device is never opened: for
/// some, opening alone does something) and again on the opened file (`fstat`), so a swap in
/// between cannot slip a FIFO in; on Unix the file is opened non-blocking and without becoming
/// a controlling terminal, so that opening whatever came in through such a swap does not wait.
pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let cannot_open = |e: std::io::Error| format!("cannot open {}: {}", path.display(), e.kind());
    let meta = std::fs::metadata(path).map_err(cannot_open)?;
    regular_file(&meta)?;
    let file = open_nonblocking(path).map_err(cannot_open)?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat: {}", e.kind()))?;
    regular_file(&meta)?;
    let mut buf = Vec::new();
    file.take(MAX_TOKEN_FILE_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {}", e.kind()))?;
    if buf.len() > MAX_TOKEN_FILE_BYTES {
        return Err(format!("larger than {MAX_TOKEN_FILE_BYTES} bytes"));
    }
    Ok(buf)
}

/// Refuses anything but a regular file, naming what it is.
fn regular_file(meta: &std::fs::Metadata) -> Result<(), String> {
    if meta.is_file() {
        Ok(())
    } else if meta.is_dir() {
        Err("is a directory, not a file".to_owned())
    } else {
        Err("not a regular file (reading a FIFO, socket or device could block)".to_owned())
    }
}

/// Opens `path` for reading without waiting for a FIFO's writer (`O_NONBLOCK`, which changes
/// nothing for a regular file's reads) and without making a terminal the process's
/// controlling terminal (`O_NOCTTY`).
#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// Opens `path` for reading (no FIFOs to wait on here).
#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

/// What `stat` says of a file (following symlinks): its length and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> Result<Stamp, String> {
    let m = std::fs::metadata(path).map_err(|e| format!("cannot stat: {}", e.kind()))?;
    Ok(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
    })
}

/// Whether a read saw the file at rest: the same length and modification time before and after
/// it, and exactly as many bytes as stat said. Anything else means a writer was at work (or the
/// file was swapped) while it was read: what was read may be a valid-looking prefix.
fn at_rest(before: Stamp, after: Stamp, read: usize) -> bool {
    before == after && u64::try_from(read).is_ok_and(|n| n == before.len)
}

/// The outcome of [`read_settled`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The file's bytes, read at rest.
    Bytes(Vec<u8>),
    /// The file changed while it was read.
    Changing,
}

/// Reads `path` with `read` between two stats (see [`at_rest`]).
pub(crate) fn read_settled(
    path: &Path,
    read: impl FnOnce(&Path) -> Result<Vec<u8>, String>,
) -> Result<Settled, String> {
    let before = stamp(path)?;
    let bytes = read(path)?;
    let after = stamp(path)?;
    Ok(if at_rest(before, after, bytes.len()) {
        Settled::Bytes(bytes)
    } else {
        Settled::Changing
    })
}

fn load_file(
    path: &Path,
    setting: &'static str,
    content_key: &MacKey,
    table_key: MacKey,
) -> Result<(TokenTable, u128), ConfigError> {
    let bytes = read_bounded(path).map_err(|e| ConfigError::new(setting, e))?;
    let content_digest = content_key.mac(&bytes);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ConfigError::new(setting, "token file is not UTF-8"))?;
    let entries = parse_spec(text, setting)?;
    Ok((
        TokenTable::build_with_key(&entries, setting, table_key)?,
        content_digest,
    ))
}

/// The tokens loaded from the file, and the signal fired when a reload replaces them.
#[derive(Debug)]
struct Loaded {
    table: TokenTable,
    /// Keyed digest of the file's bytes: an unchanged file is not parsed again.
    content: u128,
    replaced: Signal,
}

/// What a long-lived stream opened with a token from the file keeps, to learn that the token
/// was revoked (a rotation removed it, or gave it to another principal): the token's digest
/// under the file's table key (never the token), and the signal of the tables it was checked
/// against.
#[derive(Debug)]
pub(crate) struct Watch {
    digest: u128,
    replaced: Signal,
    wait: SignalWait,
}

/// Tokens from a file, re-read from the request path at most every `interval`.
///
/// The file is read (not only stat-ed) at each check and compared by digest with the last good
/// content: a same-size rewrite within one timestamp tick is seen too, and so is a Kubernetes
/// secret's symlink swap (the path is resolved at each open). A check costs one small read every
/// few seconds on whichever request comes first; the others only load an atomic. The file is
/// stat-ed before and after each read: a file that changed meanwhile (being written) is not
/// used, the current tokens stay until the next check.
#[derive(Debug)]
pub(crate) struct FileTokens {
    path: PathBuf,
    setting: &'static str,
    interval_ms: u64,
    base: Instant,
    next_check_ms: AtomicU64,
    /// Digests the file's content, to tell a changed file from a re-read of the same one.
    content_key: MacKey,
    /// The key of every table loaded from the file (see [`Watch`]).
    table_key: MacKey,
    state: RwLock<Loaded>,
    /// A reload from the request path is in flight: a read stalled on a hung network file
    /// system holds up one request, not one more every interval until no worker is left.
    reading: AtomicBool,
    /// The longest token an `Authorization` header within the layer's limit can carry: a
    /// reload with a longer one is taken (the others rotate) with a warning.
    presentable: usize,
    /// The shortest token a reload may bring: [`RELOAD_FLOOR`] bytes, or the shortest token of
    /// the file at start if that was shorter (see [`RELOAD_FLOOR`]).
    floor: usize,
}

/// Marks the end of a reload from the request path when dropped (one that panicked too).
struct ReloadDone<'a>(&'a AtomicBool);

impl Drop for ReloadDone<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The shortest token a reloaded file may hold, unless the file at start already held a
/// shorter one. A file rewritten in place and read while its writer paused in the middle of a
/// token (between two writes, so the stats around the read see it at rest) parses, with a
/// prefix of the new token in it; a short prefix could be guessed while it lasts. Refusing
/// tokens shorter than this keeps the old tokens until the next check, by which time the
/// writer has finished. A prefix this long is no easier to guess than a token of that length.
pub(crate) const RELOAD_FLOOR: usize = 16;

impl FileTokens {
    /// Loads the file now: missing, unreadable, empty or invalid is a configuration error.
    pub(crate) fn open(
        path: PathBuf,
        setting: &'static str,
        interval: Duration,
    ) -> Result<Self, ConfigError> {
        let content_key = MacKey::random();
        let table_key = MacKey::random();
        let (table, content) = load_file(&path, setting, &content_key, table_key)?;
        let floor = RELOAD_FLOOR.min(table.shortest());
        let interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        Ok(FileTokens {
            path,
            setting,
            interval_ms,
            base: Instant::now(),
            next_check_ms: AtomicU64::new(interval_ms),
            content_key,
            table_key,
            state: RwLock::new(Loaded {
                table,
                content,
                replaced: Signal::new(),
            }),
            reading: AtomicBool::new(false),
            presentable: usize::MAX,
            floor,
        })
    }

    /// Warns about reloaded tokens longer than `len` bytes (none can be presented).
    pub(crate) fn presentable_up_to(mut self, len: usize) -> Self {
        self.presentable = len;
        self
    }

    pub(crate) fn lookup(&self, token: &[u8]) -> Option<Principal> {
        self.maybe_reload();
        self.loaded().table.lookup(token)
    }

    /// [`lookup`](Self::lookup), with what a long-lived stream keeps to learn later that the
    /// token was revoked ([`revoked`](Self::revoked)).
    pub(crate) fn lookup_watched(&self, token: &[u8]) -> Option<(Principal, Watch)> {
        self.maybe_reload();
        let digest = self.table_key.mac(token);
        let st = self.loaded();
        let principal = st.table.lookup_digest(digest)?;
        let watch = Watch {
            digest,
            replaced: st.replaced.clone(),
            wait: SignalWait::default(),
        };
        Some((principal, watch))
    }

    /// Whether the token behind `watch` no longer authenticates `principal`: checked against
    /// the current tokens when a reload replaced them since the last call (after a check of the
    /// file when one is due; a token removed and put back between two calls is not seen gone).
    /// While it is still valid, `cx` is woken when a reload replaces the tokens.
    pub(crate) fn revoked(
        &self,
        watch: &mut Watch,
        principal: &Principal,
        cx: &mut Context<'_>,
    ) -> bool {
        self.maybe_reload();
        while watch.replaced.poll_fired(&mut watch.wait, cx).is_ready() {
            let st = self.loaded();
            if st.table.lookup_digest(watch.digest).as_ref() != Some(principal) {
                return true;
            }
            watch.replaced = st.replaced.clone();
            watch.wait = SignalWait::default();
        }
        false
    }

    fn loaded(&self) -> RwLockReadGuard<'_, Loaded> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn len(&self) -> usize {
        self.loaded().table.len()
    }

    pub(crate) fn longest(&self) -> usize {
        self.loaded().table.longest()
    }

    pub(crate) fn shortest(&self) -> usize {
        self.loaded().table.shortest()
    }

    pub(crate) fn principals(&self) -> Vec<String> {
        self.loaded().table.principals()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn maybe_reload(&self) {
        self.maybe_reload_with(read_bounded);
    }

    /// [`maybe_reload`](Self::maybe_reload) reading the file with `read`.
    fn maybe_reload_with(&self, read: impl FnOnce(&Path) -> Result<Vec<u8>, String>) {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_check_ms.load(Ordering::Relaxed);
        if now < next {
            return;
        }
        // One request wins the check; the others go on with the current tokens.
        if self
            .next_check_ms
            .compare_exchange(
                next,
                now.saturating_add(self.interval_ms),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return;
        }
        if self.reading.swap(true, Ordering::Acquire) {
            return;
        }
        let _done = ReloadDone(&self.reading);
        self.reload_with(read);
    }

    /// Re-reads the file; on any problem keeps the current tokens and logs an error.
    #[cfg(test)]
    pub(crate) fn reload_now(&self) {
        self.reload_with(read_bounded);
    }

    /// Re-reads the file with `read` (tests simulate a writer); on any problem keeps the
    /// current tokens and logs an error.
    fn reload_with(&self, read: impl FnOnce(&Path) -> Result<Vec<u8>, String>) {
        let bytes = match read_settled(&self.path, read) {
            Ok(Settled::Bytes(b)) => b,
            Ok(Settled::Changing) => {
                // A half-written file may well parse (a prefix of the token list): never use it.
                tracing::error!(
                    setting = self.setting,
                    path = %self.path.display(),
                    "token file changed while being read (being written?); keeping the current \
                     tokens until the next check"
                );
                return;
            }
            Err(e) => {
                tracing::error!(
                    setting = self.setting,
                    path = %self.path.display(),
                    error = %e,
                    "token file unreadable; keeping the current tokens"
                );
                return;
            }
        };
        let content_digest = self.content_key.mac(&bytes);
        if self.loaded().content == content_digest {
            return;
        }
        let table = std::str::from_utf8(&bytes)
            .map_err(|_| ConfigError::new(self.setting, "token file is not UTF-8"))
            .and_then(|text| parse_spec(text, self.setting))
            .and_then(|mut entries| {
                // Entries below the floor are left out, the rest taken: a revocation in the
                // same rewrite still happens.
                let before = entries.len();
                entries.retain(|(_, token)| token.expose().len() >= self.floor);
                if entries.len() < before {
                    tracing::error!(
                        setting = self.setting,
                        path = %self.path.display(),
                        left_out = before - entries.len(),
                        floor = self.floor,
                        "token file has tokens shorter than a reload allows (half-written?); \
                         those entries are left out"
                    );
                }
                if entries.is_empty() {
                    return Err(ConfigError::new(self.setting, "no token long enough"));
                }
                TokenTable::build_with_key(&entries, self.setting, self.table_key)
            });
        match table {
            Ok(table) => {
                let n = table.len();
                if table.longest() > self.presentable {
                    tracing::warn!(
                        setting = self.setting,
                        path = %self.path.display(),
                        longest = table.longest(),
                        presentable = self.presentable,
                        "token file has a token longer than an Authorization header may carry; \
                         it can never be presented"
                    );
                }
                let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
                let replaced = std::mem::replace(
                    &mut *st,
                    Loaded {
                        table,
                        content: content_digest,
                        replaced: Signal::new(),
                    },
                )
                .replaced;
                drop(st);
                // Long-lived streams check their tokens against the new table.
                replaced.fire();
                tracing::info!(
                    setting = self.setting,
                    path = %self.path.display(),
                    tokens = n,
                    "token file changed; tokens reloaded"
                );
            }
            Err(e) => tracing::error!(
                path = %self.path.display(),
                error = %e,
                "token file is empty or invalid (half-written?); keeping the current tokens"
            ),
        }
    }
}

/// Where the server's tokens come from.
#[derive(Debug)]
pub(crate) enum TokenStore {
    Static(TokenTable),
    File(FileTokens),
}

impl TokenStore {
    pub(crate) fn lookup(&self, token: &[u8]) -> Option<Principal> {
        match self {
            TokenStore::Static(t) => t.lookup(token),
            TokenStore::File(f) => f.lookup(token),
        }
    }

    /// The token file, when the tokens come from one (and so can be revoked while serving).
    pub(crate) fn file(&self) -> Option<&FileTokens> {
        match self {
            TokenStore::Static(_) => None,
            TokenStore::File(f) => Some(f),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            TokenStore::Static(t) => t.len(),
            TokenStore::File(f) => f.len(),
        }
    }

    /// The length of the longest token, in bytes.
    pub(crate) fn longest(&self) -> usize {
        match self {
            TokenStore::Static(t) => t.longest(),
            TokenStore::File(f) => f.longest(),
        }
    }

    /// The length of the shortest token, in bytes.
    pub(crate) fn shortest(&self) -> usize {
        match self {
            TokenStore::Static(t) => t.shortest(),
            TokenStore::File(f) => f.shortest(),
        }
    }

    pub(crate) fn principals(&self) -> Vec<String> {
        match self {
            TokenStore::Static(t) => t.principals(),
            TokenStore::File(f) => f.principals(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "MCP_BEARER_TOKEN";

    #[test]
    fn spec_accepts_names_commas_and_newlines() {
        let v = parse_spec(" alice:tok-a , bob:tok.b\r\n\n  \nplain==\n\n", S).unwrap();
        let names: Vec<_> = v.iter().map(|(p, _)| p.name().to_owned()).collect();
        assert_eq!(names, ["alice", "bob", DEFAULT_PRINCIPAL]);
        assert_eq!(v[2].1.expose(), "plain==");
    }

    #[test]
    fn spec_errors_name_the_setting_and_never_the_token() {
        for (spec, want) in [
            ("", "no token"),
            (" , ,", "entry 1: empty"),
            ("alice:sekrit5,,bob:sekrit6", "entry 2: empty"),
            ("alice:sekrit7,", "entry 2: empty"),
            ("alice:", "entry 1: empty token"),
            ("al ice:sekrit1", "entry 1: principal name has a character"),
            (
                "ok:fine,bob:se cret2",
                "entry 2: token has a character outside token68",
            ),
            (":sekrit3", "entry 1: empty principal name"),
            ("a:b:sekrit4", "entry 1: token has a character"),
        ] {
            let e = parse_spec(spec, S).unwrap_err();
            assert_eq!(e.setting(), S);
            assert!(e.detail().starts_with(want), "{spec:?}: {e}");
            for secret in ["sekrit", "se cret", "fine"] {
                assert!(!e.to_string().contains(secret), "{e}");
            }
        }
    }

    #[test]
    fn table_finds_principals_and_refuses_duplicates() {
        let entries = parse_spec("alice:aaa,bob:bbb,alice:ccc", S).unwrap();
        let t = TokenTable::build(&entries, S).unwrap();
        assert_eq!(t.lookup(b"aaa").unwrap().name(), "alice");
        assert_eq!(t.lookup(b"ccc").unwrap().name(), "alice");
        assert_eq!(t.lookup(b"bbb").unwrap().name(), "bob");
        assert!(t.lookup(b"aab").is_none());
        assert!(t.lookup(b"").is_none());
        assert_eq!(t.principals(), ["alice", "bob"]);
        let dup = parse_spec("alice:aaa,bob:aaa", S).unwrap();
        let e = TokenTable::build(&dup, S).unwrap_err();
        assert_eq!(e.detail(), "entry 2: the same token is configured twice");
    }

    #[test]
    fn principal_names_are_checked() {
        assert!(check_principal("svc-a.b_c@d").is_ok());
        assert!(check_principal(&"a".repeat(65)).is_err());
        assert!(check_principal("a;b").is_err());
    }

    #[test]
    fn a_read_counts_only_when_the_file_was_at_rest() {
        let t0 = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(100));
        let t1 = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(101));
        let at = |len, modified| Stamp { len, modified };
        assert!(at_rest(at(10, t0), at(10, t0), 10));
        assert!(at_rest(at(0, None), at(0, None), 0));
        assert!(!at_rest(at(10, t0), at(10, t1), 10), "rewritten meanwhile");
        assert!(!at_rest(at(10, t0), at(14, t1), 10), "grown meanwhile");
        assert!(
            !at_rest(at(10, t0), at(10, t0), 6),
            "fewer bytes than stat said"
        );
        assert!(
            !at_rest(at(10, t0), at(10, t0), 12),
            "more bytes than stat said"
        );
    }

    fn tmp_file(name: &str, content: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tower-armor-bearer-unit-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Runs `f` on its own thread and waits at most 10 s for it: a regression (opening the
    /// FIFO) blocks forever, and must fail the test rather than hang the suite.
    fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("reading the token file blocked")
    }

    #[test]
    fn a_fifo_or_directory_is_refused_without_blocking() {
        let path = tmp_file("fifo", "alice:old-token\n");
        let fifo = path.with_file_name("fifo");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());

        // At start: a configuration error naming the problem.
        let f = fifo.clone();
        let e = within_10s(move || FileTokens::open(f, S, Duration::from_secs(5)).unwrap_err());
        assert!(e.detail().contains("not a regular file"), "{e}");
        let dir = path.parent().unwrap().to_path_buf();
        let e = FileTokens::open(dir, S, Duration::from_secs(5)).unwrap_err();
        assert!(e.detail().contains("directory"), "{e}");

        // On a re-read: the file swapped for a FIFO keeps the old tokens.
        let ft =
            std::sync::Arc::new(FileTokens::open(path.clone(), S, Duration::from_secs(5)).unwrap());
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&fifo, &path).unwrap();
        let ft2 = std::sync::Arc::clone(&ft);
        within_10s(move || ft2.reload_now());
        assert_eq!(ft.lookup(b"old-token").unwrap().name(), "alice");

        // A FIFO swapped in between the check and the open (what the first check cannot see):
        // opening it does not wait for a writer, and the opened file is refused too.
        let f = fifo.clone();
        let file = within_10s(move || open_nonblocking(&f)).expect("opens at once");
        assert!(regular_file(&file.metadata().unwrap()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_written_while_read_keeps_the_old_tokens() {
        let path = tmp_file("writer", "alice:old-token\n");
        let ft = FileTokens::open(path.clone(), S, Duration::from_secs(5)).unwrap();
        assert!(ft.lookup(b"old-token").is_some());

        // The writer has put down the first entry (a valid file on its own) when the read
        // happens, and finishes right after it.
        std::fs::write(&path, "alice:new-token\n").unwrap();
        ft.reload_with(|p| {
            let bytes = read_bounded(p);
            let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
            std::io::Write::write_all(&mut f, b"bob:bob-token\n").unwrap();
            bytes
        });
        assert!(ft.lookup(b"old-token").is_some(), "half-written file used");
        assert!(ft.lookup(b"new-token").is_none());

        // The next check sees the file at rest.
        ft.reload_now();
        assert!(ft.lookup(b"old-token").is_none());
        assert_eq!(ft.lookup(b"new-token").unwrap().name(), "alice");
        assert_eq!(ft.lookup(b"bob-token").unwrap().name(), "bob");

        // A read that got fewer bytes than stat said (truncated meanwhile) is not used either.
        std::fs::write(&path, "alice:third-token\n").unwrap();
        ft.reload_with(|p| read_bounded(p).map(|b| b[..b.len() - 3].to_vec()));
        assert!(ft.lookup(b"new-token").is_some());
        assert_eq!(
            read_settled(&path, read_bounded).unwrap(),
            Settled::Bytes(b"alice:third-token\n".to_vec())
        );
    }

    /// A file rewritten in place and read while its writer paused inside a token parses with
    /// a prefix of that token: a reload leaves out tokens shorter than the floor (and takes the
    /// rest), so a short, guessable prefix never authenticates. The floor is the shortest token
    /// at start, when that is below [`RELOAD_FLOOR`].
    #[tokio::test(start_paused = true)]
    async fn a_reload_leaves_out_tokens_below_the_floor() {
        let long = "alice:Zq9w3Xk7Lm2Pq8Rt\n";
        let path = tmp_file("floor", long);
        let ft = FileTokens::open(path.clone(), S, Duration::from_secs(5)).unwrap();
        // Cut after the first entry and two characters of the next (`bo` for `default`), or
        // inside bob's token.
        for cut in [
            "alice:Zq9w3Xk7Lm2Pq8Rt\nbo",
            "alice:Zq9w3Xk7Lm2Pq8Rt\nbob:Mv",
            "bo",
        ] {
            std::fs::write(&path, cut).unwrap();
            ft.reload_now();
            assert!(ft.lookup(b"bo").is_none(), "{cut}");
            assert!(ft.lookup(b"Mv").is_none(), "{cut}");
            assert!(ft.lookup(b"Zq9w3Xk7Lm2Pq8Rt").is_some(), "{cut}");
        }
        // The rest of such a file is taken: a token removed in the same rewrite is revoked.
        std::fs::write(&path, "carol:Kp4Vx8Qw2Zr6Ty1U\nci:short-one\n").unwrap();
        ft.reload_now();
        assert!(ft.lookup(b"Zq9w3Xk7Lm2Pq8Rt").is_none(), "revoked");
        assert_eq!(ft.lookup(b"Kp4Vx8Qw2Zr6Ty1U").unwrap().name(), "carol");
        assert!(ft.lookup(b"short-one").is_none());
        // The writer finishes: taken.
        std::fs::write(&path, "alice:Zq9w3Xk7Lm2Pq8Rt\nbob:Mv2RfT6yHn4Jk1Ls\n").unwrap();
        ft.reload_now();
        assert_eq!(ft.lookup(b"Mv2RfT6yHn4Jk1Ls").unwrap().name(), "bob");

        // Short tokens at start set a lower floor: rotating among them still works.
        let path = tmp_file("floor-short", "alice:old-token\n");
        let ft = FileTokens::open(path.clone(), S, Duration::from_secs(5)).unwrap();
        std::fs::write(&path, "alice:new-token\n").unwrap();
        ft.reload_now();
        assert!(ft.lookup(b"new-token").is_some());
        std::fs::write(&path, "alice:new-token\nbob:new\n").unwrap();
        ft.reload_now();
        assert!(
            ft.lookup(b"new").is_none(),
            "shorter than any token at start"
        );
    }

    /// A reload with a token no `Authorization` header can carry takes the file (the other
    /// tokens rotate) and says why that one will never work.
    #[test]
    fn a_reloaded_token_too_long_to_present_is_taken_with_a_warning() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let path = tmp_file("too-long", "alice:short-one\n");
        let ft = FileTokens::open(path.clone(), S, Duration::from_secs(5))
            .unwrap()
            .presentable_up_to(16);
        let buf = Buf::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        std::fs::write(&path, "alice:short-two\nbob:a-token-of-twenty-two\n").unwrap();
        tracing::subscriber::with_default(subscriber, || ft.reload_now());
        assert!(ft.lookup(b"short-two").is_some(), "the file is taken");
        let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("can never be presented"), "{log}");
        assert!(
            !log.contains("a-token-of-twenty-two"),
            "never the token: {log}"
        );
    }

    /// A reload whose read stalls (a hung network file system) is not joined by another from
    /// a later request once the next check is due; the check after it reads again.
    #[test]
    fn a_stalled_reload_is_not_joined() {
        let path = tmp_file("stalled", "alice:token-000\n");
        let ft = FileTokens::open(path, S, Duration::from_secs(5)).unwrap();
        let reads = std::cell::Cell::new(0);
        let due = || ft.next_check_ms.store(0, Ordering::Relaxed);
        due();
        ft.maybe_reload_with(|_| {
            reads.set(reads.get() + 1);
            due();
            ft.maybe_reload_with(|_| {
                reads.set(reads.get() + 1);
                Ok(b"alice:token-222\n".to_vec())
            });
            Ok(b"alice:token-111\n".to_vec())
        });
        assert_eq!(reads.get(), 1);
        due();
        ft.maybe_reload_with(|_| {
            reads.set(reads.get() + 1);
            Ok(b"alice:token-333\n".to_vec())
        });
        assert_eq!(reads.get(), 2);
        assert!(ft.lookup(b"token-333").is_some());
    }
}
