//! A read-only SQLite VFS whose files are [`ShardPages`], used by every range reader (native
//! range mode, the wasm reader): reads are served from pinned and cached pages; a read of a page
//! that is not there is recorded and fails with `SQLITE_IOERR_READ`, and the reader's driver
//! fetches the recorded pages and runs the statement again (see [`crate::pages`]). The VFS itself
//! performs no I/O, so it is the same code whether the fetch that follows blocks or awaits.
//!
//! This is the one place with unsafe FFI in the readers. SQLite asks a VFS to open a file by
//! name; each `ShardPages` is registered under a unique name just long enough for the open to
//! pick it up, and the opened file keeps its own reference (released in `xClose`). Everything
//! that would write answers `SQLITE_READONLY`; files report `SQLITE_IOCAP_IMMUTABLE`, so SQLite
//! takes no locks and looks for no journal.

use crate::pages::ShardPages;
use rusqlite::{ffi, Connection, OpenFlags};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock};

const VFS_NAME: &CStr = c"edgeshard-pages";

/// Files waiting for SQLite's xOpen, by name.
static PENDING: LazyLock<Mutex<HashMap<String, Arc<ShardPages>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Whether the VFS is registered (the SQLite result code of registering it otherwise). The
/// registered VFS is leaked: SQLite keeps a pointer to it for the life of the process.
static REGISTERED: OnceLock<c_int> = OnceLock::new();

/// The pending-files map (recovered after a panic elsewhere: a map of names stays valid).
fn pending() -> MutexGuard<'static, HashMap<String, Arc<ShardPages>>> {
    PENDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Opens a read-only SQLite connection over `pages`. A read that misses a page fails with
/// `SQLITE_IOERR_READ` after recording it: check [`ShardPages::miss_count`] around every
/// statement, fetch what [`ShardPages::take_fetch`] plans, and run the statement again.
///
/// Page 1 must be there already (pinned or cached): SQLite reads the header while opening, and a
/// miss there is not a statement that can be run again.
pub fn open_connection(pages: Arc<ShardPages>) -> rusqlite::Result<Connection> {
    if !pages.has_page(1) {
        return Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_CANTOPEN),
            Some("page 1 (the database header) must be loaded before the file is opened".into()),
        ));
    }
    register_vfs()?;
    let name = format!("pages-{}.db", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    pending().insert(name.clone(), pages);
    let opened = Connection::open_with_flags_and_vfs(
        format!("file:{name}?immutable=1"),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        VFS_NAME,
    );
    // The opened file holds its own reference now (or the open failed): forget the name.
    pending().remove(&name);
    opened
}

#[repr(C)]
struct VfsFile {
    /// Must come first: SQLite sees a `sqlite3_file*`.
    base: ffi::sqlite3_file,
    /// `Arc::into_raw` of the pages; released in xClose.
    pages: *const ShardPages,
}

fn register_vfs() -> rusqlite::Result<()> {
    let rc = *REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS (the OS one natively,
        // sqlite-wasm-rs's memory VFS on wasm32), which lives as long as the process.
        let default = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
        if default.is_null() {
            return ffi::SQLITE_ERROR;
        }
        // SAFETY: `default` is a valid VFS; its utility functions (randomness, clock, sleep,
        // last error) are copied together with the app data they may read (sqlite-wasm-rs
        // keeps its host callbacks there).
        let d = unsafe { &*default };
        let vfs = Box::new(ffi::sqlite3_vfs {
            iVersion: 2,
            szOsFile: std::mem::size_of::<VfsFile>() as c_int,
            mxPathname: 512,
            pNext: std::ptr::null_mut(),
            zName: VFS_NAME.as_ptr(),
            pAppData: d.pAppData,
            xOpen: Some(x_open),
            xDelete: Some(x_delete),
            xAccess: Some(x_access),
            xFullPathname: Some(x_full_pathname),
            xDlOpen: None,
            xDlError: None,
            xDlSym: None,
            xDlClose: None,
            xRandomness: d.xRandomness,
            xSleep: d.xSleep,
            xCurrentTime: d.xCurrentTime,
            xGetLastError: d.xGetLastError,
            xCurrentTimeInt64: d.xCurrentTimeInt64,
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        });
        // SAFETY: a leaked, fully initialised VFS that is never freed.
        unsafe { ffi::sqlite3_vfs_register(Box::into_raw(vfs), 0) }
    });
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(rc),
            Some(format!("cannot register the {VFS_NAME:?} SQLite VFS")),
        ))
    }
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_lock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    _flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let out = file as *mut VfsFile;
    // SAFETY: SQLite hands us szOsFile bytes at `file`; clear them before any early return so
    // SQLite does not call xClose on garbage.
    unsafe {
        (*out).base.pMethods = std::ptr::null();
        (*out).pages = std::ptr::null();
    }
    if name.is_null() {
        return ffi::SQLITE_CANTOPEN;
    }
    // SAFETY: a non-null zName is a NUL-terminated string owned by SQLite for this call.
    let Ok(key) = unsafe { CStr::from_ptr(name) }.to_str() else {
        return ffi::SQLITE_CANTOPEN;
    };
    let Some(pages) = pending().get(key).cloned() else {
        return ffi::SQLITE_CANTOPEN;
    };
    // SAFETY: as above; the Arc is released exactly once, in x_close.
    unsafe {
        (*out).pages = Arc::into_raw(pages);
        (*out).base.pMethods = &IO_METHODS;
        if !out_flags.is_null() {
            *out_flags = ffi::SQLITE_OPEN_READONLY;
        }
    }
    ffi::SQLITE_OK
}

