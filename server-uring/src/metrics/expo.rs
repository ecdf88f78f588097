//! The Prometheus text exposition (format 0.0.4) of a [`Registry`]: every
//! shard's counters summed, the server-wide counters as they are.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::{Registry, CLOSE_EOF, CLOSE_PEER, CLOSE_SERVER_OTHER, LATENCY_BUCKETS_US, OUTCOMES, SERVER_CLOSE_CODES};
use crate::stats::RefusalReason;

/// The `Content-Type` of the exposition.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes one metric family's HELP and TYPE lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A family with a single unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\\', '"', '\n']) {
        v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").into()
    } else {
        v.into()
    }
}

impl Registry {
    /// The label value of method slot `i` (`unknown` for ids past the table).
    fn method_label(&self, i: usize) -> std::borrow::Cow<'_, str> {
        escape(self.method_names.get(i).copied().unwrap_or("unknown"))
    }

    fn sum(&self, f: impl Fn(&super::ShardMetrics) -> u64) -> u64 {
        self.shards.iter().map(|s| f(s)).sum()
    }

    /// Renders every metric.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        self.render_connections(&mut out);
        self.render_calls(&mut out);
        self.render_events(&mut out);
        out
    }

    fn render_connections(&self, out: &mut String) {
        let st = &self.stats;
        single(out, "hardlight_shards", "gauge", "Shards (executors) serving.", self.shards.len() as u64);
        single(out, "hardlight_connections_open", "gauge", "TCP connections open now.", st.open.get());
        single(out, "hardlight_connections_accepted_total", "counter", "TCP connections accepted.", st.accepted.get());
        single(
            out,
            "hardlight_connections_upgraded_total",
            "counter",
            "WebSocket upgrades completed.",
            st.upgrades.get(),
        );
        family(
            out,
            "hardlight_connections_refused_total",
            "counter",
            "Connections refused before the upgrade, by reason.",
        );
        for r in RefusalReason::ALL {
            let _ =
                writeln!(out, "hardlight_connections_refused_total{{reason=\"{}\"}} {}", r.name(), st.refused.get(r));
        }
        family(
            out,
            "hardlight_connections_refused_by_factory_total",
            "counter",
            "Connections the application's factory refused, by HTTP status.",
        );
        for (status, n) in st.refused.factory_statuses() {
            let _ = writeln!(out, "hardlight_connections_refused_by_factory_total{{status=\"{status}\"}} {n}");
        }
        family(out, "hardlight_connections_closed_total", "counter", "Upgraded connections closed, by who and code.");
        for (i, code) in SERVER_CLOSE_CODES.iter().enumerate() {
            let n = self.sum(|s| s.closes[i].get());
            let _ = writeln!(out, "hardlight_connections_closed_total{{by=\"server\",code=\"{code}\"}} {n}");
        }
        for (slot, by, code) in
            [(CLOSE_SERVER_OTHER, "server", "other"), (CLOSE_PEER, "peer", "any"), (CLOSE_EOF, "eof", "none")]
        {
            let n = self.sum(|s| s.closes[slot].get());
            let _ = writeln!(out, "hardlight_connections_closed_total{{by=\"{by}\",code=\"{code}\"}} {n}");
        }
        single(
            out,
            "hardlight_keepalive_closes_total",
            "counter",
            "Connections closed with 4002: nothing heard within the idle timeout, keepalive pings unanswered.",
            st.idle_closed.get(),
        );
        single(
            out,
            "hardlight_message_timeouts_total",
            "counter",
            "Connections closed with 4003.",
            st.message_timeouts.get(),
        );
        single(
            out,
            "hardlight_over_budget_closes_total",
            "counter",
            "Connections closed with 4004.",
            st.over_budget.get(),
        );
        single(out, "hardlight_io_errors_total", "counter", "Connections ended by a socket error.", st.io_errors.get());
        single(out, "hardlight_accept_errors_total", "counter", "Failed accepts (EMFILE...).", st.accept_errors.get());
        single(
            out,
            "hardlight_received_bytes_total",
            "counter",
            "Bytes read from upgraded connections (their upgrade requests included).",
            self.sum(|s| s.bytes_in.get()),
        );
        single(
            out,
            "hardlight_sent_bytes_total",
            "counter",
            "Bytes written to upgraded connections (their upgrade responses included).",
            self.sum(|s| s.bytes_out.get()),
        );
    }

    fn render_calls(&self, out: &mut String) {
        let slots = self.method_names.len() + 1;
        // The `unknown` slot is shown only once a call landed there.
        let shown = |i: usize| i < self.method_names.len() || self.sum(|s| s.methods[i].calls.get()) > 0;
        family(out, "hardlight_calls_total", "counter", "Calls received, by method.");
        for i in (0..slots).filter(|&i| shown(i)) {
            let n = self.sum(|s| s.methods[i].calls.get());
            let _ = writeln!(out, "hardlight_calls_total{{method=\"{}\"}} {n}", self.method_label(i));
        }
        family(
            out,
            "hardlight_calls_finished_total",
            "counter",
            "Calls finished, by method and outcome (ok, app_error, dropped, or the call error code).",
        );
        for i in (0..slots).filter(|&i| shown(i)) {
            for (o, name) in OUTCOMES.iter().enumerate() {
                let n = self.sum(|s| s.methods[i].outcomes[o].get());
                if n > 0 || o == 0 {
                    let _ = writeln!(
                        out,
                        "hardlight_calls_finished_total{{method=\"{}\",outcome=\"{name}\"}} {n}",
                        self.method_label(i)
                    );
                }
            }
        }
        family(
            out,
            "hardlight_call_duration_seconds",
            "histogram",
            "Server time per call, from the round that read it to the round that framed its reply.",
        );
        for i in (0..slots).filter(|&i| shown(i)) {
            let m = self.method_label(i);
            let mut cumulative = 0;
            for (b, le_us) in LATENCY_BUCKETS_US.iter().enumerate() {
                cumulative += self.sum(|s| s.methods[i].buckets[b].get());
                let le = *le_us as f64 / 1e6;
                let _ =
                    writeln!(out, "hardlight_call_duration_seconds_bucket{{method=\"{m}\",le=\"{le}\"}} {cumulative}");
            }
            cumulative += self.sum(|s| s.methods[i].buckets[LATENCY_BUCKETS_US.len()].get());
            let _ = writeln!(out, "hardlight_call_duration_seconds_bucket{{method=\"{m}\",le=\"+Inf\"}} {cumulative}");
            let sum = self.sum(|s| s.methods[i].sum_us.get()) as f64 / 1e6;
            let _ = writeln!(out, "hardlight_call_duration_seconds_sum{{method=\"{m}\"}} {sum}");
            let _ = writeln!(out, "hardlight_call_duration_seconds_count{{method=\"{m}\"}} {cumulative}");
        }
    }

    fn render_events(&self, out: &mut String) {
        let e = self.emitter.stats();
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        single(out, "hardlight_events_emitted_total", "counter", "Events emitted on this server.", get(&e.emitted));
        single(
            out,
            "hardlight_events_delivered_total",
            "counter",
            "Events queued for a connection (one per recipient).",
            get(&e.delivered),
        );
        family(out, "hardlight_events_dropped_total", "counter", "Events dropped by slow-consumer policy.");
        let _ = writeln!(out, "hardlight_events_dropped_total{{policy=\"drop_oldest\"}} {}", get(&e.dropped_oldest));
        let _ = writeln!(out, "hardlight_events_dropped_total{{policy=\"disconnect\"}} {}", get(&e.dropped_disconnect));
        single(
            out,
            "hardlight_mesh_full_total",
            "counter",
            "Shard deliveries refused because a shard's inbox was full.",
            get(&e.mesh_full),
        );
        let Some(b) = self.emitter.broker_stats() else { return };
        for (name, help, v) in [
            ("published", "Events the broker accepted.", b.published.get()),
            ("received", "Events from other servers received from the broker.", b.received.get()),
            ("own_received", "Own events received back from the broker.", b.own_received.get()),
            ("publish_failures", "Events whose publication failed in flight.", b.publish_failures.get()),
            ("dropped_while_down", "Events still queued at shutdown without a broker.", b.dropped_while_down.get()),
            ("queue_full", "Topic emits refused: the bridge queue was full.", b.queue_full.get()),
            ("malformed", "Broker messages that were not HardLight events.", b.malformed.get()),
            ("reconnects", "Broker connections re-established.", b.reconnects.get()),
        ] {
            single(out, &format!("hardlight_broker_{name}_total"), "counter", help, v);
        }
        single(out, "hardlight_broker_subscribed", "gauge", "Broker channels subscribed.", b.subscribed.get());
        single(out, "hardlight_broker_connected", "gauge", "1 while the broker connection is live.", b.connected.get());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
