//! A read-only SQLite VFS whose files are [`ShardPages`]: reads are served from pinned and
//! cached pages; a read of a page that is not there records it and fails (`SQLITE_IOERR_READ`),
//! and the async driver fetches it and runs the statement again (see `pages.rs`).
//!
//! SQLite asks a VFS to open a file by name; each `ShardPages` is registered under a unique name
//! just long enough for the open to pick it up, and the opened file keeps its own reference.
//! Everything that would write answers `SQLITE_READONLY`; files report
//! `SQLITE_IOCAP_IMMUTABLE`, so SQLite takes no locks and looks for no journal. wasm32 is
//! single-threaded, hence `Rc` and thread-locals.

use crate::error::{Error, Result};
use crate::pages::ShardPages;
use rusqlite::{ffi, Connection, OpenFlags};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::rc::Rc;

const VFS_NAME: &CStr = c"edgeshard-fetch";

thread_local! {
    /// Files waiting for SQLite's xOpen, by name.
    static PENDING: RefCell<HashMap<String, Rc<ShardPages>>> = RefCell::new(HashMap::new());
    static NEXT_ID: Cell<u64> = const { Cell::new(1) };
    /// The registered VFS (leaked: SQLite keeps a pointer to it for the life of the module).
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Opens a read-only SQLite connection over `pages`.
pub fn open_connection(pages: Rc<ShardPages>, url: &str) -> Result<Connection> {
    register_vfs()?;
    let id = NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    });
    let name = format!("shard-{id}.db");
    PENDING.with(|p| p.borrow_mut().insert(name.clone(), pages.clone()));
    let opened = Connection::open_with_flags_and_vfs(
        format!("file:{name}?immutable=1"),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        VFS_NAME,
    );
    // The opened file holds its own reference now (or the open failed): forget the name.
    PENDING.with(|p| p.borrow_mut().remove(&name));
    opened.map_err(|e| Error::CorruptShard {
        db_id: pages.slot,
        url: url.to_string(),
        detail: e.to_string(),
    })
}

#[repr(C)]
struct VfsFile {
    /// Must come first: SQLite sees a `sqlite3_file*`.
    base: ffi::sqlite3_file,
    /// `Rc::into_raw` of the pages; released in xClose.
    pages: *const ShardPages,
}

fn register_vfs() -> Result<()> {
    if REGISTERED.with(Cell::get) {
        return Ok(());
    }
    // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS (sqlite-wasm-rs's memory VFS,
    // installed by sqlite3_os_init), which lives as long as the module.
    let default = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
    if default.is_null() {
        return Err(Error::Unsupported("SQLite has no default VFS".into()));
    }
    // SAFETY: `default` is a valid VFS; its utility functions (randomness, clock, sleep, last
    // error) are copied together with the app data they read (sqlite-wasm-rs keeps its host
    // callbacks there).
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
    let ptr = Box::into_raw(vfs);
    // SAFETY: `ptr` is a leaked, fully initialised VFS that is never freed.
    let rc = unsafe { ffi::sqlite3_vfs_register(ptr, 0) };
    if rc != ffi::SQLITE_OK {
        return Err(Error::Unsupported(format!(
            "cannot register the fetch VFS (SQLite code {rc})"
        )));
    }
    REGISTERED.with(|r| r.set(true));
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
        (*out).pages = std::ptr::null();
    }
    if name.is_null() {
        return ffi::SQLITE_CANTOPEN;
    }
    // SAFETY: a non-null zName is a NUL-terminated string owned by SQLite for this call.
    let Ok(key) = unsafe { CStr::from_ptr(name) }.to_str() else {
        return ffi::SQLITE_CANTOPEN;
    };
    let Some(pages) = PENDING.with(|p| p.borrow().get(key).cloned()) else {
        return ffi::SQLITE_CANTOPEN;
    };
    // SAFETY: as above; the Rc is released exactly once, in x_close.
    unsafe {
        (*out).pages = Rc::into_raw(pages);
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
    // SAFETY: `file` was opened by x_open; its Rc pointer is released once and nulled.
    unsafe {
        if !(*f).pages.is_null() {
            drop(Rc::from_raw((*f).pages));
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
    // No journals, WAL files or anything else exists beside a shard.
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
