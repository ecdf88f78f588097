//! The broker side of topic logs (split from `mod.rs`, which runs the
//! connection, the subscriptions and pub/sub): the two Lua scripts that
//! number, keep and read a topic's events in Redis, and the bridge's work
//! with them: reading streams for replays this server's cache does not
//! cover (merged per topic, bounded per round trip, answered to every
//! shard) and, after a reconnect, reading what it missed.

use std::sync::Arc;

use hardlight_core::broker::decode_broker_message;
use hardlight_core::resume::{Fetched, Position, MAX_TOPIC_LEN};
use hardlight_core::EncodedEvent;
use redis::Value;

use super::Bridge;

/// Topics whose stream is read per pipeline round trip at most.
const FETCH_BATCH: usize = 64;

/// Gives a topic event its position, keeps it and publishes it, atomically.
/// `KEYS`: the topic's meta hash and stream. `ARGV`: channel, payload
/// prefix (magic, version, origin, type), archive, a random number below
/// 2048, max events, max age in ms.
///
/// A topic's life (epoch) starts at its first event, or the first after
/// the meta hash expired (idle longer than the history's age) or was lost
/// (Redis restarted without persistence); the old stream is deleted then.
/// The epoch is Redis's clock in ms times 2048 plus the random number: it
/// grows from one life to the next, so a server that meets two lives of a
/// topic knows which is newer, and stays below 2^53, so Lua's numbers hold
/// it exactly. The stream id is `<offset>-0`, so a range of offsets is a
/// range of ids; MAXLEN is exact so that the retained count is the
/// configured one.
pub(crate) const PUBLISH_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  redis.call('DEL', KEYS[2])
  epoch = string.format('%d', now * 2048 + tonumber(ARGV[4]))
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'head', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'head', 1)
local msg = ARGV[2] .. struct.pack('<I8I8', tonumber(epoch), offset) .. ARGV[3]
if tonumber(ARGV[5]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], offset .. '-0', 'p', msg, 't', now)
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[1], msg)
return offset
";

/// Reads a topic's stream. `KEYS`: meta hash and stream. `ARGV`: the epoch
/// the caller knows (`0`: none), the offset after which it wants events,
/// how many at most (0: only where the topic stands). Returns `{epoch,
/// after, head, now_ms, entries}`: epoch `0` when Redis holds no life of
/// the topic; `after` is the caller's offset when its epoch is the
/// current one, else 0 (everything retained); entries are the newest ones
/// after `after`, newest first, so that they end at the head even if the
/// stream holds more than asked.
pub(crate) const FETCH_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'head')
if not meta[1] then
  return {'0', 0, 0, now, {}}
end
local after = 0
if meta[1] == ARGV[1] then
  after = tonumber(ARGV[2])
end
local entries = {}
if tonumber(ARGV[3]) > 0 then
  entries = redis.call('XREVRANGE', KEYS[2], '+', (after + 1) .. '-0', 'COUNT', ARGV[3])
end
return {meta[1], after, tonumber(meta[2]), now, entries}
";

/// An answer still owed to some shards.
pub(super) type Undelivered = (Arc<str>, Arc<Option<Fetched>>, Vec<usize>);

/// What one stream read must cover: every request for the topic since the
/// last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Want {
    /// The epoch asked about (0: none or several: read everything).
    epoch: u64,
    after: u64,
    /// Every request was a new subscription: only the head is needed.
    head_only: bool,
}

impl Want {
    pub(super) fn new(from: Option<Position>) -> Self {
        match from {
            Some(p) => Self { epoch: p.epoch, after: p.offset, head_only: false },
            None => Self { epoch: 0, after: 0, head_only: true },
        }
    }

    /// One read that answers both.
    pub(super) fn merge(self, other: Want) -> Want {
        match (self.head_only, other.head_only) {
            (true, _) => other,
            (_, true) => self,
            _ if self.epoch == other.epoch => Want { after: self.after.min(other.after), ..self },
            _ => Want { epoch: 0, after: 0, head_only: false },
        }
    }
}

