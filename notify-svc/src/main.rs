//! The `notify-svc` binary (being wired up).

fn main() {}
