//! timeline-svc as its own process. A separate process cannot share the
//! in-memory timeline cache with fanout-svc, so it needs the Redis backend.

use warble_timeline_svc::TimelineSvcConfig;
use warble_timeline_svc::config::Backend;

fn main() {
    let Some(config) = warble_mesh::config::load_for_main::<TimelineSvcConfig>("timeline-svc")
    else {
        return;
    };
    match config.backend {
        Backend::Embedded => eprintln!(
            "timeline-svc: backend = \"embedded\" keeps the timeline cache in this process's memory, \
             where fanout-svc cannot write it. Run the single-process stack (`warble dev`) \
             or set WARBLE_BACKEND=redis."
        ),
        Backend::Redis => eprintln!(
            "timeline-svc: the Redis timeline cache is not available in this build yet; \
             run the single-process stack with `warble dev`."
        ),
    }
    std::process::exit(2);
}
