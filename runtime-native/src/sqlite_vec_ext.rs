//! Registers the sqlite-vec extension with every SQLite connection this process opens.

use std::sync::Once;

static REGISTER: Once = Once::new();

/// Makes `vec0` available to all connections opened afterwards. Idempotent.
pub fn register() {
    REGISTER.call_once(|| {
        // SAFETY: `sqlite3_vec_init` has exactly the signature SQLite expects of an extension
        // entry point; sqlite3_auto_extension only stores the pointer and calls it on each open.
        unsafe {
            let init: unsafe extern "C" fn(
                *mut rusqlite::ffi::sqlite3,
                *mut *mut std::os::raw::c_char,
                *const rusqlite::ffi::sqlite3_api_routines,
            ) -> std::os::raw::c_int =
                std::mem::transmute(sqlite_vec::sqlite3_vec_init as *const ());
            rusqlite::ffi::sqlite3_auto_extension(Some(init));
        }
    });
}

/// The sqlite-vec version compiled in (for diagnostics and tests).
pub fn version() -> rusqlite::Result<String> {
    register();
    let conn = rusqlite::Connection::open_in_memory()?;
    conn.query_row("SELECT vec_version()", [], |r| r.get(0))
}
