//! A read-only SQLite VFS whose files are [`RangeFile`]s.
//!
//! SQLite asks a VFS to open a file by name; we register each `RangeFile` under a unique name
//! just long enough for `sqlite3_open_v2` to pick it up, and the opened file keeps its own
//! reference. Everything that would write answers `SQLITE_READONLY`; the file reports
//! `SQLITE_IOCAP_IMMUTABLE`, so SQLite takes no locks and checks no journal.

use super::RangeFile;
use crate::error::{Error, Result};
use rusqlite::{ffi, Connection, OpenFlags};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

const VFS_NAME: &CStr = c"edgeshard-range";

/// Files waiting for SQLite's xOpen, by name.
static PENDING: LazyLock<Mutex<HashMap<String, Arc<RangeFile>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// The registered VFS (leaked: it lives as long as the process, as SQLite requires).
static VFS: OnceLock<usize> = OnceLock::new();

thread_local! {
    /// The last range-read error on this thread, so a SQLite "disk I/O error" can be reported
    /// as its real cause, kind included (a 404, a 403, a changed ETag, a refused Range
    /// request...).
    static LAST_ERROR: RefCell<Option<Error>> = const { RefCell::new(None) };
}

/// The cause of the most recent failed range read on this thread, if any (and clears it).
pub fn take_last_error() -> Option<Error> {
    LAST_ERROR.with(|e| e.borrow_mut().take())
}

/// Opens a read-only SQLite connection over `file`.
pub fn open_connection(file: Arc<RangeFile>) -> Result<Connection> {
    register_vfs()?;
    let name = format!("range-{}.db", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let location = file.source.location();
    PENDING
        .lock()
        .map_err(|_| Error::poisoned("range VFS registry"))?
        .insert(name.clone(), file);
    let opened = Connection::open_with_flags_and_vfs(
        format!("file:{name}?immutable=1"),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        VFS_NAME,
    );
    // The opened file holds its own reference now (or the open failed): forget the name.
    if let Ok(mut pending) = PENDING.lock() {
        pending.remove(&name);
    }
    // A failed range read is reported as itself (its kind intact); anything else means the file
    // is not a usable database. The caller knows which shard this is and names it.
    opened.map_err(|e| match take_last_error() {
        Some(cause) => cause,
        None => Error::CorruptShard {
            db_id: 0,
            location,
            detail: e.to_string(),
        },
    })
}

#[repr(C)]
struct VfsFile {
    /// Must come first: SQLite sees a `sqlite3_file*`.
    base: ffi::sqlite3_file,
    /// `Arc::into_raw` of the file; released in xClose.
    file: *const RangeFile,
}

fn register_vfs() -> Result<()> {
    if VFS.get().is_some() {
        return Ok(());
    }
    // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, which lives for the process.
    let default = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
    if default.is_null() {
        return Err(Error::Unsupported("SQLite has no default VFS".into()));
    }
    // SAFETY: `default` is a valid VFS; we only copy its utility function pointers.
    let d = unsafe { &*default };
    let vfs = Box::new(ffi::sqlite3_vfs {
        iVersion: 2,
        szOsFile: std::mem::size_of::<VfsFile>() as c_int,
        mxPathname: 512,
        pNext: std::ptr::null_mut(),
        zName: VFS_NAME.as_ptr(),
        pAppData: std::ptr::null_mut(),
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
    let ptr = Box::into_raw(vfs);
    let mut registered = false;
    let stored = VFS.get_or_init(|| {
        registered = true;
        ptr as usize
    });
    if registered {
        // SAFETY: `ptr` is a leaked, fully initialised VFS that is never freed.
        let rc = unsafe { ffi::sqlite3_vfs_register(*stored as *mut ffi::sqlite3_vfs, 0) };
        if rc != ffi::SQLITE_OK {
            return Err(Error::Unsupported(format!(
                "cannot register the range VFS ({rc})"
            )));
        }
    } else {
        // Another thread won the race; ours was never registered.
        // SAFETY: `ptr` came from Box::into_raw above and was not shared.
        drop(unsafe { Box::from_raw(ptr) });
    }
    Ok(())
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
        (*out).file = std::ptr::null();
    }
    if name.is_null() {
        return ffi::SQLITE_CANTOPEN;
    }
    // SAFETY: a non-null zName is a NUL-terminated string owned by SQLite for this call.
    let Ok(key) = unsafe { CStr::from_ptr(name) }.to_str() else {
        return ffi::SQLITE_CANTOPEN;
    };
    let Some(range_file) = PENDING.lock().ok().and_then(|p| p.get(key).cloned()) else {
        return ffi::SQLITE_CANTOPEN;
    };
    // SAFETY: as above; the Arc is released exactly once, in x_close.
    unsafe {
        (*out).file = Arc::into_raw(range_file);
        (*out).base.pMethods = &IO_METHODS;
        if !out_flags.is_null() {
            *out_flags = ffi::SQLITE_OPEN_READONLY;
        }
    }
    ffi::SQLITE_OK
}

/// The RangeFile behind an open sqlite3_file.
///
/// # Safety
/// `file` must have been opened by `x_open` and not yet closed.
unsafe fn range_file<'a>(file: *mut ffi::sqlite3_file) -> &'a RangeFile {
    unsafe { &*(*(file as *mut VfsFile)).file }
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    let f = file as *mut VfsFile;
    // SAFETY: `file` was opened by x_open; its Arc pointer is released once and nulled.
    unsafe {
        if !(*f).file.is_null() {
            drop(Arc::from_raw((*f).file));
            (*f).file = std::ptr::null();
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
    let (range_file, out) = unsafe {
        (
            range_file(file),
            std::slice::from_raw_parts_mut(buf as *mut u8, amount.max(0) as usize),
        )
    };
    match range_file.read_at(offset.max(0) as u64, out) {
        Ok(n) if n == out.len() => ffi::SQLITE_OK,
        Ok(n) => {
            // SQLite requires the unread tail zeroed on a short read.
            out[n..].fill(0);
            ffi::SQLITE_IOERR_SHORT_READ
        }
        Err(e) => {
            LAST_ERROR.with(|last| *last.borrow_mut() = Some(e));
            ffi::SQLITE_IOERR_READ
        }
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
    unsafe { *size = range_file(file).len() as ffi::sqlite3_int64 };
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
    // No journals, WAL files or anything else exists beside a range file.
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