/// One event read from a stream.
struct Entry {
    at: Position,
    event: EncodedEvent,
    framed: Option<EncodedEvent>,
}

/// A stream read, parsed.
struct Read {
    epoch: u64,
    after: u64,
    head: u64,
    /// Oldest first, contiguous up to `head`, none older than the history's age.
    entries: Vec<Entry>,
}

impl Read {
    fn answer(&self) -> Fetched {
        let events = self.entries.iter().filter_map(|e| e.framed.clone().map(|f| (e.at.offset, f))).collect();
        Fetched { epoch: self.epoch, after: self.after, head: self.head, events }
    }
}

impl Bridge {
    /// Reads the streams resuming connections wait for (up to one batch of
    /// topics) and hands each answer to the shards. Without a connection
    /// they cannot be read: a request waits for one at most
    /// `BrokerConfig::fetch_wait`, then the waiting replays become unknown
    /// gaps, never a wait without end. Returns whether there was any.
    pub(super) async fn fetch_batch(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let due = |since: tokio::time::Instant| since + self.config.fetch_wait <= now;
        let topics: Vec<(Arc<str>, Want)> = self
            .wants
            .iter()
            .filter(|(_, (_, since))| self.live.is_some() || due(*since))
            .take(FETCH_BATCH)
            .map(|(t, (w, _))| (t.clone(), *w))
            .collect();
        if topics.is_empty() {
            return false;
        }
        for (t, _) in &topics {
            self.wants.remove(t);
        }
        let reads = match self.live.is_some() {
            true => {
                let asks: Vec<(Arc<str>, u64, u64, usize)> = topics
                    .iter()
                    .map(|(t, w)| (t.clone(), w.epoch, w.after, if w.head_only { 0 } else { self.limits.max_events }))
                    .collect();
                self.read_streams(&asks).await
            }
            false => None,
        };
        let reads = reads.unwrap_or_else(|| topics.iter().map(|_| None).collect());
        let emitter = self.emitter.as_ref().expect("set at start");
        for ((topic, _), read) in topics.into_iter().zip(reads) {
            let answer = Arc::new(read.map(|r| r.answer()));
            let full = emitter.answer(&topic, &answer, None);
            if !full.is_empty() {
                self.undelivered.push((topic, answer, full));
            }
        }
        true
    }

    /// Sends answers again to the shards whose inbox was full.
    pub(super) fn redeliver(&mut self) {
        if self.undelivered.is_empty() {
            return;
        }
        let emitter = self.emitter.as_ref().expect("set at start");
        for (topic, answer, shards) in std::mem::take(&mut self.undelivered) {
            let full = emitter.answer(&topic, &answer, Some(&shards));
            if !full.is_empty() {
                self.undelivered.push((topic, answer, full));
            }
        }
    }

    /// After a reconnect: reads each followed topic's stream after the
    /// last event this server had, and routes what it missed before
    /// anything received later (which the cache then drops as duplicates).
    /// A newer life of the topic is routed as such (clients see the epoch
    /// change as a gap notice); a read that fails is a gap notice now.
    pub(super) async fn refill(&mut self) {
        let refill = std::mem::take(&mut self.refill);
        for chunk in refill.chunks(FETCH_BATCH) {
            let asks: Vec<(Arc<str>, u64, u64, usize)> =
                chunk.iter().map(|(t, p)| (t.clone(), p.epoch, p.offset, self.limits.max_events)).collect();
            let reads = if self.live.is_some() { self.read_streams(&asks).await } else { None };
            let emitter = self.emitter.as_ref().expect("set at start");
            let reads = reads.unwrap_or_else(|| chunk.iter().map(|_| None).collect());
            for ((topic, _), read) in chunk.iter().zip(reads) {
                let Some(read) = read else {
                    emitter.mark_lost(topic.clone());
                    continue;
                };
                for e in read.entries {
                    if let Err(err) = emitter.route_positioned(topic.clone(), e.at, e.event, e.framed) {
                        tracing::debug!(error = %err, %topic, "event read from the broker not routed to every shard");
                    }
                }
            }
        }
    }

