//! Shard handles and their connections: opened on first use per the access mode (local file,
//! download into the cache, or page reads by range), with their size and content checks.

use super::*;
use edgeshard_shared::integrity::PageVerifier;
use edgeshard_shared::key_index::{self, KeyIndex};

pub(super) struct ShardHandle {
    pub(super) entry: ShardEntry,
    /// `shards/run_id=R/db=NNNNN/attempt=AA/shard.db`, relative to the root.
    pub(super) relative: String,
    /// Display form of where the shard lives, for errors.
    pub(super) location: String,
    /// Opened on first use; a shard that is never queried is never opened.
    pub(super) conn: Mutex<Option<ShardConn>>,
    /// Set once the shard's first stored key was seen to route to it (checked on its first
    /// miss, see [`Snapshot::check_routing_on_miss`]).
    pub(super) routing_checked: AtomicBool,
    /// IVF shards: the cells' centroids, read on the first search.
    pub(super) cells: std::sync::OnceLock<Arc<edgeshard_shared::ivf::Cells>>,
    /// Shards with binary codes (`shard.codes`): the codes, read whole on the first search.
    pub(super) codes: std::sync::OnceLock<Arc<edgeshard_shared::codes::Codes>>,
    /// The shard's LanceDB table, opened on first search (LanceDB snapshots).
    #[cfg(feature = "lancedb")]
    pub(super) lance: Mutex<Option<Arc<crate::lance::LanceShard>>>,
}

/// What a read of a shard is for; under `--access auto` on a remote root it decides how a shard
/// not yet open is opened (see [`Snapshot::mode_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    /// Key lookups: a few pages, found through the shard's key index when it has one.
    Lookup,
    /// A search that reads a few pages of the shard (binary codes' candidates and hits): by
    /// range under `auto`, like lookups, with the sidecar's interior pages pinned to plan them.
    FewPages,
    /// Vector searches: most of the shard's vector pages.
    Scan,
}

/// What is fetched beside a shard's HEAD when it is opened by range.
/// (Each is `None` when it could not be fetched or parsed.)
enum Companion {
    Sidecar(Option<Sidecar>),
    KeyIndex(Option<Vec<u8>>),
}

/// An open shard database: a file SQLite reads itself, or pages read by range.
pub(super) enum ShardConn {
    Whole(Connection),
    Range(RangeShard),
}

