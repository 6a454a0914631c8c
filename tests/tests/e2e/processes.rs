//! The frontend cases against the services as separate processes, with
//! Redis as timeline cache and event stream: the production topology.

use warble_tests::processes::ProcessStack;

frontend_cases! { #[tokio::test(flavor = "multi_thread")] ProcessStack::start }
