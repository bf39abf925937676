//! The panic boundary, argument conversion and the per-thread last error.

use super::{herald_server, herald_status};
use crate::error::{Error, ErrorKind, Result};
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
    static LAST_STATUS: Cell<herald_status> = const { Cell::new(herald_status::HERALD_OK) };
}

fn set_last_error(message: &str) {
    let message = CString::new(message.replace('\0', "\\0")).expect("NULs were escaped");
    LAST_ERROR.with(|last| *last.borrow_mut() = message);
}

pub(super) fn last_error() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

pub(super) fn last_status() -> herald_status {
    LAST_STATUS.with(Cell::get)
}

fn panic_error(payload: Box<dyn std::any::Any + Send>) -> Error {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Error::new(
        ErrorKind::Panic,
        format!("internal error (panic): {detail}"),
    )
}

fn fail(error: Error) -> herald_status {
    set_last_error(error.message());
    let status = error.kind().into();
    LAST_STATUS.with(|last| last.set(status));
    status
}

/// Runs a call behind the panic boundary and turns its result into a status.
pub(super) fn guard(call: impl FnOnce() -> Result<()>) -> herald_status {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(())) => herald_status::HERALD_OK,
        Ok(Err(error)) => fail(error),
        Err(payload) => fail(panic_error(payload)),
    }
}

/// Like [`guard`] for calls that return a handle: NULL on failure.
pub(super) fn guard_ptr(call: impl FnOnce() -> Result<*mut herald_server>) -> *mut herald_server {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(Ok(ptr)) => ptr,
        Ok(Err(error)) => {
            fail(error);
            std::ptr::null_mut()
        }
        Err(payload) => {
            fail(panic_error(payload));
            std::ptr::null_mut()
        }
    }
}

/// Borrows a required C string argument as UTF-8.
pub(super) fn c_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str> {
    optional_c_str(ptr, name)?
        .ok_or_else(|| Error::new(ErrorKind::NullArgument, format!("{name} is NULL")))
}

/// Borrows an optional C string argument as UTF-8.
pub(super) fn optional_c_str<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller passes a NUL-terminated string that outlives the call.
    let bytes = unsafe { CStr::from_ptr(ptr) };
    bytes.to_str().map(Some).map_err(|e| {
        Error::new(
            ErrorKind::InvalidUtf8,
            format!("{name} is not valid UTF-8: {e}"),
        )
    })
}

/// Writes an owned string to an out-parameter; the only place outputs are written.
pub(super) fn write_string(out: *mut *mut c_char, name: &str, value: String) -> Result<()> {
    if out.is_null() {
        return Err(Error::new(
            ErrorKind::NullArgument,
            format!("{name} is NULL"),
        ));
    }
    let value = CString::new(value)
        .map_err(|_| Error::new(ErrorKind::Panic, "output contained a NUL byte"))?;
    // SAFETY: checked non-NULL; the caller passes a writable pointer.
    unsafe { *out = value.into_raw() };
    Ok(())
}

/// A host's `user_data` pointer, handed back untouched to the host's own callback.
pub(super) struct UserData(*mut c_void);

// SAFETY: Herald never dereferences it; by registering a callback the host vouches that
// its callback may receive the pointer on Herald's threads.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}

impl UserData {
    pub fn new(pointer: *mut c_void) -> Self {
        UserData(pointer)
    }

    // A method, so closures capture the whole wrapper rather than its raw field.
    pub fn get(&self) -> *mut c_void {
        self.0
    }
}