    /// Runs [`FETCH_LUA`] for each `(topic, epoch, after, count)`, in one
    /// pipeline. `None`: the pipeline failed (the connection is treated as
    /// lost when it broke); per topic `None`: its answer was not readable.
    async fn read_streams(&mut self, asks: &[(Arc<str>, u64, u64, usize)]) -> Option<Vec<Option<Read>>> {
        let mut pipe = redis::pipe();
        for (topic, epoch, after, count) in asks {
            pipe.cmd("EVALSHA")
                .arg(&self.fetch_sha)
                .arg(2)
                .arg(self.key(topic, "meta"))
                .arg(self.key(topic, "log"))
                .arg(*epoch)
                .arg(*after)
                .arg(*count);
        }
        let live = self.live.as_mut()?;
        match pipe.query_async::<Vec<Value>>(&mut live.conn).await {
            Ok(values) => Some(asks.iter().zip(values).map(|((t, ..), v)| self.parse_read(t, v)).collect()),
            Err(e) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error() {
                    self.lost(&format!("reading topic logs failed: {e}"));
                } else {
                    tracing::warn!(error = %e, "broker refused the log-read script");
                }
                None
            }
        }
    }

    /// Parses one [`FETCH_LUA`] answer.
    fn parse_read(&self, topic: &str, v: Value) -> Option<Read> {
        let int = |v: &Value| match v {
            Value::Int(i) => u64::try_from(*i).ok(),
            Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        };
        let Value::Array(parts) = v else {
            self.malformed("log read answer is not an array");
            return None;
        };
        let [epoch, after, head, now, Value::Array(raw)] = &parts[..] else {
            self.malformed("log read answer has the wrong shape");
            return None;
        };
        let (epoch, after, head, now) = (int(epoch)?, int(after)?, int(head)?, int(now)?);
        let max_age_ms = self.limits.max_age.as_millis() as u64;
        let mut entries: Vec<Entry> = Vec::with_capacity(raw.len());
        // Newest first: keep the run that is contiguous down from the head.
        let mut expect = head;
        for item in raw {
            let Value::Array(item) = item else { break };
            let [_, Value::Array(fields)] = &item[..] else { break };
            let field = |name: &[u8]| {
                fields.chunks(2).find_map(|kv| match kv {
                    [Value::BulkString(k), v] if k.as_slice() == name => Some(v),
                    _ => None,
                })
            };
            let (Some(Value::BulkString(payload)), Some(at_ms)) = (field(b"p"), field(b"t").and_then(int)) else {
                self.malformed("log entry without payload or time");
                break;
            };
            if now.saturating_sub(at_ms) > max_age_ms {
                break; // this one and every older one are past the history's age
            }
            let Ok(m) = decode_broker_message(payload) else {
                self.malformed("log entry is not a HardLight event");
                break;
            };
            if m.position.epoch != epoch || m.position.offset != expect {
                break;
            }
            expect -= 1;
            let framed = (topic.len() <= MAX_TOPIC_LEN).then(|| m.to_positioned(topic));
            entries.push(Entry { at: m.position, event: m.to_event(), framed });
        }
        entries.reverse();
        Some(Read { epoch, after, head, entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_asked_for_one_topic_merge_into_one_that_answers_all() {
        let at = |epoch, offset| Some(Position { epoch, offset });
        let fresh = Want::new(None);
        assert!(fresh.head_only);
        assert_eq!(fresh.merge(Want::new(at(5, 9))), Want::new(at(5, 9)), "a position needs more than the head");
        assert_eq!(Want::new(at(5, 9)).merge(fresh), Want::new(at(5, 9)));
        assert_eq!(Want::new(at(5, 9)).merge(Want::new(at(5, 3))), Want::new(at(5, 3)), "the lower offset");
        let both = Want::new(at(5, 9)).merge(Want::new(at(6, 3)));
        assert_eq!((both.epoch, both.after, both.head_only), (0, 0, false), "two lives: everything retained");
    }
}