/// The pages behind an open sqlite3_file.
///
/// # Safety
/// `file` must have been opened by `x_open` and not yet closed.
unsafe fn shard_pages<'a>(file: *mut ffi::sqlite3_file) -> &'a ShardPages {
    unsafe { &*(*(file as *mut VfsFile)).pages }
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    let f = file as *mut VfsFile;
    // SAFETY: `file` was opened by x_open; its Arc pointer is released once and nulled.
    unsafe {
        if !(*f).pages.is_null() {
            drop(Arc::from_raw((*f).pages));
            (*f).pages = std::ptr::null();
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: SQLite passes a buffer of `amount` bytes and a file opened by x_open.
    let (pages, out) = unsafe {
        (
            shard_pages(file),
            std::slice::from_raw_parts_mut(buf as *mut u8, amount.max(0) as usize),
        )
    };
    match pages.read_at(offset.max(0) as u64, out) {
        Some(n) if n == out.len() => ffi::SQLITE_OK,
        Some(n) => {
            // SQLite requires the unread tail zeroed on a short read.
            out[n..].fill(0);
            ffi::SQLITE_IOERR_SHORT_READ
        }
        // Recorded as missing: the driver fetches it and runs the statement again.
        None => ffi::SQLITE_IOERR_READ,
    }
}

unsafe extern "C" fn x_write(
    _file: *mut ffi::sqlite3_file,
    _buf: *const c_void,
    _amount: c_int,
    _offset: ffi::sqlite3_int64,
) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn x_truncate(_file: *mut ffi::sqlite3_file, _size: ffi::sqlite3_int64) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn x_sync(_file: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: `file` was opened by x_open; `size` is a valid out pointer.
    unsafe { *size = shard_pages(file).len as ffi::sqlite3_int64 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_lock(_file: *mut ffi::sqlite3_file, _level: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_check_reserved_lock(
    _file: *mut ffi::sqlite3_file,
    out: *mut c_int,
) -> c_int {
    // SAFETY: `out` is a valid out pointer.
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_control(
    _file: *mut ffi::sqlite3_file,
    _op: c_int,
    _arg: *mut c_void,
) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(_file: *mut ffi::sqlite3_file) -> c_int {
    4096
}

unsafe extern "C" fn x_device_characteristics(_file: *mut ffi::sqlite3_file) -> c_int {
    ffi::SQLITE_IOCAP_IMMUTABLE
}

unsafe extern "C" fn x_delete(
    _vfs: *mut ffi::sqlite3_vfs,
    _name: *const c_char,
    _sync_dir: c_int,
) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn x_access(
    _vfs: *mut ffi::sqlite3_vfs,
    _name: *const c_char,
    _flags: c_int,
    out: *mut c_int,
) -> c_int {
    // No journals, WAL files or anything else exists beside a shard file.
    // SAFETY: `out` is a valid out pointer.
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: `name` is NUL-terminated; `out` has room for `n_out` bytes.
    unsafe {
        let bytes = CStr::from_ptr(name).to_bytes_with_nul();
        if bytes.len() > n_out.max(0) as usize {
            return ffi::SQLITE_CANTOPEN;
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, out, bytes.len());
    }
    ffi::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::{PageCache, PageStats};

    /// A database image of `rows` rows with values of `value_len` bytes.
    fn image(rows: i64, value_len: usize) -> Vec<u8> {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "PRAGMA page_size=4096; CREATE TABLE kv (k INTEGER PRIMARY KEY, v BLOB);",
        )
        .unwrap();
        let mut insert = conn.prepare("INSERT INTO kv VALUES (?1, ?2)").unwrap();
        for k in 0..rows {
            insert
                .execute(rusqlite::params![k, vec![(k % 251) as u8; value_len]])
                .unwrap();
        }
        drop(insert);
        conn.serialize("main").unwrap().to_vec()
    }

    fn pages_of(image: &[u8], budget: usize) -> Arc<ShardPages> {
        let pages = Arc::new(ShardPages::new(
            5,
            image.len() as u64,
            4096,
            4096,
            None,
            HashMap::new(),
            vec![],
            Arc::new(Mutex::new(PageCache::new(budget))),
            Arc::new(PageStats::default()),
        ));
        pages.store(0, &image[..4096], true).unwrap();
        pages
    }

    /// Runs `statement` over `pages`, serving every miss from `image`; returns the result and the
    /// rounds of reads it took.
    fn drive<T>(
        pages: &ShardPages,
        image: &[u8],
        mut statement: impl FnMut() -> rusqlite::Result<T>,
    ) -> (T, u32) {
        let mut rounds = 0;
        loop {
            let before = pages.miss_count();
            let outcome = statement();
            if pages.miss_count() == before {
                return (outcome.unwrap(), rounds);
            }
            assert!(outcome.is_err(), "a statement that missed a page must fail");
            rounds += 1;
            assert!(rounds < 100, "no progress");
            for (offset, length) in pages.take_fetch().ranges {
                let block = &image[offset as usize..(offset + length) as usize];
                pages.store(offset, block, false).unwrap();
            }
        }
    }

    #[test]
    fn misses_fail_then_reruns_answer_like_a_whole_file() {
        let image = image(3_000, 300);
        let pages = pages_of(&image, 64 << 20);
        let unloaded = ShardPages::new(
            1,
            image.len() as u64,
            4096,
            4096,
            None,
            HashMap::new(),
            vec![],
            Arc::new(Mutex::new(PageCache::new(1 << 20))),
            Arc::new(PageStats::default()),
        );
        assert!(open_connection(Arc::new(unloaded)).is_err());
        let conn = open_connection(pages.clone()).unwrap();
        let (count, rounds) = drive(&pages, &image, || {
            conn.query_row("SELECT count(*), sum(length(v)) FROM kv", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
        });
        assert_eq!(count, (3_000, 900_000));
        // A scan reads ahead, doubling: far fewer rounds than pages.
        let page_count = (image.len() / 4096) as u32;
        assert!(
            rounds < page_count / 4,
            "{rounds} rounds for {page_count} pages"
        );
        // Everything is cached now: a point lookup costs no round.
        let (value, rounds) = drive(&pages, &image, || {
            conn.query_row("SELECT v FROM kv WHERE k = 1234", [], |r| {
                r.get::<_, Vec<u8>>(0)
            })
        });
        assert_eq!((value, rounds), (vec![(1234 % 251) as u8; 300], 0));
    }

    #[test]
    fn a_cache_smaller_than_one_statement_still_finishes() {
        // The pages a running call touched are never evicted, so a scan larger than the
        // budget completes (over budget until the next call).
        let image = image(2_000, 500);
        let pages = pages_of(&image, 8 * 4096);
        let conn = open_connection(pages.clone()).unwrap();
        let (sum, _) = drive(&pages, &image, || {
            conn.query_row("SELECT sum(length(v)) FROM kv", [], |r| r.get::<_, i64>(0))
        });
        assert_eq!(sum, 1_000_000);
    }

    #[test]
    fn nothing_can_be_written() {
        let image = image(10, 10);
        let pages = pages_of(&image, 1 << 20);
        let conn = open_connection(pages.clone()).unwrap();
        drive(&pages, &image, || {
            conn.query_row("SELECT count(*) FROM kv", [], |r| r.get::<_, i64>(0))
        });
        let write = conn.execute("INSERT INTO kv VALUES (99, x'00')", []);
        assert!(
            write.is_err(),
            "a write through the read-only VFS succeeded"
        );
    }
}