impl Snapshot {
    /// Runs `f` on the shard's connection, opening it on first use; SQLite errors become
    /// [`Error::CorruptShard`] naming the shard.
    pub(super) fn with_conn<T>(
        &self,
        shard: &ShardHandle,
        use_: Use,
        mut f: impl FnMut(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.with_conn_try(shard, use_, |conn| {
            f(conn).map_err(|e| self.sql_error(shard, e))
        })
    }

    /// How a shard not yet open is read for `use_`: `--access auto` on a remote root reads
    /// lookups by range (one key never costs a whole shard) and searches per the size rule
    /// (download below 16 MiB a shard and 2 GiB in all, else range); any other choice applies
    /// to both.
    pub(super) fn mode_for(&self, use_: Use) -> AccessMode {
        match (self.options.access, &self.root, use_) {
            (AccessMode::Auto, Root::Remote(_), Use::Lookup | Use::FewPages) => AccessMode::Range,
            _ => self.mode,
        }
    }

    /// A SQLite error on a shard. (A failed ranged read never surfaces as one: the range
    /// driver reports it itself.)
    pub(super) fn sql_error(&self, shard: &ShardHandle, e: rusqlite::Error) -> Error {
        Error::CorruptShard {
            db_id: shard.entry.db_id,
            location: shard.location.clone(),
            detail: e.to_string(),
        }
    }

    /// Runs `f` on the shard's connection, opening it on first use (a shard that cannot be
    /// opened is an error naming it).
    /// In range mode `f` may run several times (see [`RangeShard::run`]): it must have no
    /// effect outside what it returns.
    ///
    /// A shard open by range is downloaded when `use_` calls for a download (`auto`: a search
    /// after lookups), so later reads are local; a downloaded shard serves every use.
    pub(super) fn with_conn_try<T>(
        &self,
        shard: &ShardHandle,
        use_: Use,
        f: impl FnMut(&Connection) -> Result<T>,
    ) -> Result<T> {
        self.with_shard(shard, use_, |conn| match conn {
            ShardConn::Whole(conn) => {
                let mut f = f;
                f(conn)
            }
            ShardConn::Range(range) => range.run(f),
        })
    }

    /// Runs `f` on the shard's open database, opening it on first use (see
    /// [`Self::with_conn_try`]). A shard open by range through its key index (for lookups) is
    /// opened again with its sidecar for any other use, so searches can plan their reads.
    pub(super) fn with_shard<T>(
        &self,
        shard: &ShardHandle,
        use_: Use,
        f: impl FnOnce(&mut ShardConn) -> Result<T>,
    ) -> Result<T> {
        let mut guard = shard
            .conn
            .lock()
            .map_err(|_| Error::poisoned(&format!("shard {} connection", shard.entry.db_id)))?;
        let wanted = self.mode_for(use_);
        let upgrade = match (&*guard, wanted) {
            (Some(ShardConn::Range(_)), AccessMode::Download) => true,
            (Some(ShardConn::Range(range)), _) => {
                range.opened_by_key_index() && use_ != Use::Lookup
            }
            _ => false,
        };
        if guard.is_none() || upgrade {
            sqlite_vec_ext::register();
            *guard = Some(self.open_shard(shard, wanted, use_)?);
        }
        match guard.as_mut() {
            Some(conn) => f(conn),
            None => Err(Error::Internal(format!(
                "shard {}: connection missing after open",
                shard.entry.db_id
            ))),
        }
    }

    /// Before a search on a range-read shard: fetches its vector tables in two rounds (see
    /// [`RangeShard::plan_vector_reads`]); nothing for other shards.
    pub(super) fn plan_vector_reads(&self, shard: &ShardHandle, ivf: bool) -> Result<()> {
        // Opens the shard when needed.
        self.with_conn_try(shard, Use::Scan, |_| Ok(()))?;
        let mut guard = shard
            .conn
            .lock()
            .map_err(|_| Error::poisoned(&format!("shard {} connection", shard.entry.db_id)))?;
        match guard.as_mut() {
            Some(ShardConn::Range(range)) => range.plan_vector_reads(ivf),
            _ => Ok(()),
        }
    }

    /// Range-read shards: fetches the vector chunks of the IVF `cells` a search is about to
    /// read, in two rounds ([`RangeShard::plan_cell_reads`]); other shards read them as usual.
    pub(super) fn plan_cell_reads(&self, shard: &ShardHandle, cells: &[usize]) -> Result<()> {
        let mut guard = shard
            .conn
            .lock()
            .map_err(|_| Error::poisoned(&format!("shard {} connection", shard.entry.db_id)))?;
        match guard.as_mut() {
            Some(ShardConn::Range(range)) => range.plan_cell_reads(cells),
            _ => Ok(()),
        }
    }

    /// Opens one shard's database per `mode` (resolved: download or range). Under `auto`, a
    /// range open of a remote shard already in the download cache (and checking out) opens the
    /// cached file.
    /// Opened for [`Use::Lookup`] by range, a shard whose snapshot announces key indexes reads
    /// its key index instead of its sidecar (16 KB instead of ~275 KB for 125,000 rows); one that
    /// is missing, damaged or bound to another file is passed over for the sidecar.
    pub(super) fn open_shard(
        &self,
        shard: &ShardHandle,
        mode: AccessMode,
        use_: Use,
    ) -> Result<ShardConn> {
        let by_key_index = use_ == Use::Lookup && self.key_index_file().is_some();
        let db_id = shard.entry.db_id;
        let corrupt = |detail: String| Error::CorruptShard {
            db_id,
            location: shard.location.clone(),
            detail,
        };
        let cached = match (&self.root, mode, self.options.access) {
            (Root::Remote(_), AccessMode::Range, AccessMode::Auto) => self.cached_copy(shard),
            _ => None,
        };
        let conn = match (&self.root, mode) {
            _ if let Some(path) = &cached => ShardConn::Whole(open_local_file(path, db_id)?),
            (Root::Local(dir), AccessMode::Range) => {
                let path = dir.join(&shard.relative);
                self.check_local_size(&path, &shard.entry)
                    .map_err(corrupt)?;
                let source = FileSource::open(&path)?;
                if by_key_index {
                    let file = path.with_file_name(self.key_index_file().unwrap_or_default());
                    let bytes = std::fs::read(file).ok();
                    if let Some(index) = self.bound_key_index(shard, bytes, source.size()) {
                        return self.open_by_key_index(shard, Box::new(source), index);
                    }
                }
                // Local files have no ETag: the sidecar written beside the file is trusted.
                let sidecar = std::fs::read(sidecar_path(&path))
                    .ok()
                    .and_then(|bytes| Sidecar::parse(&bytes).ok())
                    .map(|s| s.content);
                self.open_range(shard, Box::new(source), sidecar)?
            }
            (Root::Local(dir), _) => {
                let path = dir.join(&shard.relative);
                self.check_local_size(&path, &shard.entry)
                    .map_err(corrupt)?;
                // SQLite reads the file directly here, page checks and all bypassed: the whole
                // file is hashed once at open instead (xxh3, streamed), when a hash is recorded.
                if path.is_file() && !cached_file_checks_out(&path, &shard.entry) {
                    return Err(corrupt(
                        "its content hash differs from the manifest's content_xxh3_128: the \
                         file is damaged or not this build's"
                            .into(),
                    ));
                }
                ShardConn::Whole(open_local_file(&path, db_id)?)
            }
            (Root::Remote(remote), AccessMode::Range) => {
                // The shard's ETag and its sidecar (or key index) are independent: fetch both
                // in one round.
                let (head, companion) = std::thread::scope(|scope| {
                    let companion = scope.spawn(|| match by_key_index {
                        true => Companion::KeyIndex(self.remote_key_index(shard)),
                        false => Companion::Sidecar(self.remote_sidecar(shard)),
                    });
                    let head = remote.head(&shard.relative);
                    (head, companion.join())
                });
                let (size, etag) = head?;
                let companion = companion
                    .map_err(|_| Error::Internal("a sidecar fetch thread panicked".into()))?;
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                self.stats.rounds.fetch_add(1, Ordering::Relaxed);
                // Another build's file (or a truncated one) under this path would otherwise be
                // read page by page as if it were this shard.
                self.check_file_size(&shard.entry, size)
                    .map_err(|e| corrupt(e.to_string()))?;
                let sidecar = match companion {
                    Companion::KeyIndex(bytes) => {
                        if let Some(index) = self.bound_key_index(shard, bytes, size) {
                            let source = remote.range_source(&shard.relative, size, etag);
                            return self.open_by_key_index(shard, Box::new(source), index);
                        }
                        // Missing or unusable: the sidecar after all (one more round).
                        self.stats.rounds.fetch_add(1, Ordering::Relaxed);
                        self.remote_sidecar(shard)
                    }
                    Companion::Sidecar(sidecar) => sidecar,
                };
                let sidecar = sidecar
                    .filter(|s| Some(s.tag.as_str()) == etag.as_deref())
                    .map(|s| s.content);
                let source = remote.range_source(&shard.relative, size, etag);
                self.open_range(shard, Box::new(source), sidecar)?
            }
            (Root::Remote(_), _) => {
                ShardConn::Whole(open_local_file(&self.download(shard)?, db_id)?)
            }
        };
        // Reading the schema here turns "not a database" into an error at open, with the shard
        // named, instead of at the first query.
        let schema = |conn: &Connection| {
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| self.sql_error(shard, e))
        };
        match &conn {
            ShardConn::Whole(c) => schema(c)?,
            ShardConn::Range(range) => range.run(schema)?,
        };
        Ok(conn)
    }

