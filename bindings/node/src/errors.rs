//! Core errors as JS errors whose `code` is `HERALD_<KIND>`.

use napi::bindgen_prelude::*;
use napi::Env;

/// JS error code for a core error kind: `invalid_json` -> `HERALD_INVALID_JSON`.
pub(crate) fn code_of(kind: herald::ErrorKind) -> String {
    format!("HERALD_{}", kind.as_str().to_ascii_uppercase())
}

/// A core error as a napi error whose status string becomes the JS `code`.
pub(crate) fn herald_err(e: herald::Error) -> napi::Error<String> {
    napi::Error::new(code_of(e.kind()), e.message().to_string())
}

/// Builds a JS `Error` with a custom `code` for the async (promise) paths,
/// whose error type is fixed to `napi::Error<Status>`: the error object is
/// created here and carried by reference, so the promise rejects with it as is.
pub(crate) fn js_error(env: &Env, code: &str, message: &str) -> napi::Error {
    let made = (|| -> Result<napi::Error> {
        let mut err = env.create_error(napi::Error::new(Status::GenericFailure, message))?;
        err.set_named_property("code", code)?;
        Ok(napi::Error::from(err.into_unknown(env)?))
    })();
    made.unwrap_or_else(|e| e)
}

/// A core error as the JS `Error` (code `HERALD_<KIND>`) a function made with
/// `create_function_from_closure` throws: its error type carries no custom code, so the
/// error object is built here, as for the async paths.
pub(crate) fn thrown(env: &Env, e: herald::Error) -> napi::Error {
    js_error(env, &code_of(e.kind()), e.message())
}
