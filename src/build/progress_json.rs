//! `--progress=rawjson`: one JSON object per line on stderr, in the shape of BuildKit's
//! `SolveStatus` (what `docker buildx build --progress=rawjson` prints), each object carrying
//! one change. The schema is documented in docs/user-guide.md ("Progress output"):
//!
//! - `{"vertexes":[{"digest","inputs","name","started","completed"?,"cached","error"?}]}` —
//!   a step started (no `completed`) or ended;
//! - `{"statuses":[{"id","vertex"?,"name","current","total","timestamp","started","completed"?}]}`
//!   — a blob transfer of the step `vertex` (at most one line per transfer each 100 ms,
//!   plus one at each change of `name` and at the end);
//! - `{"logs":[{"vertex"?,"stream","data","timestamp"}]}` — output of a step (`stream` 1: a
//!   RUN's stdout and stderr share one pipe) or a message of the build itself (`stream` 2);
//!   `data` is base64 of the raw bytes, newline included.
//!
//! Times are RFC 3339 in UTC with nanoseconds.

use std::time::SystemTime;

use base64::Engine as _;
use serde_json::{Value, json};

use super::progress::{Step, Xfer};
use crate::digest::Digest;

fn time(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    crate::timefmt::rfc3339_nanos(d.as_secs() as i64, d.subsec_nanos())
}

fn line(v: Value) -> String {
    let mut s = v.to_string();
    s.push('\n');
    s
}

/// A step's state.
pub fn vertex(s: &Step) -> String {
    let mut v = json!({
        "digest": s.digest.to_string(),
        "inputs": [],
        "name": s.name,
        "started": time(s.started),
        "cached": s.cached,
    });
    if let Some(c) = s.completed {
        v["completed"] = time(c).into();
    }
    if let Some(e) = &s.error {
        v["error"] = e.as_str().into();
    }
    line(json!({ "vertexes": [v] }))
}

/// A transfer's state.
pub fn status(x: &Xfer, vertex: Option<&Digest>) -> String {
    let mut v = json!({
        "id": x.digest.to_string(),
        "name": x.action,
        "current": x.current,
        "total": x.total,
        "timestamp": time(SystemTime::now()),
        "started": time(x.started),
    });
    if let Some(d) = vertex {
        v["vertex"] = d.to_string().into();
    }
    if let Some(c) = x.completed {
        v["completed"] = time(c).into();
    }
    line(json!({ "statuses": [v] }))
}

fn log_entry(vertex: Option<&Digest>, stream: u8, data: &[u8]) -> String {
    let mut v = json!({
        "stream": stream,
        "data": base64::engine::general_purpose::STANDARD.encode(data),
        "timestamp": time(SystemTime::now()),
    });
    if let Some(d) = vertex {
        v["vertex"] = d.to_string().into();
    }
    line(json!({ "logs": [v] }))
}

/// One line of a step's output (`raw` without its newline; the newline is added back).
pub fn log(vertex: &Digest, stream: u8, raw: &[u8]) -> String {
    let mut data = raw.to_vec();
    data.push(b'\n');
    log_entry(Some(vertex), stream, &data)
}

/// A message of the build itself, on stream 2.
pub fn message(vertex: Option<&Digest>, data: &[u8]) -> String {
    log_entry(vertex, 2, data)
}