    /// The shard's page checker, when its writer recorded page checksums.
    fn page_verifier(&self, shard: &ShardHandle) -> Result<Option<PageVerifier>> {
        shard
            .entry
            .page_verifier()
            .map_err(|e| Error::CorruptShard {
                db_id: shard.entry.db_id,
                location: shard.location.clone(),
                detail: e.to_string(),
            })
    }

    /// Opens a shard page by page; when its writer recorded page checksums, every page is
    /// checked before SQLite sees it.
    pub(super) fn open_range(
        &self,
        shard: &ShardHandle,
        source: Box<dyn RangeSource>,
        sidecar: Option<SidecarContent>,
    ) -> Result<ShardConn> {
        let verifier = self.page_verifier(shard)?;
        let range = RangeShard::open(
            shard.entry.db_id,
            source,
            sidecar,
            self.options.cache_pages,
            self.stats.clone(),
            verifier,
        )?;
        Ok(ShardConn::Range(range))
    }

    /// The file name of the snapshot's key indexes, when it announces them.
    pub(super) fn key_index_file(&self) -> Option<&str> {
        key_index::announced_file(&self.manifest.meta.custom)
    }

    /// The shard's key index file, fetched (counted as a request of the round of the shard's
    /// HEAD), when the snapshot announces one.
    fn remote_key_index(&self, shard: &ShardHandle) -> Option<Vec<u8>> {
        let relative = format!(
            "{}/{}",
            shard_dir_of(&shard.relative),
            self.key_index_file()?
        );
        // A failed read (absent file) is a request too.
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let bytes = self.root.read(&relative).ok()?;
        self.stats
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Some(bytes)
    }

