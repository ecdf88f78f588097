//! `loadgen`: a load generator for HardLight and plain WebSocket servers.
//!
//! One pinned thread drives every connection from an `epoll` loop with
//! pre-encoded, masked request frames ([`engine`]); latencies go into
//! HdrHistograms and are written as `.hgrm` percentile distributions, V2
//! interval logs and `summary.json` ([`report`]); runs can be compared side
//! by side with a percentile plot ([`compare`]). The `bench` suite starts the
//! glommio server in-process and, optionally, peer baseline servers
//! ([`suite`], [`server`]). The machine's latency floor ([`floor`]) and
//! both sides' CPU time ([`cpu`]) and the server's system calls
//! ([`syscount`]) over the same window ([`window`]) are measured with every run so a figure
//! can be told apart from the machine and from the client itself.

pub mod cases;
pub mod cli;
pub mod compare;
pub mod cpu;
pub mod engine;
pub mod floor;
pub mod hgrm;
pub mod machine;
pub mod plot;
pub mod pushed;
pub mod report;
pub mod scenario;
pub mod server;
pub mod storm;
pub mod suite;
pub mod syscount;
pub mod table;
pub mod window;
pub mod ws;
