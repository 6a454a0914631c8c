//! Crash points for the crash tests.
//!
//! A crash test must kill a real process at an exact point, such as
//! between publishing an event and marking it published. With
//! `WARBLE_FAILPOINT=<name>` (and `WARBLE_FAILPOINT_FILE=<path>`), the first
//! time a process reaches the point named `<name>` it writes the name to
//! that file and then stops that task for good, holding everything it had
//! not yet done; the test sees the file and kills the process with SIGKILL,
//! so nothing after the point ever runs, as in a real crash. Other points,
//! and the same point reached again by another task, pass.
//!
//! Unset, as always outside the crash tests, a point costs one check of a
//! value read once per process.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The armed point and where to announce it, read once from the environment.
fn armed() -> Option<&'static (String, PathBuf)> {
    static ARMED: OnceLock<Option<(String, PathBuf)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let name = std::env::var("WARBLE_FAILPOINT").ok()?;
            let file = std::env::var_os("WARBLE_FAILPOINT_FILE")?;
            Some((name, PathBuf::from(file)))
        })
        .as_ref()
}

/// The crash point `name`: returns at once unless it is the armed point
/// reached for the first time, in which case it announces itself and never
/// returns (see the module docs).
pub async fn reached(name: &'static str) {
    static FIRED: AtomicBool = AtomicBool::new(false);
    let Some((armed, file)) = armed() else {
        return;
    };
    if armed != name || FIRED.swap(true, Ordering::SeqCst) {
        return;
    }
    tracing::warn!(failpoint = name, "failpoint reached: waiting to be killed");
    if let Err(error) = std::fs::write(file, name) {
        tracing::error!(failpoint = name, %error, "cannot announce the failpoint");
    }
    std::future::pending::<()>().await;
}
