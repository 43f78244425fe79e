//! OPA v1 in this process: `libopabridge.so` from the PyPI wheel `opa-golib-python-bindings`
//! (OPA's Go `rego` package built as a C shared library), opened with `libloading`.
//! `bench/opa.sh` downloads the pinned wheel and prints the library's path.
//!
//! The bridge's calls take NUL-terminated UTF-8 and return a `malloc`ed JSON envelope,
//! `{"result": ...}` or `{"error": {"code", "message"}}`, which `OpaFreeString` frees.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::Path;

use libloading::Library;
use serde_json::Value;

type NewFn = unsafe extern "C" fn() -> u64;
type DestroyFn = unsafe extern "C" fn(u64);
type FreeFn = unsafe extern "C" fn(*mut c_char);
type AddFn = unsafe extern "C" fn(u64, *const c_char, *const c_char) -> *mut c_char;
type EvalFn = unsafe extern "C" fn(u64, *const c_char, *const c_char, c_int, c_int) -> *mut c_char;

/// One OPA engine: policies and data added once, documents evaluated many times.
pub struct Opa {
    handle: u64,
    destroy: DestroyFn,
    free: FreeFn,
    add_policy: AddFn,
    add_data: AddFn,
    eval_document: EvalFn,
    // Last, so that it is dropped (unloaded) after everything that points into it.
    _library: Library,
}

/// A document path and an input, as the bridge takes them, made once and evaluated many times.
pub struct Query {
    path: CString,
    input: CString,
}

impl Query {
    /// `path` is below `data` (`approvals.decision`); `input` is JSON text.
    pub fn new(path: &str, input: &str) -> Result<Self, String> {
        Ok(Self {
            path: CString::new(path).map_err(|e| e.to_string())?,
            input: CString::new(input).map_err(|e| e.to_string())?,
        })
    }
}

impl Opa {
    pub fn load(library: &Path) -> Result<Self, String> {
        // SAFETY: the library is the pinned OPA bridge; its exported functions have these
        // C signatures (the wheel's own ctypes declarations, `opa_bindings/_native.py`).
        unsafe {
            let lib = Library::new(library)
                .map_err(|e| format!("cannot load {}: {e}", library.display()))?;
            let new = *lib.get::<NewFn>(b"OpaNew\0").map_err(|e| e.to_string())?;
            let opa = Self {
                handle: new(),
                destroy: *lib.get(b"OpaDestroy\0").map_err(|e| e.to_string())?,
                free: *lib.get(b"OpaFreeString\0").map_err(|e| e.to_string())?,
                add_policy: *lib.get(b"OpaAddPolicy\0").map_err(|e| e.to_string())?,
                add_data: *lib.get(b"OpaAddData\0").map_err(|e| e.to_string())?,
                eval_document: *lib.get(b"OpaEvalDocument\0").map_err(|e| e.to_string())?,
                _library: lib,
            };
            Ok(opa)
        }
    }

    pub fn add_policy(&self, path: &str, source: &str) -> Result<(), String> {
        let (path, source) = (cstring(path)?, cstring(source)?);
        // SAFETY: valid handle and NUL-terminated strings that outlive the call.
        let envelope = unsafe { (self.add_policy)(self.handle, path.as_ptr(), source.as_ptr()) };
        self.take(envelope).map(drop)
    }

    /// Deep-merges `json` (an object) into the root of `data`.
    pub fn add_data(&self, json: &str) -> Result<(), String> {
        let (path, json) = (cstring("")?, cstring(json)?);
        // SAFETY: as in `add_policy`.
        let envelope = unsafe { (self.add_data)(self.handle, path.as_ptr(), json.as_ptr()) };
        self.take(envelope).map(drop)
    }

    /// Evaluates the query and returns the envelope, unread: the call the benchmark times.
    pub fn evaluate(&self, query: &Query) -> Envelope<'_> {
        // SAFETY: as in `add_policy`; no coverage, no trace.
        let pointer = unsafe {
            (self.eval_document)(self.handle, query.path.as_ptr(), query.input.as_ptr(), 0, 0)
        };
        Envelope { opa: self, pointer }
    }

    /// The document's value, or the error OPA gave.
    pub fn document(&self, query: &Query) -> Result<Value, String> {
        let result = self.evaluate(query).read()?;
        result
            .pointer("/0/expressions/0/value")
            .cloned()
            .ok_or_else(|| format!("{} is undefined", query.path.to_string_lossy()))
    }

    fn take(&self, pointer: *mut c_char) -> Result<Value, String> {
        Envelope { opa: self, pointer }.read()
    }
}

impl Drop for Opa {
    fn drop(&mut self) {
        // SAFETY: the handle came from OpaNew and is destroyed once.
        unsafe { (self.destroy)(self.handle) }
    }
}

/// A result the bridge returned; freed when dropped.
pub struct Envelope<'a> {
    opa: &'a Opa,
    pointer: *mut c_char,
}

impl Envelope<'_> {
    /// The envelope's `result`, or its `error` as text.
    pub fn read(self) -> Result<Value, String> {
        if self.pointer.is_null() {
            return Err("the OPA bridge returned NULL".into());
        }
        // SAFETY: a non-NULL envelope is a NUL-terminated string the bridge allocated.
        let text = unsafe { CStr::from_ptr(self.pointer) }.to_string_lossy();
        let mut envelope: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        match envelope.get("error") {
            Some(error) if !error.is_null() => Err(error.to_string()),
            _ => Ok(envelope["result"].take()),
        }
    }
}

impl Drop for Envelope<'_> {
    fn drop(&mut self) {
        if !self.pointer.is_null() {
            // SAFETY: freed once, with the bridge's own free.
            unsafe { (self.opa.free)(self.pointer) }
        }
    }
}

fn cstring(text: &str) -> Result<CString, String> {
    CString::new(text).map_err(|_| "a string passed to OPA contains NUL".to_string())
}
