//! `drain()`: waits for the clients to read what was published, on the libuv pool so
//! the JS thread keeps running (and the readers with it).

use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::Env;

use crate::errors::{code_of, js_error};

pub struct DrainTask {
    server: herald::Server,
    timeout: Duration,
}

impl DrainTask {
    pub(crate) fn new(server: herald::Server, timeout: Duration) -> Self {
        DrainTask { server, timeout }
    }
}

impl Task for DrainTask {
    type Output = std::result::Result<(), herald::Error>;
    type JsValue = ();

    fn compute(&mut self) -> Result<Self::Output> {
        Ok(self.server.wait_drained(self.timeout))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> Result<()> {
        output.map_err(|e| js_error(&env, &code_of(e.kind()), e.message()))
    }
}
