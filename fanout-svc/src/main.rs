//! fanout-svc as its own process. A separate process cannot share the
//! in-memory timeline cache with timeline-svc, so it needs the Redis backend.

use warble_fanout_svc::FanoutSvcConfig;
use warble_fanout_svc::config::Backend;

fn main() {
    let Some(config) = warble_mesh::config::load_for_main::<FanoutSvcConfig>("fanout-svc") else {
        return;
    };
    match config.backend {
        Backend::Embedded => {
            eprintln!(
                "fanout-svc: backend = \"embedded\" keeps the timeline cache in this process's memory, \
                 where timeline-svc cannot read it. Run the single-process stack (`warble dev`) \
                 or set WARBLE_BACKEND=redis."
            );
        }
        Backend::Redis => {
            eprintln!(
                "fanout-svc: the Redis timeline cache and event log are not available in this build yet; \
                 run the single-process stack with `warble dev`."
            );
        }
    }
    std::process::exit(2);
}
