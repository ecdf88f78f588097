//! The bridge's pub/sub traffic (split from `mod.rs`, which runs the
//! connection and its outages): keeping the subscriptions equal to the
//! topics some shard follows, publishing queued topic events through the
//! numbering script in pipelined batches, and routing what arrives on
//! subscribed channels to the shards.

use std::sync::Arc;

use hardlight_core::broker::{decode_broker_message, encode_broker_prefix};
use hardlight_core::resume::MAX_TOPIC_LEN;
use redis::{PushInfo, PushKind, Value};

use super::{origin_id, Bridge, PUBLISH_BATCH, RECEIVE_BATCH};
use crate::events::Publish;

impl Bridge {
    /// SUBSCRIBEs and UNSUBSCRIBEs until the live connection's channels are
    /// exactly the topics some shard needs. One channel per command,
    /// pipelined: each topic's outcome is known, and replies stay paired
    /// with commands even on redis-rs versions that paired a multi-channel
    /// SUBSCRIBE's extra confirmations with later commands (its issue 2423).
    pub(super) async fn reconcile(&mut self) {
        let to_add: Vec<Arc<str>> = self.counts.keys().filter(|t| !self.subscribed.contains(*t)).cloned().collect();
        let to_remove: Vec<Arc<str>> =
            self.subscribed.iter().filter(|t| !self.counts.contains_key(*t)).cloned().collect();
        for (topics, subscribe) in [(to_add, true), (to_remove, false)] {
            for chunk in topics.chunks(PUBLISH_BATCH) {
                let Some(live) = &self.live else {
                    return;
                };
                let calls = chunk.iter().map(|t| {
                    let mut conn = live.conn.clone();
                    let channel = self.channel_name(t);
                    async move {
                        if subscribe {
                            conn.subscribe(channel).await
                        } else {
                            conn.unsubscribe(channel).await
                        }
                    }
                });
                let results = futures::future::join_all(calls).await;
                for (t, r) in chunk.iter().zip(results) {
                    match r {
                        Ok(()) if subscribe => {
                            self.subscribed.insert(t.clone());
                        }
                        Ok(()) => {
                            self.subscribed.remove(t);
                        }
                        Err(e) => {
                            let verb = if subscribe { "SUBSCRIBE" } else { "UNSUBSCRIBE" };
                            self.lost(&format!("{verb} failed: {e}"));
                            return;
                        }
                    }
                }
            }
        }
        self.stats.subscribed.set(self.subscribed.len() as u64);
        self.dirty = false;
    }

    /// Publishes up to one batch of queued events through [`PUBLISH_LUA`].
    /// Returns whether there was any. Without a connection, events wait.
    pub(super) async fn publish_batch(&mut self) -> bool {
        if self.live.is_none() {
            return false;
        }
        let mut batch: Vec<Publish> = std::mem::take(&mut self.parked);
        while batch.len() < PUBLISH_BATCH {
            match self.inbox.publish.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            return false;
        }
        // A subscription made before one of these emits (say, a handler
        // that subscribes its connection, then emits to the topic) must be
        // on Redis before the event is published, or this server would not
        // receive its own event: its interest was queued before the event,
        // so it is in the control queue now.
        self.drain_control();
        if self.dirty {
            self.reconcile().await;
            if self.live.is_none() {
                // The batch waits for the next connection, in order.
                self.requeue(batch);
                return true;
            }
        }
        let n = batch.len() as u64;
        let max_age_ms = self.limits.max_age.as_millis().max(1) as u64;
        let mut pipe = redis::pipe();
        for p in &batch {
            encode_broker_prefix(&mut self.payload, self.origin, &p.event);
            pipe.cmd("EVALSHA")
                .arg(&self.publish_sha)
                .arg(2)
                .arg(self.key(&p.topic, "meta"))
                .arg(self.key(&p.topic, "log"))
                .arg(self.channel_name(&p.topic))
                .arg(&self.payload[..])
                .arg(p.event.archive())
                .arg(origin_id() % 2048)
                .arg(self.limits.max_events)
                .arg(max_age_ms)
                .ignore();
        }
        let live = self.live.as_mut().expect("checked above");
        match pipe.exec_async(&mut live.conn).await {
            Ok(()) => self.stats.published.add(n),
            Err(e) => {
                // Whether Redis ran them is unknown (the reply was lost):
                // publishing them again could number one event twice.
                self.stats.publish_failures.add(n);
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error() {
                    self.lost(&format!("publishing failed: {e}"));
                } else {
                    tracing::warn!(error = %e, events = n, "broker refused the publish script; events not sent");
                }
            }
        }
        true
    }

    /// Puts a batch taken off the queue back in front of it (the connection
    /// was lost before it was sent). The bridge owns the queue's receiving
    /// end, so it parks them until the next publish round.
    pub(super) fn requeue(&mut self, batch: Vec<Publish>) {
        self.parked = batch;
    }

    /// Handles messages already received, without waiting. Returns whether
    /// there were any.
    pub(super) fn drain_pushes(&mut self) -> bool {
        let mut any = false;
        for _ in 0..RECEIVE_BATCH {
            let Some(live) = &mut self.live else {
                break;
            };
            let Ok(p) = live.pushes.try_recv() else {
                break;
            };
            any = true;
            if !self.handle_push(p) {
                self.lost("the broker closed the connection");
            }
        }
        any
    }

    /// Returns false when the push reports that the connection is gone.
    pub(super) fn handle_push(&mut self, p: PushInfo) -> bool {
        match p.kind {
            PushKind::Message => {
                if let [Value::BulkString(channel), Value::BulkString(payload)] = &p.data[..] {
                    self.deliver(channel, payload);
                } else {
                    self.malformed("message push without channel and payload");
                }
                true
            }
            PushKind::Disconnection => false,
            // Confirmations of our own SUBSCRIBE/UNSUBSCRIBE.
            _ => true,
        }
    }

    pub(super) fn deliver(&mut self, channel: &[u8], payload: &[u8]) {
        let topic =
            channel.strip_prefix(self.config.channel_prefix.as_bytes()).and_then(|t| std::str::from_utf8(t).ok());
        let Some(topic) = topic else {
            self.malformed("channel outside the prefix or not UTF-8");
            return;
        };
        match decode_broker_message(payload) {
            Ok(m) => {
                if m.origin == self.origin {
                    self.stats.own_received.inc();
                } else {
                    self.stats.received.inc();
                }
                let emitter = self.emitter.as_ref().expect("set at start");
                let framed = (topic.len() <= MAX_TOPIC_LEN).then(|| m.to_positioned(topic));
                if let Err(e) = emitter.route_positioned(topic.into(), m.position, m.to_event(), framed) {
                    tracing::debug!(error = %e, topic, "event from the broker not routed to every shard");
                }
            }
            Err(e) => self.malformed(&e.to_string()),
        }
    }

    pub(super) fn malformed(&self, why: &str) {
        self.stats.malformed.inc();
        let n = self.stats.malformed.get();
        if n.is_power_of_two() {
            tracing::warn!(why, total = n, "ignored a broker message that is not a HardLight event");
        }
    }

    /// On shutdown: publish what is still queued, or, without a
    /// connection, count it as dropped. Bounded: at most one queue's worth
    /// of batches (emitters outside the server may go on emitting), each
    /// within the response timeout.
    pub(super) async fn flush(&mut self) {
        for _ in 0..=self.config.queue_capacity / PUBLISH_BATCH {
            if !self.publish_batch().await {
                break;
            }
        }
        let left = (self.parked.len() + self.inbox.publish.try_iter().count()) as u64;
        self.stats.dropped_while_down.add(left);
    }
}