    /// `bytes` (the shard's key index file, if it could be read) as a key index of this shard:
    /// its bytes hash to what the shard's manifest row records, and it describes a `shard.db` of
    /// `size` bytes with the row's content hash ([`key_index::load`]). Anything else, a missing
    /// file included, is passed over (the sidecar serves instead, answers unchanged) and counted
    /// in `--stats`.
    fn bound_key_index(
        &self,
        shard: &ShardHandle,
        bytes: Option<Vec<u8>>,
        size: u64,
    ) -> Option<Arc<KeyIndex>> {
        let bytes = bytes.unwrap_or_default();
        let index = key_index::load(&shard.entry, &bytes, size);
        match index {
            Ok(index) => Some(Arc::new(index)),
            Err(_) => {
                self.stats
                    .key_index_fallbacks
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Opens a shard for lookups through its key index: no read (page 1 is in the index). The
    /// schema is not read here as other opens do: the index is bound to this file's bytes.
    fn open_by_key_index(
        &self,
        shard: &ShardHandle,
        source: Box<dyn RangeSource>,
        index: Arc<KeyIndex>,
    ) -> Result<ShardConn> {
        let verifier = self.page_verifier(shard)?;
        let range = RangeShard::open_with_key_index(
            shard.entry.db_id,
            source,
            index,
            self.options.cache_pages,
            self.stats.clone(),
            verifier,
        )?;
        Ok(ShardConn::Range(range))
    }

    /// The shard's sidecar when the manifest announces one and it parses (the caller checks its
    /// tag against the live ETag); anything else means plain page reads. Counted as a request of
    /// the same round as the shard's HEAD.
    pub(super) fn remote_sidecar(&self, shard: &ShardHandle) -> Option<Sidecar> {
        let config = self.manifest.meta.custom.get("sqlite_sidecar")?;
        let filename = config
            .get("filename")
            .and_then(Value::as_str)
            .unwrap_or(layout::SIDECAR_FILE);
        let relative = shard
            .relative
            .strip_suffix(layout::SHARD_DB_FILE)
            .map(|dir| format!("{dir}{filename}"))?;
        let bytes = self.root.read(&relative).ok()?;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Sidecar::parse(&bytes).ok()
    }

    /// Where the download cache keeps the shard's file.
    fn cache_path(&self, shard: &ShardHandle) -> PathBuf {
        let entry = &shard.entry;
        // checkpoint_id is opaque (another writer's may not be a content hash), so the run and
        // slot are part of the cache identity too.
        let slot = format!(
            "{}-db{:05}-a{:02}",
            self.manifest.meta.run_id, entry.db_id, entry.attempt
        );
        let identity = match &entry.checkpoint_id {
            Some(id) if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) => {
                format!("{slot}-{id}")
            }
            _ => slot,
        };
        self.options
            .cache_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("edgeshard-cache"))
            .join(identity)
            .join(layout::SHARD_DB_FILE)
    }

    /// The shard's downloaded copy when the cache holds one that checks out (size, and the
    /// content hash when the manifest records one): a copy damaged on disk is fetched again,
    /// not served.
    pub(super) fn cached_copy(&self, shard: &ShardHandle) -> Option<PathBuf> {
        let path = self.cache_path(shard);
        let fine = self.check_local_size(&path, &shard.entry).is_ok()
            && cached_file_checks_out(&path, &shard.entry);
        fine.then_some(path)
    }

    /// Fetches a remote shard whole into the local cache (temp file + rename, so concurrent
    /// processes never see a partial file), or reuses a cached copy of the same checkpoint.
    pub(super) fn download(&self, shard: &ShardHandle) -> Result<PathBuf> {
        let entry = &shard.entry;
        let target = self.cache_path(shard);
        if let Some(cached) = self.cached_copy(shard) {
            return Ok(cached);
        }
        let dir = target.parent().map(PathBuf::from).unwrap_or_default();
        let io = |location: &PathBuf| {
            let location = location.display().to_string();
            move |source| Error::Io { location, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let bytes = read_counted(&self.root, &shard.relative, &self.stats)?;
        // Checked before it enters the cache, so a body damaged in transit is an error now and
        // not an answer later.
        self.check_file_size(entry, bytes.len() as u64)
            .and_then(|()| entry.check_hash(|| edgeshard_shared::integrity::content_hash(&bytes)))
            .map_err(|e| Error::CorruptShard {
                db_id: entry.db_id,
                location: shard.location.clone(),
                detail: e.to_string(),
            })?;
        let temp = dir.join(format!(
            "{}.{}.{}.tmp",
            layout::SHARD_DB_FILE,
            std::process::id(),
            NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
        ));
        {
            let mut file = std::fs::File::create(&temp).map_err(io(&temp))?;
            std::io::Write::write_all(&mut file, &bytes).map_err(io(&temp))?;
            file.sync_all().map_err(io(&temp))?;
        }
        std::fs::rename(&temp, &target).map_err(io(&target))?;
        Ok(target)
    }

    /// A shard file's size against its row's `db_bytes`. On LanceDB snapshots `db_bytes`
    /// counts the vector table too (shardyfusion's composite shards), so it says nothing about
    /// `shard.db` alone and is not checked.
    pub(super) fn check_file_size(
        &self,
        entry: &ShardEntry,
        size: u64,
    ) -> edgeshard_shared::Result<()> {
        match self.backend {
            Some(VectorBackend::LanceDb) => Ok(()),
            _ => entry.check_size(size),
        }
    }

    /// [`Self::check_file_size`] of a local file (a missing file is left to the open, which
    /// names it as not found).
    pub(super) fn check_local_size(
        &self,
        path: &std::path::Path,
        entry: &ShardEntry,
    ) -> std::result::Result<(), String> {
        match std::fs::metadata(path) {
            Ok(meta) => self
                .check_file_size(entry, meta.len())
                .map_err(|e| e.to_string()),
            Err(_) => Ok(()),
        }
    }
}

/// Whether a shard file exists and matches its row's content hash when one is recorded
/// (streamed, so a large file is not held in memory; the size is checked by the caller).
pub(super) fn cached_file_checks_out(path: &std::path::Path, entry: &ShardEntry) -> bool {
    if !path.is_file() {
        return false;
    }
    if entry.content_hash().is_none() {
        return true;
    }
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut hasher = ContentHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match std::io::Read::read(&mut file, &mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    entry.check_hash(|| hasher.finish_hex()).is_ok()
}

/// Opens shard `db_id`'s local file read-only, immutable and memory-mapped.
pub(super) fn open_local_file(path: &std::path::Path, db_id: u32) -> Result<Connection> {
    if !path.is_file() {
        return Err(Error::NotFound {
            what: "shard database".into(),
            location: path.display().to_string(),
        });
    }
    let corrupt = |e: rusqlite::Error| Error::CorruptShard {
        db_id,
        location: path.display().to_string(),
        detail: e.to_string(),
    };
    let conn = Connection::open_with_flags(
        sqlite_immutable_uri(path),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(corrupt)?;
    // Shards are immutable, so memory-mapping them is safe; it spares a read() and a copy per
    // page, which dominates brute-force vector scans.
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)
        .map_err(corrupt)?;
    Ok(conn)
}

pub(super) fn sidecar_path(db_path: &std::path::Path) -> PathBuf {
    db_path.with_file_name(layout::SIDECAR_FILE)
}

/// Upper bound of the memory map per shard connection (address space, not resident memory).
pub(super) const MMAP_BYTES: i64 = 1 << 32;
