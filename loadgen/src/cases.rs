//! The cases of the standard `bench` suite, and picking some by key.

use crate::engine::{Arrival, Mode};
use crate::scenario::Scenario;

/// One case of the standard suite.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short key used in run names, e.g. `closed-64x1`.
    pub key: String,
    /// Connections.
    pub connections: usize,
    /// Mode.
    pub mode: Mode,
    /// The scenario, when the case needs one only HardLight serves (its
    /// own service: `state`, `fanout`); `None`: `echo64` for HardLight
    /// servers, `raw-echo` 64 B for the plain echo peers.
    pub scenario: Option<Scenario>,
}

impl Case {
    /// Whether only the embedded HardLight server can serve this case.
    pub fn hardlight_only(&self) -> bool {
        self.scenario.is_some()
    }
}

/// The standard suite: closed 64x1, closed 64x16, open 100k/s, 50k/s,
/// 20k/s and 2k/s Poisson over 64 (20k/s: CPU per call at one message per
/// wake-up with headroom; 2k/s: system calls per call when the server
/// sleeps between messages, the runtime's fixed cost), and two cases of what HardLight adds to
/// plain RPC: `state` (closed 64x16, a STATE message before every
/// response: the cost of state sync beside `closed-64x16`) and `fanout`
/// (500 emits/s from one connection to 63 subscribers, 31.5k deliveries/s:
/// under the 50k/s that still leaves headroom here).
///
/// On the 2-core VM this was written on, one TCP segment costs each side
/// about 10 us of CPU (syscall plus the loopback receive path, which runs
/// on the sender's core), and in open loop over 64 connections almost
/// every call is its own segment both ways. So at 100k/s the client and
/// the server each need about a whole core: that case measures a saturated
/// pair. The 50k/s case is latency under load with headroom on both sides.
pub fn standard_cases() -> Vec<Case> {
    let open = |k: u32| Case {
        key: format!("open-{k}k-64"),
        connections: 64,
        mode: Mode::Open { rate: k as f64 * 1000.0, arrival: Arrival::Poisson },
        scenario: None,
    };
    let closed = |k: usize| Case {
        key: format!("closed-64x{k}"),
        connections: 64,
        mode: Mode::Closed { in_flight: k },
        scenario: None,
    };
    vec![
        closed(1),
        closed(16),
        open(100),
        open(50),
        open(20),
        open(2),
        Case { key: "state-closed-64x16".into(), scenario: Some(Scenario::State), ..closed(16) },
        Case {
            key: "fanout-open-500-64".into(),
            connections: 64,
            mode: Mode::Open { rate: 500.0, arrival: Arrival::Poisson },
            scenario: Some(Scenario::Fanout),
        },
    ]
}

/// Selects cases by key (comma-separated); empty selects all.
pub fn select_cases(keys: &str) -> Result<Vec<Case>, String> {
    let all = standard_cases();
    if keys.trim().is_empty() {
        return Ok(all);
    }
    keys.split(',')
        .map(|k| {
            all.iter().find(|c| c.key == k.trim()).cloned().ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|c| c.key.as_str()).collect();
                format!("unknown case `{k}` ({})", names.join(", "))
            })
        })
        .collect()
}
